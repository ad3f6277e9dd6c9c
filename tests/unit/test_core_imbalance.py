import numpy as np
import pytest
import tensorflow as tf

from clearsight.config import TrainingParameters
from clearsight.imbalance import class_weights, imbalance_ratio
from clearsight.models import build_model
from clearsight.preprocess import make_dataset
from tests.unit.conftest import image_bytes


def test_balanced_weights_make_every_class_count_equally():
    counts = {0: 90, 1: 10, 2: 0}  # class 2 has no training image: no weight
    weights = class_weights(counts, "always")
    assert weights == pytest.approx({0: 100 / (2 * 90), 1: 100 / (2 * 10)})
    assert sum(weights[c] * n for c, n in counts.items() if n) == pytest.approx(100)
    assert imbalance_ratio(counts) == 9


def test_auto_weights_only_above_the_ratio_and_off_never():
    assert class_weights({0: 30, 1: 10}, "auto", ratio=3.0) is None  # 3.0 is not above 3
    assert class_weights({0: 31, 1: 10}, "auto", ratio=3.0) is not None
    assert class_weights({0: 1000, 1: 1}, "never") is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (({0: 1}, "sometimes"), "sometimes"),
        (({0: 1}, "always", 1.0), "above 1"),
        (({0: 0}, "always"), "no class"),
    ],
)
def test_bad_settings_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        class_weights(*args)


def test_training_parameters_validate_the_weighting():
    assert TrainingParameters(class_weighting="always").flat()["class_weighting"] == "always"
    with pytest.raises(ValueError):
        TrainingParameters(class_weight_ratio=0.5)


def test_keras_trains_the_tf_data_pipeline_with_class_weights():
    store = {f"img{i}": image_bytes(i, size=12) for i in range(12)}
    items = [(uri, int(i < 2)) for i, uri in enumerate(store)]  # 10 of class 0, 2 of class 1
    data = make_dataset(items, store.__getitem__, image_size=8, batch_size=4, training=False)
    model = build_model(2, image_size=8, seed=0)
    model.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy())
    weights = class_weights({0: 10, 1: 2}, "auto")
    history = model.fit(data, epochs=1, verbose=0, class_weight=weights)
    assert np.isfinite(history.history["loss"][0])
