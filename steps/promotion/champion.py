"""The one place that changes which model is in production.

Promotion moves the ZenML model version to the ``production`` stage (the old
one is archived) and the MLflow registry alias ``champion`` to the matching
registered version, through the stack's MLflow model registry; the previous
champion keeps the alias ``previous-champion`` so a rollback is one call.
The promote step, ``python run.py promote`` and ``python run.py rollback`` all
come here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from zenml import log_metadata
from zenml.client import Client
from zenml.enums import ModelStages
from zenml.model_registries.base_model_registry import (
    ModelRegistryModelMetadata,
    ModelVersionStage,
)
from zenml.models import ModelVersionResponse

from clearsight.errors import ClearsightError
from clearsight.names import CHAMPION_ALIAS, PREVIOUS_CHAMPION_ALIAS, ArtifactName

logger = logging.getLogger(__name__)


class PromotionError(ClearsightError):
    """A promotion or rollback cannot be carried out."""


@dataclass(frozen=True)
class Champion:
    """The model in production, as both registries see it."""

    zenml_version: int
    registered_model: str
    registered_version: str


def _registry():
    registry = Client().active_stack.model_registry
    if registry is None:
        raise PromotionError(
            "The active stack has no model registry. Fix: python -m stack.register "
            "(or zenml stack set embedded)."
        )
    return registry


def registered_version(version: ModelVersionResponse) -> tuple[str, str]:
    """The MLflow registry (name, version) of a ZenML model version.

    Read from the ``registered_model`` artifact linked to the version, which a
    run whose steps were all cached links too.
    """
    artifact = version.get_artifact(ArtifactName.REGISTERED_MODEL)
    if artifact is None:
        raise PromotionError(
            f"Model version {version.model.name} #{version.number} has no MLflow registry "
            "version: its training run did not finish registering it."
        )
    info = artifact.load()
    return str(info["registered_model_name"]), str(info["registered_model_version"])


def model_version(model_name: str, number: int | None = None) -> ModelVersionResponse:
    """A ZenML model version by number, or the latest one."""
    client = Client()
    try:
        if number is None:
            versions = client.list_model_versions(
                model_name_or_id=model_name, sort_by="desc:number", size=1
            )
            if not versions.items:
                raise KeyError(model_name)
            return client.get_model_version(model_name, versions.items[0].number)
        return client.get_model_version(model_name, number)
    except KeyError:
        which = f"version {number}" if number is not None else "any version"
        raise PromotionError(
            f"Model {model_name!r} has no {which}. Train one first: python run.py"
        ) from None


def production_version(model_name: str) -> ModelVersionResponse | None:
    """The ZenML model version in the production stage, if any."""
    try:
        return Client().get_model_version(model_name, ModelStages.PRODUCTION)
    except KeyError:
        return None


def current_champion(model_name: str) -> Champion | None:
    """The champion, or ``None`` before the first promotion."""
    version = production_version(model_name)
    if version is None:
        return None
    name, number = registered_version(version)
    return Champion(version.number, name, number)


def set_champion(model_name: str, number: int, reason: str, actor: str = "pipeline") -> Champion:
    """Make ZenML model version ``number`` the champion in ZenML and MLflow.

    Idempotent: promoting the champion again changes nothing but the record.
    """
    client = Client()
    target = client.get_model_version(model_name, number)
    name, version = registered_version(target)
    previous = production_version(model_name)
    registry = _registry()
    when = datetime.now(UTC).isoformat(timespec="seconds")

    # MLflow first: if it fails, ZenML still shows the old champion.
    registry.update_model_version(
        name=name,
        version=version,
        stage=ModelVersionStage.PRODUCTION,  # moves the `champion` alias
        metadata=ModelRegistryModelMetadata(
            promotion_reason=reason[:5000], promoted_at=when, promoted_by=actor
        ),
    )
    if previous is not None and previous.number != number:
        _, old_version = registered_version(previous)
        registry.mlflow_client.set_registered_model_alias(
            name, PREVIOUS_CHAMPION_ALIAS, old_version
        )
    client.update_model_version(
        model_name_or_id=model_name,
        version_name_or_id=target.id,
        stage=ModelStages.PRODUCTION,
        force=True,  # archives the previous production version
    )
    log_metadata(
        metadata={"promotion": {"at": when, "by": actor, "reason": reason}},
        model_name=model_name,
        model_version=str(number),
    )
    logger.info(
        "Champion of %s is now v%d (MLflow %s v%s, alias %s).",
        model_name,
        number,
        name,
        version,
        CHAMPION_ALIAS,
    )
    return Champion(number, name, version)


def record_rejection(model_name: str, number: int, reason: str) -> None:
    """Keep a rejected challenger's decision in ZenML and MLflow; production is untouched."""
    target = Client().get_model_version(model_name, number)
    name, version = registered_version(target)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    client = _registry().mlflow_client
    client.set_model_version_tag(name, version, "promotion_decision", "rejected")
    client.set_model_version_tag(name, version, "promotion_reason", reason[:5000])
    client.set_model_version_tag(name, version, "judged_at", when)
    log_metadata(
        metadata={"promotion": {"at": when, "decision": "rejected", "reason": reason}},
        model_name=model_name,
        model_version=str(number),
    )


def rollback(model_name: str, actor: str = "cli") -> Champion:
    """Restore the previous champion (the MLflow alias ``previous-champion``)."""
    current = current_champion(model_name)
    if current is None:
        raise PromotionError(f"Model {model_name!r} has no champion: nothing to roll back.")
    client = _registry().mlflow_client
    try:
        previous = client.get_model_version_by_alias(
            current.registered_model, PREVIOUS_CHAMPION_ALIAS
        )
    except Exception:  # noqa: BLE001 - MLflow raises a generic exception for a missing alias
        raise PromotionError(
            f"Model {model_name!r} has no previous champion to roll back to."
        ) from None
    number = int(previous.tags.get("zenml_model_version", "0"))
    if not number:
        raise PromotionError(
            f"MLflow version {previous.version} does not name its ZenML model version."
        )
    reason = f"rollback from v{current.zenml_version}"
    return set_champion(model_name, number, reason, actor=actor)
