import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from clearsight.metrics import classification_metrics, confusion_matrix_figure
from clearsight.models import PretrainedWeightsError, build_model
from clearsight.preprocess import make_dataset, preprocess_batch, preprocess_image
from tests.unit.conftest import encode, image_bytes


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "L"), ("PNG", "RGB"), ("JPEG", "RGB")])
def test_preprocess_gives_rgb_float_in_unit_range(fmt, mode):
    out = preprocess_image(tf.constant(image_bytes(4, size=40, fmt=fmt, mode=mode)), 16)
    assert out.shape == (16, 16, 3) and out.dtype == tf.float32
    values = out.numpy()
    assert values.min() >= 0.0 and values.max() <= 1.0
    if mode == "L":  # grey decodes to three equal channels
        np.testing.assert_allclose(values[..., 0], values[..., 2])


def test_white_png_becomes_ones_and_batch_matches_single():
    white = encode(Image.new("RGB", (10, 10), (255, 255, 255)))
    np.testing.assert_allclose(preprocess_image(tf.constant(white), 8).numpy(), 1.0, atol=1e-6)
    images = [image_bytes(i, size=30) for i in range(3)]
    batch = preprocess_batch(images, 12)
    assert batch.shape == (3, 12, 12, 3)
    for i, data in enumerate(images):
        np.testing.assert_array_equal(batch[i], preprocess_image(tf.constant(data), 12).numpy())
    assert preprocess_batch([], 12).shape == (0, 12, 12, 3)


def test_make_dataset_keeps_order_and_labels_when_not_training():
    store = {f"img{i}": image_bytes(i, size=20) for i in range(5)}
    items = [(uri, i % 2) for i, uri in enumerate(store)]
    dataset = make_dataset(items, store.__getitem__, image_size=8, batch_size=2, training=False)
    assert int(dataset.cardinality()) == 3
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    assert [x.shape for x in xs] == [(2, 8, 8, 3), (2, 8, 8, 3), (1, 8, 8, 3)]
    assert np.concatenate(ys).tolist() == [0, 1, 0, 1, 0]
    expected = preprocess_batch(list(store.values()), 8)
    np.testing.assert_allclose(np.concatenate(xs), expected)


def test_model_outputs_probabilities_and_names_its_layers():
    model = build_model(4, image_size=16)
    probabilities = model.predict(np.random.default_rng(0).random((3, 16, 16, 3)), verbose=0)
    assert probabilities.shape == (3, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    names = {layer.name for layer in model.layers}
    assert {"logits", "probabilities", "embedding"} <= names


def test_model_refuses_one_class_and_missing_weights(tmp_path):
    with pytest.raises(ValueError, match="at least 2 classes"):
        build_model(1, image_size=16)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        build_model(
            3,
            image_size=32,
            architecture="mobilenet_v2",
            pretrained_weights=str(tmp_path / "none.h5"),
        )


def _backbone(model: tf.keras.Model) -> tf.keras.Model:
    (base,) = [layer for layer in model.layers if isinstance(layer, tf.keras.Model)]
    return base


def test_pretrained_backbone_weights_are_really_loaded(tmp_path):
    tf.keras.utils.set_random_seed(7)  # not build_model's seed: different initial weights
    saved = tf.keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    path = tmp_path / "mobilenet_v2.weights.h5"
    saved.save_weights(str(path))

    model = build_model(3, image_size=32, architecture="mobilenet_v2", pretrained_weights=str(path))
    base = _backbone(model)
    for name in ("Conv1", "block_16_project", "Conv_1_bn"):
        for loaded, expected in zip(
            base.get_layer(name).get_weights(), saved.get_layer(name).get_weights(), strict=True
        ):
            # Without a load these would be build_model's own (seed 42) initial weights.
            np.testing.assert_array_equal(loaded, expected)


def test_weights_of_another_architecture_fail_clearly(tmp_path):
    narrow = tf.keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.5
    )
    path = tmp_path / "narrow.weights.h5"
    narrow.save_weights(str(path))
    with pytest.raises(PretrainedWeightsError) as raised:
        build_model(3, image_size=32, architecture="mobilenet_v2", pretrained_weights=str(path))
    message = str(raised.value)
    assert str(path) in message and "mobilenet_v2" in message
    assert "include_top=False" in message and "32x32x3" in message  # what was expected
    assert "shape" in message  # Keras' reason
    assert "value=[[" not in message  # without the tensor dump

    not_keras = tmp_path / "junk.weights.h5"
    not_keras.write_bytes(b"this is not an HDF5 file")
    with pytest.raises(PretrainedWeightsError, match="junk.weights.h5"):
        build_model(
            3, image_size=32, architecture="mobilenet_v2", pretrained_weights=str(not_keras)
        )


def test_metrics_on_a_hand_checked_example():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    metrics = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # a: P=1/2 R=1/2 F1=1/2; b: P=2/3 R=1 F1=0.8; c: P=1 R=1/2 F1=2/3
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert metrics["per_class"]["b"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "support": 2,
    }
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert "macro avg" in metrics["report"]
    figure = confusion_matrix_figure(metrics["confusion_matrix"], ["a", "b", "c"])
    assert [t.get_text() for t in figure.axes[0].texts] == [
        "1",
        "1",
        "0",
        "0",
        "2",
        "0",
        "1",
        "0",
        "1",
    ]
