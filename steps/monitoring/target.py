"""Which model version the monitor judges, and its reference, in ZenML and MLflow.

The serving version is the one the MLflow alias ``champion`` names (its
``zenml_model_version`` tag gives the ZenML model version); its reference is
the ``reference_features`` table the promote pipeline linked to that version.
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


@dataclass(frozen=True)
class MonitorTarget:
    """A ZenML model version and the MLflow registry version it was registered as."""

    model_name: str
    zenml_version: int
    registered_version: str | None


def _mlflow_client():
    registry = Client().active_stack.model_registry
    if registry is None:
        raise MonitoringError(
            "The active stack has no model registry, so the champion cannot be found. "
            "Fix: python -m stack.register (or zenml stack set embedded)."
        )
    return registry.mlflow_client


def serving_target(model_name: str, number: int | None = None) -> MonitorTarget:
    """The version to monitor: ``number``, else the MLflow ``champion``'s ZenML version.

    Raises:
        MonitoringError: No champion (with the command that makes one), or the
            version does not exist.
    """
    if number is not None:
        try:
            version = Client().get_model_version(model_name, number)
        except KeyError:
            raise MonitoringError(
                f"Model {model_name!r} has no version {number}. List them: "
                f"zenml model version list {model_name}"
            ) from None
        registered = None
        artifact = version.get_artifact(ArtifactName.REGISTERED_MODEL)
        if artifact is not None:
            registered = str(artifact.load()["registered_model_version"])
        return MonitorTarget(model_name, number, registered)
    try:
        champion = _mlflow_client().get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except MonitoringError:
        raise
    except Exception:  # noqa: BLE001 - MLflow raises a generic exception for a missing alias
        raise MonitoringError(
            f"{model_name} has no champion (MLflow alias {CHAMPION_ALIAS!r}): nothing is "
            "served, so there is nothing to monitor. Fix: python run.py (train, gate, "
            "promote, deploy), or pass --model-version N."
        ) from None
    tag = champion.tags.get("zenml_model_version", "")
    if not tag.isdigit():
        raise MonitoringError(
            f"MLflow {model_name} v{champion.version} (the champion) does not name its ZenML "
            "model version (tag zenml_model_version). Fix: pass --model-version N."
        )
    return MonitorTarget(model_name, int(tag), str(champion.version))


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
