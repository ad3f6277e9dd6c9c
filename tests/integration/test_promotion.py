"""Champion and challenger: the gate, promotion, rollback and drift, for real."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
from PIL import Image, ImageOps
from zenml import Model
from zenml.client import Client
from zenml.enums import ModelStages

from clearsight.config import TrainingParameters
from clearsight.gate import PromotionRules
from clearsight.names import CHAMPION_ALIAS, PREVIOUS_CHAMPION_ALIAS, ArtifactName
from steps.promotion.champion import current_champion, production_version, rollback

pytestmark = pytest.mark.integration

MODEL = "promotion-test-classifier"
# Lenient floors so that a short, mediocre first model can become champion.
RULES = PromotionRules(min_accuracy=0.5, min_macro_f1=0.5, max_ece=0.3)


def train(epochs: int, seed: int = 42) -> int:
    from pipelines import training_pipeline

    run = training_pipeline.with_options(
        config_path="configs/train.yaml",
        model=Model(name=MODEL),
        parameters={
            "hyperparameters": TrainingParameters(epochs=epochs, seed=seed).model_dump(mode="json")
        },
        enable_cache=False,
    )()
    return Client().get_pipeline_run(run.id).model_version.number


def judge(number: int, current_data_dir: str | None = None, rules: PromotionRules = RULES):
    from pipelines import promotion_pipeline

    champion = production_version(MODEL)
    run = promotion_pipeline.with_options(
        config_path="configs/promote.yaml",
        parameters={
            "model_name": MODEL,
            "challenger_version": number,
            "champion_version": champion.number if champion else None,
            "current_data_dir": current_data_dir,
            "rules": rules.model_dump(mode="json"),
        },
    )()
    run = Client().get_pipeline_run(run.id)
    return run.steps["promotion_gate"].outputs[ArtifactName.PROMOTION_DECISION][0].load()


def mlflow_client() -> mlflow.MlflowClient:
    return Client().active_stack.model_registry.mlflow_client


def alias_version(alias: str) -> str:
    return str(mlflow_client().get_model_version_by_alias(MODEL, alias).version)


@pytest.fixture(scope="module")
def ingested(embedded_stack, digits_dir, tmp_path_factory):
    from clearsight.catalog import sqlite_url
    from pipelines import ingest_pipeline

    catalog = sqlite_url(tmp_path_factory.mktemp("promotion") / "catalog.db")
    ingest_pipeline(data_dir=str(digits_dir), catalog_url=catalog)


def test_champion_challenger_lifecycle(ingested):
    # 1. The first model is judged on the floors alone and becomes champion.
    first = train(epochs=5)
    decision = judge(first)
    assert decision.promote, decision.reasons
    assert any("no champion yet" in r for r in decision.reasons)
    champion = current_champion(MODEL)
    assert champion.zenml_version == first
    assert alias_version(CHAMPION_ALIAS) == champion.registered_version

    # 2. A worse challenger (one epoch) is rejected with the right reasons and
    #    nothing in production moves, in ZenML or in MLflow.
    worse = train(epochs=1)
    decision = judge(worse)
    assert not decision.promote
    assert any("regressed" in r for r in decision.reasons), decision.reasons
    assert any("below floor" in r for r in decision.reasons), decision.reasons
    assert current_champion(MODEL) == champion
    assert alias_version(CHAMPION_ALIAS) == champion.registered_version
    rejected = Client().get_model_version(MODEL, worse)
    assert rejected.stage != ModelStages.PRODUCTION
    assert rejected.run_metadata["promotion"]["decision"] == "rejected"
    worse_registered = rejected.get_artifact(ArtifactName.REGISTERED_MODEL).load()
    tags = (
        mlflow_client()
        .get_model_version(MODEL, str(worse_registered["registered_model_version"]))
        .tags
    )
    assert tags["promotion_decision"] == "rejected"
    assert "regressed" in tags["promotion_reason"]

    # 3. A better challenger is promoted; the old champion is archived and kept
    #    as the previous champion.
    better = train(epochs=25)
    decision = judge(better)
    assert decision.promote, decision.reasons
    assert decision.challenger.accuracy > decision.champion.accuracy
    new_champion = current_champion(MODEL)
    assert new_champion.zenml_version == better
    assert Client().get_model_version(MODEL, first).stage == ModelStages.ARCHIVED
    assert alias_version(CHAMPION_ALIAS) == new_champion.registered_version
    assert alias_version(PREVIOUS_CHAMPION_ALIAS) == champion.registered_version

    # 4. Promoting the champion again is harmless.
    decision = judge(better)
    assert decision.promote
    assert any("already the champion" in r for r in decision.reasons)
    assert current_champion(MODEL) == new_champion
    assert alias_version(PREVIOUS_CHAMPION_ALIAS) == champion.registered_version

    # 5. Rollback restores the previous champion in both registries.
    restored = rollback(MODEL)
    assert restored == champion
    assert current_champion(MODEL) == champion
    assert Client().get_model_version(MODEL, first).stage == ModelStages.PRODUCTION
    assert Client().get_model_version(MODEL, better).stage == ModelStages.ARCHIVED
    assert alias_version(CHAMPION_ALIAS) == champion.registered_version


def _copy_split(digits_dir: Path, split: str, target: Path, transform=None) -> Path:
    for image in sorted((digits_dir / split).rglob("*.png")):
        out = target / image.parent.name / image.name
        out.parent.mkdir(parents=True, exist_ok=True)
        if transform is None:
            shutil.copy(image, out)
        else:
            with Image.open(image) as source:
                transform(source).save(out)
    return target


def test_drift_is_detected_on_a_shifted_batch_only(ingested, digits_dir, tmp_path):
    number = Client().list_model_versions(MODEL, sort_by="desc:number", size=1).items[0].number
    strict = RULES.model_copy(update={"max_drift_share": 0.3})

    like_training = _copy_split(digits_dir, "val", tmp_path / "like")
    calm = judge(number, str(like_training), rules=strict)
    assert calm.drift_share <= 0.3, calm.reasons
    assert not any("data drift" in r for r in calm.reasons)

    inverted = _copy_split(digits_dir, "val", tmp_path / "inverted", ImageOps.invert)
    shifted = judge(number, str(inverted), rules=strict)
    assert shifted.drift_share > 0.5, shifted.reasons
    assert not shifted.promote
    assert any("data drift" in r for r in shifted.reasons)


def deploy():
    from pipelines import deployment_pipeline

    run = deployment_pipeline.with_options(config_path="configs/deploy.yaml")(model_name=MODEL)
    run = Client().get_pipeline_run(run.id)
    return run.steps["deploy_champion"].outputs["deployment"][0].load()


def test_deploy_serves_the_champion_and_swaps_servers_without_orphans(ingested, digits_dir):
    import base64

    import psutil
    import requests

    deployer = Client().active_stack.model_deployer
    champion = current_champion(MODEL)
    try:
        first = deploy()
        assert first["changed"] and first["registered_version"] == champion.registered_version
        again = deploy()
        assert not again["changed"] and again["prediction_url"] == first["prediction_url"]
        (old,) = deployer.servers_for(MODEL)
        old_pids = [old.status.pid, *(p.pid for p in psutil.Process(old.status.pid).children(True))]

        # A new champion: the new server starts healthy first, then the old one goes.
        restored = rollback(MODEL)
        assert restored.registered_version != champion.registered_version
        swapped = deploy()
        assert swapped["changed"] and swapped["registered_version"] == restored.registered_version
        (new,) = deployer.servers_for(MODEL)
        assert new.uuid != old.uuid
        assert not any(psutil.pid_exists(pid) for pid in old_pids)

        image = sorted((digits_dir / "test").rglob("*.png"))[0].read_bytes()
        response = requests.post(
            swapped["prediction_url"],
            json={"binData": base64.b64encode(image).decode()},
            timeout=30,
        )
        assert response.status_code == 200
        assert response.json()["meta"]["tags"]["registered_version"] == restored.registered_version
        assert new.config.registered_version == restored.registered_version
    finally:
        for service in deployer.servers_for(MODEL):
            deployer.delete_model_server(service.uuid, force=True)
    assert not deployer.servers_for(MODEL)
