import pytest
import yaml
from pydantic import ValidationError

from clearsight.config import TrainingParameters
from tests.conftest import ROOT


def test_shipped_train_config_is_valid_and_matches_the_defaults():
    config = yaml.safe_load((ROOT / "configs" / "train.yaml").read_text())
    parameters = TrainingParameters.model_validate(config["parameters"]["hyperparameters"])
    assert parameters == TrainingParameters()


@pytest.mark.parametrize(
    "bad",
    [{"epochs": 0}, {"learning_rate": -1}, {"architecture": "resnet9000"}, {"epoch": 5}],
)
def test_bad_or_misspelt_hyperparameters_are_refused(bad):
    with pytest.raises(ValidationError):
        TrainingParameters.model_validate(bad)


def test_flat_view_for_trackers():
    flat = TrainingParameters(epochs=3).flat()
    assert flat["epochs"] == 3
    assert flat["architecture"] == "small_cnn"
    assert flat["pretrained_weights"] == "none"
    assert flat["augmentation_flip"] is False


def test_run_overrides_are_validated_like_the_yaml():
    from clearsight.config import with_run_overrides

    base = TrainingParameters(epochs=40, learning_rate=1e-3)
    assert with_run_overrides(base, None) == (base, {})
    assert with_run_overrides(base, "{}") == (base, {})
    merged, applied = with_run_overrides(base, '{"epochs": 5, "learning_rate": 0.0003}')
    assert (merged.epochs, merged.learning_rate, merged.batch_size) == (5, 3e-4, base.batch_size)
    assert applied == {"epochs": 5, "learning_rate": 0.0003}
    for bad, message in (
        ('{"epochs": 0}', "epochs"),
        ('{"epoch": 5}', "Known fields: epochs"),
        ("[1, 2]", "JSON object"),
        ("{not json", "not JSON"),
    ):
        with pytest.raises(ValueError, match=message):
            with_run_overrides(base, bad)
