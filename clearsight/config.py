"""Typed training hyper-parameters: one definition, defaults in one place.

``configs/train.yaml`` fills these under ``parameters.hyperparameters``; the
command line overrides single fields. Unknown keys are refused, so a typo in
the YAML fails loudly instead of being ignored.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clearsight.imbalance import DEFAULT_RATIO, ClassWeighting
from clearsight.models import Architecture


class Augmentation(BaseModel):
    """Light, label-preserving augmentation of the training split."""

    model_config = ConfigDict(extra="forbid")

    rotation: float = Field(0.05, ge=0, le=0.5, description="fraction of a full turn")
    translation: float = Field(0.1, ge=0, le=0.5, description="fraction of the side")
    zoom: float = Field(0.1, ge=0, le=0.5)
    flip: bool = Field(False, description="horizontal and vertical; never for digits")
    contrast: float = Field(0.0, ge=0, le=1)


class TrainingParameters(BaseModel):
    """Everything that decides how a model is trained."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(40, ge=1, description="maximum epochs")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    image_size: int = Field(32, ge=8, description="input side in pixels")
    architecture: Architecture = Architecture.SMALL_CNN
    pretrained_weights: str | None = Field(
        None, description="local weights file for a known backbone; nothing is downloaded"
    )
    patience: int = Field(8, ge=1, description="early-stopping patience in epochs")
    seed: int = 42
    augmentation: Augmentation = Field(default_factory=Augmentation)
    class_weighting: ClassWeighting = Field(
        ClassWeighting.AUTO,
        description="weight the loss by inverse class frequency: auto (above "
        "class_weight_ratio), always or never",
    )
    class_weight_ratio: float = Field(
        DEFAULT_RATIO, gt=1, description="auto: weight when largest/smallest train class > this"
    )

    def flat(self) -> dict[str, str | int | float | bool]:
        """A flat dict for experiment trackers (``augmentation_zoom``, ...)."""
        values = self.model_dump(mode="json", exclude={"augmentation"})
        values["pretrained_weights"] = values["pretrained_weights"] or "none"
        values.update({f"augmentation_{k}": v for k, v in self.augmentation.model_dump().items()})
        return values


class LabelReviewParameters(BaseModel):
    """The label-error check after training (``clearsight.label_issues``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_suspects: int = Field(20, ge=0, description="queue at most this many images")
    share: float = Field(
        0.01, ge=0, le=1, description="and at most this share of the checked images"
    )
    folds: int = Field(5, ge=2, description="cross-validation folds of the logistic regression")
    splits: list[Literal["train", "val", "test"]] = Field(
        default_factory=lambda: ["train", "val"], min_length=1, description="splits to check"
    )
    catalog_url: str | None = Field(
        None, description="review database; null: CLEARSIGHT_CATALOG_URL or the default"
    )


RUN_CONF_ENV = "CLEARSIGHT_RUN_CONF"


def with_run_overrides(
    parameters: TrainingParameters, conf: str | None
) -> tuple[TrainingParameters, dict[str, Any]]:
    """Apply one run's hyper-parameter overrides, validated like the YAML.

    An orchestrator passes them per run: under Airflow, ``airflow dags trigger
    DAG --conf '{"epochs": 5}'`` reaches the step as the JSON environment
    variable ``CLEARSIGHT_RUN_CONF``.

    Args:
        parameters: The configured hyper-parameters.
        conf: A JSON object of ``TrainingParameters`` fields, or empty.

    Returns:
        The parameters to train with and the overrides that were applied.

    Raises:
        ValueError: The conf is not a JSON object of known, valid fields.
    """
    if not conf or not conf.strip():
        return parameters, {}
    try:
        overrides = json.loads(conf)
    except json.JSONDecodeError as error:
        raise ValueError(f"The run's conf is not JSON ({error}): {conf[:200]!r}") from None
    if not isinstance(overrides, dict):
        raise ValueError(f"The run's conf must be a JSON object, got {conf[:200]!r}")
    if not overrides:
        return parameters, {}
    try:
        merged = TrainingParameters.model_validate(
            {**parameters.model_dump(mode="json"), **overrides}
        )
    except ValidationError as error:
        known = ", ".join(TrainingParameters.model_fields)
        raise ValueError(
            f"Invalid hyper-parameter overrides {overrides}: {error}\nKnown fields: {known}"
        ) from None
    return merged, overrides
