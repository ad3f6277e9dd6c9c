"""Champion and challenger: the gate, promotion, rollback and drift, for real."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from PIL import Image, ImageOps
from zenml import Model
from zenml.client import Client
from zenml.enums import ModelStages

from clearsight.config import TrainingParameters
from clearsight.gate import PromotionRules
from clearsight.names import CHAMPION_ALIAS, PREVIOUS_CHAMPION_ALIAS, ArtifactName
from steps.promotion.champion import (
    PromotionError,
    current_champion,
    production_version,
    rollback,
    set_champion,
)
from tests.conftest import ROOT

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
            "hyperparameters": TrainingParameters(epochs=epochs, seed=seed).model_dump(mode="json"),
            # No catalog here: keep the label-error check away from the project's .state/.
            "label_review": {"enabled": False},
        },
        enable_cache=False,
    )()
    return Client().get_pipeline_run(run.id).model_version.number


def judge(number: int, current_data_dir: str | None = None, rules: PromotionRules = RULES):
    return decision_of(judge_run(number, current_data_dir, rules))


def decision_of(run):
    return run.steps["promotion_gate"].outputs[ArtifactName.PROMOTION_DECISION][0].load()


def judge_run(number: int, current_data_dir: str | None = None, rules: PromotionRules = RULES):
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
    return Client().get_pipeline_run(run.id)


def mlflow_client() -> mlflow.MlflowClient:
    return Client().active_stack.model_registry.mlflow_client


def alias_version(alias: str) -> str:
    return str(mlflow_client().get_model_version_by_alias(MODEL, alias).version)


def mlflow_tags(number: int) -> dict[str, str]:
    """The MLflow registry tags of ZenML model version ``number``."""
    version = Client().get_model_version(MODEL, number)
    registered = version.get_artifact(ArtifactName.REGISTERED_MODEL).load()
    return (
        mlflow_client().get_model_version(MODEL, str(registered["registered_model_version"])).tags
    )


def zenml_metadata(number: int) -> dict:
    return Client().get_model_version(MODEL, number).run_metadata


def report_summary(run, step: str) -> dict:
    """The Evidently summary the gate attached to a report step's JSON artifact."""
    outputs = run.steps[step].outputs
    artifact = (outputs.get("report_json") or outputs["test_json"])[0]
    return Client().get_artifact_version(artifact.id).run_metadata["evidently_summary"]


@pytest.fixture(scope="module")
def ingested(embedded_stack, digits_dir, tmp_path_factory):
    from clearsight.catalog import sqlite_url
    from pipelines import ingest_pipeline

    catalog = sqlite_url(tmp_path_factory.mktemp("promotion") / "catalog.db")
    ingest_pipeline(data_dir=str(digits_dir), catalog_url=catalog)


def test_champion_challenger_lifecycle(ingested):
    # 1. The first model is judged on the floors alone and becomes champion.
    #    Drift, calibration and the test suites are shown, marked informational.
    first = train(epochs=5)
    run = judge_run(first)
    decision = decision_of(run)
    assert decision.promote, decision.reasons
    assert any("no champion yet" in r for r in decision.reasons)
    assert len(decision.informational) == 3, decision.reasons
    assert all("not blocking" in r for r in decision.informational)
    champion = current_champion(MODEL)
    assert champion.zenml_version == first
    assert alias_version(CHAMPION_ALIAS) == champion.registered_version
    assert mlflow_tags(first)["promotion_decision"] == "promoted"
    assert zenml_metadata(first)["promotion"]["decision"] == "promoted"

    #    The Evidently JSON summaries are metadata: on each report and, all
    #    together, on the model version.
    evidently = zenml_metadata(first)["evidently"]
    assert evidently["promote_run"] == str(run.id)
    drift = report_summary(run, "drift_report")
    assert drift == evidently["drift"]
    assert drift["drifted_share"] == pytest.approx(decision.drift_share)
    assert drift["drifted_count"] == len(drift["drifted_columns"])
    assert {"brightness", "embedding_0", "confidence"} <= set(drift["column_scores"])
    assert all(0.0 <= p <= 1.0 for p in drift["column_scores"].values())  # KS p-values
    quality = report_summary(run, "challenger_quality_report")
    assert quality == evidently["challenger_quality"]
    assert quality["test"]["accuracy"] == pytest.approx(decision.challenger.accuracy)
    assert {"accuracy", "f1"} <= set(quality["train"])
    tests = report_summary(run, "quality_tests")
    assert tests == evidently["quality_tests"]
    assert set(tests["tests"]) == {"Accuracy Score", "F1 Score"}
    assert tests["tests"]["Accuracy Score"]["value"] == pytest.approx(decision.challenger.accuracy)
    drift_tests = report_summary(run, "drift_tests")
    assert set(drift_tests["tests"]) == {"Share of Drifted Columns"}

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
    side_by_side = zenml_metadata(worse)["evidently"]["champion_vs_challenger"]
    assert side_by_side["champion"]["accuracy"] == pytest.approx(decision.champion.accuracy)
    assert side_by_side["challenger"]["accuracy"] == pytest.approx(decision.challenger.accuracy)

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
    assert mlflow_tags(better)["promotion_decision"] == "promoted"
    assert zenml_metadata(better)["promotion"]["decision"] == "promoted"
    assert decision.informational == []  # a challenger is judged on every rule

    # 4. Rollback restores the previous champion in both registries.
    restored = rollback(MODEL)
    assert restored == champion
    assert current_champion(MODEL) == champion
    assert Client().get_model_version(MODEL, first).stage == ModelStages.PRODUCTION
    assert Client().get_model_version(MODEL, better).stage == ModelStages.ARCHIVED
    assert alias_version(CHAMPION_ALIAS) == champion.registered_version


