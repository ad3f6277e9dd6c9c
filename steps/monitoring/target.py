"""Which model version the monitor judges, and its reference, in ZenML and MLflow.

The serving version is the champion (:mod:`steps.promotion.champion`: the
production stage, moved together with the MLflow alias ``champion``); its
reference is the ``reference_features`` table the promote pipeline linked to
that version.
``run.py`` calls these before a run to check its preconditions; the window
step calls them again when no version is given (a scheduled run follows the
champion).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from zenml.client import Client

from clearsight.monitoring import MonitoringError
from clearsight.names import CHAMPION_ALIAS, ArtifactName
from steps.promotion.champion import PromotionError, production_version, registered_version


@dataclass(frozen=True)
class MonitorTarget:
    """A ZenML model version and the MLflow registry version it was registered as."""

    model_name: str
    zenml_version: int
    registered_version: str | None


def serving_target(model_name: str, number: int | None = None) -> MonitorTarget:
    """The version to monitor: ``number``, else the champion's.

    The champion is :mod:`steps.promotion.champion`'s (the production stage,
    which ``set_champion`` moves together with the MLflow alias ``champion``
    that the deployment serves).

    Raises:
        MonitoringError: No champion (with the command that makes one), or the
            version does not exist.
    """
    if number is None:
        version = production_version(model_name)
        if version is None:
            raise MonitoringError(
                f"{model_name} has no champion (MLflow alias {CHAMPION_ALIAS!r}): nothing is "
                "served, so there is nothing to monitor. Fix: python run.py (train, gate, "
                "promote, deploy), or pass --model-version N."
            )
    else:
        try:
            version = Client().get_model_version(model_name, number)
        except KeyError:
            raise MonitoringError(
                f"Model {model_name!r} has no version {number}. List them: "
                f"zenml model version list {model_name}"
            ) from None
    try:
        registered: str | None = registered_version(version)[1]
    except PromotionError:  # its training never finished registering it
        registered = None
    return MonitorTarget(model_name, version.number, registered)


def reference_and_classes(target: MonitorTarget) -> tuple[pd.DataFrame, list[str]]:
    """The version's ``reference_features`` table and its classes (its dataset's).

    Raises:
        MonitoringError: The promote pipeline never linked a reference to the
            version (with the command that does).
    """
    version = Client().get_model_version(target.model_name, target.zenml_version)
    reference = version.get_artifact(ArtifactName.REFERENCE_FEATURES)
    dataset = version.get_artifact(ArtifactName.DATASET)
    if reference is None or dataset is None:
        missing = "reference_features" if reference is None else "dataset"
        raise MonitoringError(
            f"{target.model_name} v{target.zenml_version} has no {missing} artifact, so "
            "its live traffic has nothing to be compared with. Fix: python run.py promote "
            f"--model-version {target.zenml_version} (judging a version links its reference "
            "table to it; a version other than the champion that passes is promoted)."
        )
    return reference.load(), list(dataset.load().classes)
