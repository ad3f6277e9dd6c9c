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