def run_py(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python run.py ARGS`` as a user runs it, on the tests' throw-away ZenML store."""
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture()
def cli_configs(tmp_path) -> list[str]:
    """``--train-config`` naming this module's model, ``--promote-config`` with RULES."""
    train = yaml.safe_load((ROOT / "configs" / "train.yaml").read_text())
    train["model"]["name"] = MODEL
    promote = yaml.safe_load((ROOT / "configs" / "promote.yaml").read_text())
    promote["parameters"]["rules"] = RULES.model_dump(mode="json")
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    (tmp_path / "promote.yaml").write_text(yaml.safe_dump(promote))
    return [
        "--train-config",
        str(tmp_path / "train.yaml"),
        "--promote-config",
        str(tmp_path / "promote.yaml"),
    ]


def test_cli_rolls_back_in_under_30_seconds_and_rejudges_a_version(ingested, cli_configs):
    # After the lifecycle: the first model is champion, the better one is the
    # previous champion.
    before = current_champion(MODEL)
    previous = alias_version(PREVIOUS_CHAMPION_ALIAS)
    assert before is not None and previous != before.registered_version

    # The issue asks for a rollback in under 30 s. The registry switch is timed
    # by the command itself; the whole command (Python and ZenML start-up
    # included, about 12 s on an idle machine) is held to 30 s of CPU time, which
    # other work on a busy CI machine cannot inflate the way it does wall time.
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    rolled = run_py(*cli_configs, "rollback", "--actor", "cli-test")
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    assert rolled.returncode == 0, rolled.stderr[-3000:]
    switch = float(re.search(r"Rolled back in ([0-9.]+) s", rolled.stdout).group(1))
    timing = f"switch {switch:.1f} s, command {wall:.1f} s wall / {cpu:.1f} s CPU"
    assert switch < 30 and cpu < 30, timing
    print(f"rollback: {timing}")
    champion = current_champion(MODEL)
    assert champion.registered_version == previous
    assert f"champion is now {MODEL} v{champion.zenml_version} " in rolled.stdout
    assert f"(MLflow v{previous})" in rolled.stdout
    assert alias_version(CHAMPION_ALIAS) == previous
    assert alias_version(PREVIOUS_CHAMPION_ALIAS) == before.registered_version
    assert Client().get_model_version(MODEL, before.zenml_version).stage == ModelStages.ARCHIVED
    assert zenml_metadata(champion.zenml_version)["promotion"]["by"] == "cli-test"

    # Re-judging the champion passes and is harmless: nothing moves.
    rejudged = run_py(*cli_configs, "promote", "--model-version", str(champion.zenml_version))
    assert rejudged.returncode == 0, rejudged.stderr[-3000:]
    assert "Traceback" not in rejudged.stdout + rejudged.stderr
    assert f"gate            v{champion.zenml_version} promoted" in rejudged.stdout
    assert "already the champion" in rejudged.stdout
    assert f"champion        {MODEL} v{champion.zenml_version} (ZenML" in rejudged.stdout
    assert current_champion(MODEL) == champion
    assert alias_version(CHAMPION_ALIAS) == previous
    assert alias_version(PREVIOUS_CHAMPION_ALIAS) == before.registered_version


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
    # The CLI test made the latest (better) version the champion again.
    assert current_champion(MODEL).zenml_version == number
    strict = RULES.model_copy(update={"max_drift_share": 0.3})

    like_training = _copy_split(digits_dir, "val", tmp_path / "like")
    calm_run = judge_run(number, str(like_training), rules=strict)
    calm = decision_of(calm_run)
    assert calm.drift_share <= 0.3, calm.reasons
    assert not any("data drift" in r for r in calm.reasons)
    assert report_summary(calm_run, "drift_tests")["all_passed"], calm.reasons

    inverted = _copy_split(digits_dir, "val", tmp_path / "inverted", ImageOps.invert)
    shifted_run = judge_run(number, str(inverted), rules=strict)
    shifted = decision_of(shifted_run)
    # Inverting every pixel moves all the pixel statistics (colour, brightness,
    # contrast); size and file-size columns rightly stay put.
    assert shifted.drift_share > strict.max_drift_share, shifted.reasons
    assert not shifted.promote
    assert any("data drift" in r for r in shifted.reasons)
    # The drift test suite judges the same batch as the drift report (not the
    # test split): it fails with it, while the quality suite on the test split passes.
    drift_tests = report_summary(shifted_run, "drift_tests")
    assert not drift_tests["all_passed"]
    assert drift_tests["tests"]["Share of Drifted Columns"]["status"] == "FAIL"
    assert report_summary(shifted_run, "quality_tests")["all_passed"]
    assert any("Evidently test suite failed" in r for r in shifted.reasons)
    drift = report_summary(shifted_run, "drift_report")
    assert drift["drifted_share"] == pytest.approx(shifted.drift_share)
    assert "brightness" in drift["drifted_columns"]

    # The live champion failed its re-judgement: it stays in production and is
    # recorded as re-judged failing, not as rejected.
    assert current_champion(MODEL).zenml_version == number
    tags = mlflow_tags(number)
    assert tags["promotion_decision"] == "promoted"
    assert tags["rejudge_decision"] == "failing"
    assert "data drift" in tags["rejudge_reason"]
    metadata = zenml_metadata(number)
    assert metadata["promotion"]["decision"] == "promoted"
    assert metadata["rejudge"]["decision"] == "failing"


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


def test_a_zenml_failure_leaves_mlflow_as_it_was_and_a_stale_decision_is_refused(
    ingested, monkeypatch
):
    champion = current_champion(MODEL)
    rejected = next(
        v.number
        for v in Client().list_model_versions(MODEL, size=50, hydrate=True).items
        if (v.run_metadata.get("promotion") or {}).get("decision") == "rejected"
    )
    aliases = {a: alias_version(a) for a in (CHAMPION_ALIAS, PREVIOUS_CHAMPION_ALIAS)}
    tags = mlflow_tags(rejected)

    def zenml_down(*args, **kwargs):
        raise RuntimeError("ZenML server unreachable")

    monkeypatch.setattr(Client, "update_model_version", zenml_down)
    with pytest.raises(PromotionError, match="MLflow was restored"):
        set_champion(MODEL, rejected, "test", expected_champion=champion.zenml_version)
    monkeypatch.undo()
    assert {a: alias_version(a) for a in aliases} == aliases
    assert mlflow_tags(rejected) == tags  # still "rejected", no half-written promotion
    assert current_champion(MODEL) == champion

    # A decision made against another champion is refused: production moved.
    with pytest.raises(PromotionError, match="changed during the run"):
        set_champion(MODEL, rejected, "stale", expected_champion=None)
    assert current_champion(MODEL) == champion

    # A version rejected earlier and promoted later reads "promoted" everywhere.
    set_champion(MODEL, rejected, "promoted by hand", expected_champion=champion.zenml_version)
    assert mlflow_tags(rejected)["promotion_decision"] == "promoted"
    assert mlflow_tags(rejected)["promotion_reason"] == "promoted by hand"
    assert zenml_metadata(rejected)["promotion"]["decision"] == "promoted"
    assert rollback(MODEL) == champion
