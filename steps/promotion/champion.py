"""The one place that changes which model is in production.

Promotion moves the ZenML model version to the ``production`` stage (the old
one is archived) and the MLflow registry alias ``champion`` to the matching
registered version, through the stack's MLflow model registry; the previous
champion keeps the alias ``previous-champion`` so a rollback is one call.
The promote step, ``python run.py promote`` and ``python run.py rollback`` all
come here.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from zenml import log_metadata
from zenml.client import Client
from zenml.enums import ModelStages
from zenml.model_registries.base_model_registry import (
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


class _Unchecked:
    """Marker: ``set_champion`` was not told which champion to expect."""


UNCHECKED = _Unchecked()
DECISION_TAG = "promotion_decision"


def _alias_version(mlflow_client, name: str, alias: str) -> str | None:
    try:
        return str(mlflow_client.get_model_version_by_alias(name, alias).version)
    except Exception:  # noqa: BLE001 - MLflow raises a generic exception for a missing alias
        return None


def _restore_alias(mlflow_client, name: str, alias: str, version: str | None) -> None:
    if version is None:
        with contextlib.suppress(Exception):  # the alias was not there: nothing to undo
            mlflow_client.delete_registered_model_alias(name, alias)
    else:
        mlflow_client.set_registered_model_alias(name, alias, version)


def set_champion(
    model_name: str,
    number: int,
    reason: str,
    actor: str = "pipeline",
    *,
    expected_champion: int | None | _Unchecked = UNCHECKED,
) -> Champion:
    """Make ZenML model version ``number`` the champion in ZenML and MLflow.

    Idempotent: promoting the champion again changes nothing but the record.
    MLflow is updated first, then ZenML; if ZenML fails, MLflow's aliases and
    the version's decision tags are put back, so the two registries never
    name different champions.

    Args:
        model_name: The ZenML model (and MLflow registered model) name.
        number: The ZenML model version to promote.
        reason: Why (the gate's reasons, or "rollback from vN").
        actor: Who asked for it.
        expected_champion: The production version the decision was made
            against (``None``: no champion). If production changed meanwhile,
            nothing is promoted.

    Raises:
        PromotionError: Production changed since the decision, or ZenML could
            not be updated (MLflow was restored).
    """
    client = Client()
    target = client.get_model_version(model_name, number)
    name, version = registered_version(target)
    previous = production_version(model_name)
    if not isinstance(expected_champion, _Unchecked):
        now = previous.number if previous is not None else None
        if now != expected_champion:
            judged = f"v{expected_champion}" if expected_champion is not None else "no champion"
            raise PromotionError(
                f"Not promoting v{number}: it was judged against {judged}, but production "
                f"is now {f'v{now}' if now is not None else 'empty'} (changed during the run). "
                f"Re-judge it: python run.py promote --model-version {number}"
            )
    registry = _registry()
    mlflow_client = registry.mlflow_client
    when = datetime.now(UTC).isoformat(timespec="seconds")
    tags = {
        DECISION_TAG: "promoted",
        "promotion_reason": reason[:5000],
        "promoted_at": when,
        "promoted_by": actor,
        "judged_at": when,
    }
    old_tags = dict(mlflow_client.get_model_version(name, version).tags)
    old_champion = _alias_version(mlflow_client, name, CHAMPION_ALIAS)
    old_previous = _alias_version(mlflow_client, name, PREVIOUS_CHAMPION_ALIAS)

    try:
        # MLflow first: if it fails, ZenML still shows the old champion.
        registry.update_model_version(
            name=name,
            version=version,
            stage=ModelVersionStage.PRODUCTION,  # moves the `champion` alias
        )
        for key, value in tags.items():
            mlflow_client.set_model_version_tag(name, version, key, value)
        if previous is not None and previous.number != number:
            _, old_version = registered_version(previous)
            mlflow_client.set_registered_model_alias(name, PREVIOUS_CHAMPION_ALIAS, old_version)
        client.update_model_version(
            model_name_or_id=model_name,
            version_name_or_id=target.id,
            stage=ModelStages.PRODUCTION,
            force=True,  # archives the previous production version
        )
    except Exception as error:
        try:
            _restore_alias(mlflow_client, name, CHAMPION_ALIAS, old_champion)
            _restore_alias(mlflow_client, name, PREVIOUS_CHAMPION_ALIAS, old_previous)
            for key in tags:
                if key in old_tags:
                    mlflow_client.set_model_version_tag(name, version, key, old_tags[key])
                else:
                    mlflow_client.delete_model_version_tag(name, version, key)
        except Exception as undo_error:
            raise PromotionError(
                f"Promoting v{number} failed ({error}) and MLflow could not be restored "
                f"({undo_error}): the registries may disagree. Fix by hand: set the MLflow "
                f"alias {CHAMPION_ALIAS!r} of {name} to v{old_champion}, or run "
                f"python run.py promote --model-version N for the intended champion."
            ) from error
        was = f"MLflow v{old_champion}" if old_champion is not None else "no champion"
        raise PromotionError(
            f"Promoting v{number} failed while updating ZenML ({type(error).__name__}: "
            f"{error}). MLflow was restored ({CHAMPION_ALIAS!r} is {was} again); nothing "
            "in production changed."
        ) from error
    log_metadata(
        metadata={"promotion": {"at": when, "by": actor, "decision": "promoted", "reason": reason}},
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


def _record(model_name: str, number: int, key: str, decision: str, reason: str) -> None:
    """Tag an MLflow version and log ZenML metadata under ``key``; production is untouched."""
    target = Client().get_model_version(model_name, number)
    name, version = registered_version(target)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    client = _registry().mlflow_client
    client.set_model_version_tag(name, version, f"{key}_decision", decision)
    client.set_model_version_tag(name, version, f"{key}_reason", reason[:5000])
    client.set_model_version_tag(name, version, "judged_at", when)
    log_metadata(
        metadata={key: {"at": when, "decision": decision, "reason": reason}},
        model_name=model_name,
        model_version=str(number),
    )


def record_rejection(model_name: str, number: int, reason: str) -> None:
    """Keep a rejected challenger's decision in ZenML and MLflow; production is untouched."""
    _record(model_name, number, "promotion", "rejected", reason)


def record_rejudge_failure(model_name: str, number: int, reason: str) -> None:
    """Record that the live champion failed a re-judgement; it stays in production.

    Its promotion record (``promotion_decision=promoted``) is kept; the failed
    re-judgement goes to ``rejudge_decision`` / ``rejudge_reason`` in MLflow and
    ``rejudge`` in the ZenML metadata, so nobody mistakes production for a
    rejected model.
    """
    _record(model_name, number, "rejudge", "failing", reason)


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
    return set_champion(
        model_name, number, reason, actor=actor, expected_champion=current.zenml_version
    )
