"""Every page of the review app with Streamlit's AppTest, against the real served model."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys

import pytest
import requests
import streamlit as st
from PIL import Image
from streamlit import dataframe_util
from streamlit.testing.v1 import AppTest
from zenml.client import Client
from zenml.enums import ExecutionStatus

from clearsight.catalog import Catalog, sqlite_url
from clearsight.images import sha256_bytes
from clearsight.names import ArtifactName
from clearsight.review import ReviewStore
from tests.conftest import ROOT
from tests.ui.conftest import ADMIN, REVIEWER, UI_MODEL, free_port
from tests.unit.conftest import image_bytes
from ui import metrics
from ui.data import endpoint

pytestmark = pytest.mark.integration
MAIN = str(ROOT / "ui" / "main.py")


def app(user: tuple[str, str] | None = None) -> AppTest:
    st.cache_data.clear()  # the pages cache ZenML reads for a few seconds
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.run()
    if user is not None:
        sign_in(at, *user)
        assert not at.exception, at.exception
        assert [t.value for t in at.title] == ["Predict"], [e.value for e in at.error]
    return at


def sign_in(at: AppTest, name: str, password: str) -> None:
    at.text_input(key="login_name").set_value(name)
    at.text_input(key="login_password").set_value(password)
    at.button[0].click().run()


def page(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"views/{name}.py").run()
    assert not at.exception, at.exception
    return at


def ask_endpoint(url: str, image: bytes) -> dict:
    response = requests.post(url, json={"binData": base64.b64encode(image).decode()}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["jsonData"]["predictions"][0]


def digit(digits_dir, label: str, index: int = 0) -> bytes:
    return sorted((digits_dir / "test" / label).glob("*.png"))[index].read_bytes()


def upscaled(data: bytes, side: int = 24) -> bytes:
    """The same digit at another size: new bytes, as a new production image would be."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).resize((side, side), Image.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


def counter(name: str, **labels: str) -> float:
    """A metric of the app's registry (AppTest runs the app in this process)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def chart_rows(at: AppTest, index: int) -> list[tuple[str, float]]:
    chart = at.get("vega_lite_chart")[index].proto
    bars = json.loads(chart.spec)["layer"][0]["data"]["name"]
    (data,) = [d.data.data for d in chart.datasets if d.name == bars]
    table = dataframe_util.convert_arrow_bytes_to_pandas_df(data)
    return list(zip(table["class"], table["probability"], strict=True))


def test_sign_in_refuses_bad_passwords_and_gives_roles(served_app):
    at = app()
    assert [t.value for t in at.title] == ["Clearsight"]
    sign_in(at, ADMIN[0], "not-the-password")
    assert any("wrong password" in e.value for e in at.error)
    assert [t.value for t in at.title] == ["Clearsight"]

    at = app(REVIEWER)
    assert any(f"Signed in as **{REVIEWER[0]}** (reviewer)" in c.value for c in at.sidebar.caption)
    page(at, "models")
    assert any("for admins" in i.value for i in at.info)
    assert not [b for b in at.button if b.key in ("deploy", "rollback", "promote")]


def test_missing_users_file_names_the_command(served_app, monkeypatch, tmp_path):
    monkeypatch.setenv("CLEARSIGHT_UI_USERS", str(tmp_path / "none.yaml"))
    at = app()
    sign_in(at, *ADMIN)
    assert any("python -m ui.users add NAME --role admin" in e.value for e in at.error)


def test_predict_shows_the_endpoints_top_k_and_queues_uncertain_answers(served_app, digits_dir):
    three, seven = digit(digits_dir, "3"), digit(digits_dir, "7")
    at = app(ADMIN)
    at.slider(key="top_k").set_value(4)
    at.file_uploader(key="uploads").set_value(
        [
            ("three.png", three, "image/png"),
            ("seven.png", seven, "image/png"),
            ("notes.png", b"this is not an image", "image/png"),
        ]
    )
    at.run()
    assert not at.exception, at.exception
    assert any("notes.png: not usable" in w.value for w in at.warning)
    for index, image in enumerate((three, seven)):
        expected = ask_endpoint(served_app.prediction_url, image)
        assert at.subheader[index].value == f"{expected['label']} · {expected['confidence']:.2%}"
        ranked = sorted(expected["probabilities"].items(), key=lambda kv: -kv[1])[:4]
        shown = chart_rows(at, index)
        assert [label for label, _ in shown] == [label for label, _ in ranked]
        assert [p for _, p in shown] == pytest.approx([p for _, p in ranked], abs=1e-9)
    answered = [c.value for c in at.caption if c.value.startswith("Answered by")]
    assert answered and all(f"{UI_MODEL} v{served_app.champion} " in c for c in answered)

    # Above every confidence: both answers are uncertain and queued for review, once.
    at.slider(key="threshold").set_value(1.0).run()
    warnings = [w.value for w in at.warning if w.value.startswith("Uncertain: send for expert")]
    assert len(warnings) == 2
    store = ReviewStore(served_app.catalog_url)
    queued = {e["sha256"]: e for e in store.queue()}
    for image in (three, seven):
        entry = queued[sha256_bytes(image)]
        assert entry["requested_by"] == ADMIN[0] and entry["uncertain"] and not entry["flagged"]
        assert entry["model_version"] == str(served_app.champion)
        assert entry["threshold"] == 1.0
    at.run()  # a rerun neither asks the endpoint again nor queues twice
    assert len(store.queue()) == len(queued)
    store.close()


def test_endpoint_down_says_how_to_start_it(served_app, monkeypatch, tmp_path):
    errors = "clearsight_ui_prediction_errors_total"
    before = counter(errors, reason="endpoint_down")
    config = tmp_path / "train.yaml"
    config.write_text(served_app.train_config.read_text().replace(UI_MODEL, "never-served"))
    monkeypatch.setenv("CLEARSIGHT_TRAIN_CONFIG", str(config))
    at = app(ADMIN)
    assert any("no running server serves never-served" in e.value for e in at.error)
    assert any(c.value == "python run.py deploy" for c in at.code)
    assert not at.file_uploader  # nothing to upload to

    monkeypatch.setenv(
        "CLEARSIGHT_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}/api/v1.0/predictions"
    )
    at = app(ADMIN)
    assert any("does not answer" in e.value for e in at.error)
    assert any(c.value == "python run.py deploy" for c in at.code)
    at.run().run()
    assert counter(errors, reason="endpoint_down") == before  # no prediction was asked for


def test_a_failed_prediction_is_counted_once_per_call(served_app, digits_dir, monkeypatch):
    def broken(url: str, images: list[bytes], timeout: float = 60):
        raise endpoint.EndpointDownError(f"{url} did not answer (ConnectionError)")

    monkeypatch.setattr(endpoint, "predict", broken)  # the page imports it on every run
    before = counter("clearsight_ui_prediction_errors_total", reason="endpoint_down")
    at = app(REVIEWER)
    image = digit(digits_dir, "1", 2)
    at.file_uploader(key="uploads").set_value(("one.png", image, "image/png")).run()
    assert any("did not answer (ConnectionError)" in e.value for e in at.error)
    assert counter("clearsight_ui_prediction_errors_total", reason="endpoint_down") == before + 1


def test_answers_are_kept_per_served_model_version(served_app, digits_dir, monkeypatch):
    requested = "clearsight_ui_predictions_requested_total"
    image = upscaled(digit(digits_dir, "2", 4), side=21)
    at = app(REVIEWER)
    assert any(f"serving **{UI_MODEL}** v{served_app.champion}" in c.value for c in at.caption)
    at.file_uploader(key="uploads").set_value(("two.png", image, "image/png")).run()
    before = counter(requested)
    at.run()
    assert counter(requested) == before  # a rerun reuses the answer

    real = endpoint.check_health
    monkeypatch.setattr(  # a redeploy on the same URL: the server says it serves v99 now
        endpoint,
        "check_health",
        lambda url, timeout=3: {**real(url, timeout), "model_version": "99"},
    )
    at.run()
    assert not at.exception, at.exception
    assert counter(requested) == before + 1  # asked the new model, not the cached answer
    assert any(f"serving **{UI_MODEL}** v99" in c.value for c in at.caption)


def test_flag_a_confident_answer_for_expert_review(served_app, digits_dir):
    image = upscaled(digit(digits_dir, "6", 3), side=22)
    sha = sha256_bytes(image)
    at = app(REVIEWER)
    at.slider(key="threshold").set_value(0.0)  # every answer is confident
    at.file_uploader(key="uploads").set_value(("six.png", image, "image/png")).run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success if s.value.startswith("Confident:")]
    assert not [w for w in at.warning if w.value.startswith("Uncertain")]
    store = ReviewStore(served_app.catalog_url)
    assert sha not in {e["sha256"] for e in store.queue()}

    at.button(key=f"flag_{sha}").click().run()
    assert not at.exception, at.exception
    (entry,) = [e for e in store.queue() if e["sha256"] == sha]
    assert entry["flagged"] and not entry["uncertain"]
    assert entry["requested_by"] == REVIEWER[0] and entry["threshold"] == 0.0
    assert entry["model_version"] == str(served_app.champion)
    assert any(c.value == f"Flagged for expert review as #{entry['id']}." for c in at.caption)
    assert not [b for b in at.button if b.key == f"flag_{sha}"]
    store.close()


def test_reviews_record_who_and_feed_the_next_ingestion(served_app, digits_dir):
    from pipelines import ingest_pipeline

    new_three = upscaled(digit(digits_dir, "3", 1))  # not in the reference data
    known_eight = digit(digits_dir, "8", 1)  # in the reference data, as an 8
    at = app(REVIEWER)
    at.slider(key="threshold").set_value(1.0)
    at.file_uploader(key="uploads").set_value(
        [("new-three.png", new_three, "image/png"), ("eight.png", known_eight, "image/png")]
    )
    at.run()
    assert not at.exception, at.exception
    store = ReviewStore(served_app.catalog_url)
    ids = {e["sha256"]: e["id"] for e in store.queue()}
    new_id, eight_id = ids[sha256_bytes(new_three)], ids[sha256_bytes(known_eight)]

    page(at, "review")
    assert at.title[0].value == "Review queue"
    at.selectbox(key=f"label_{new_id}").set_value("3")
    at.text_input(key=f"note_{new_id}").set_value("clear three")
    at.button(key=f"save_{new_id}").click().run()
    assert not at.exception, at.exception
    at.selectbox(key=f"label_{eight_id}").set_value("0")  # a wrong review: conflicts later
    at.button(key=f"save_{eight_id}").click().run()
    assert not [b for b in at.button if b.key in (f"save_{new_id}", f"save_{eight_id}")]

    by_sha = {r["sha256"]: r for r in store.reviews()}
    review = by_sha[sha256_bytes(new_three)]
    assert review["reviewer"] == REVIEWER[0] and review["label"] == "3"
    assert review["note"] == "clear three" and review["reviewed_at"] is not None
    assert by_sha[sha256_bytes(known_eight)]["verdict"] == "corrected"
    audit = [(a["actor"], a["action"]) for a in store.audit_log()]
    assert (REVIEWER[0], f"review:{review['verdict']}") in audit

    # Each verdict is the ground truth of the endpoint's answer, by its request id.
    from sqlalchemy import select

    from clearsight.prediction_log import GROUND_TRUTHS

    entries = {e["id"]: e for e in store.queue(status=None)}
    with store.engine.connect() as connection:
        truths = {
            (t.puid, t.item): (t.label, t.source, t.recorded_by)
            for t in connection.execute(select(GROUND_TRUTHS))
        }
    for entry_id, label in ((new_id, "3"), (eight_id, "0")):
        key = (entries[entry_id]["puid"], entries[entry_id]["item"])
        assert key[0] and truths[key] == (label, "review", REVIEWER[0])  # the answer's meta.puid
    store.close()

    # The next ingestion merges the reviewed image, with its provenance and reviewer.
    run = ingest_pipeline(data_dir=str(digits_dir), catalog_url=served_app.catalog_url)
    run = Client().get_pipeline_run(run.id)
    dataset = run.steps["store_images"].outputs[ArtifactName.DATASET][0]
    manifest = dataset.load()
    report = run.steps["store_images"].outputs[ArtifactName.INGESTION_REPORT][0].load()
    reviewed = [r for r in manifest.records if r.provenance == "review"]
    assert [(r.sha256, r.label, r.reviewed_by) for r in reviewed] == [
        (sha256_bytes(new_three), "3", REVIEWER[0])
    ]
    assert sha256_bytes(known_eight) not in {r.sha256 for r in manifest.records}  # conflict
    assert any("reviewed as '0' by rita" in s.reason for s in report.skipped)
    assert manifest.provenance_counts() == {"ingest": 1797 - 1, "review": 1}
    assert dataset.run_metadata["provenance"] == {"ingest": 1796, "review": 1}
    assert report.reviewed == 2 and "1 of 2 expert-reviewed images merged" in report.summary()
    catalog = Catalog(served_app.catalog_url)
    rows = {r["sha256"]: r for r in catalog.images()}
    assert rows[sha256_bytes(new_three)]["provenance"] == "review"
    assert catalog.provenance_counts()["review"] == 1
    catalog.close()

    page(at, "review")
    assert any("review 1" in c.value for c in at.caption)  # the catalog's counts


def test_models_page_shows_the_gate_and_admins_act_with_an_audit_trail(served_app):
    version = Client().get_model_version(UI_MODEL, served_app.champion)
    decision_run = Client().list_pipeline_runs(pipeline="promote", sort_by="desc:created").items
    decision = next(
        r.steps["promotion_gate"].outputs[ArtifactName.PROMOTION_DECISION][0].load()
        for r in decision_run
        if r.config.parameters.get("model_name") == UI_MODEL
    )
    at = page(app(ADMIN), "models")
    assert at.subheader[0].value == f"Champion: {UI_MODEL} v{served_app.champion}"
    assert any(c.value.startswith("MLflow UI: [http://127.0.0.1:5001]") for c in at.caption)
    accuracy = version.run_metadata["test_accuracy"]
    assert at.metric[0].value == f"{accuracy:.4f}"
    assert at.markdown[0].value == "\n".join(f"- {r}" for r in decision.reasons)
    assert at.success[0].value.startswith(f"v{served_app.champion} passed: promoted")
    assert at.radio(key="report").options == [
        "Data drift (train vs test or new data)",
        "Challenger quality",
        "Quality test suite",
    ]
    at.toggle(key="show_report").set_value(True).run()
    (report,) = at.get("iframe")
    assert "evidently" in report.proto.srcdoc.lower()

    # Admin actions run run.py with --actor and are audited, failures too.
    at.checkbox(key="confirm").check().run()
    at.button(key="rollback").click().run()
    assert not at.exception, at.exception
    assert any("rollback previous champion: failed" in e.value for e in at.error)
    at.button(key="deploy").click().run()
    assert any("deploy champion: done" in s.value for s in at.success), [c.value for c in at.code]
    store = ReviewStore(served_app.catalog_url)
    audit = [(a["actor"], a["action"], a["outcome"]) for a in store.audit_log()][:2]
    assert audit == [(ADMIN[0], "deploy", "ok"), (ADMIN[0], "rollback", "failed")]
    assert "no previous champion" in store.audit_log()[1]["details"]["output_tail"]
    store.close()
    deploy_run = Client().get_pipeline("deploy").last_run
    assert f"actor:{ADMIN[0]}" in [t.name for t in deploy_run.tags]
    assert at.dataframe[-1].value["who"].tolist()[:2] == [ADMIN[0], ADMIN[0]]


def test_runs_page_lists_recent_runs(served_app):
    at = page(app(REVIEWER), "runs")
    (runs,) = at.dataframe
    table = runs.value
    latest = Client().list_pipeline_runs(sort_by="desc:created", size=5).items
    assert table["run"].tolist()[:5] == [r.name for r in latest]
    assert set(table["pipeline"]) >= {"ingest", "train", "promote", "deploy"}
    assert set(table["status"]) <= {s.value for s in ExecutionStatus}
    assert table["duration_s"].dropna().gt(0).all()
    assert any("make dashboard" in i.value for i in at.info)  # no server: says how to get links
    # The embedded stack's store has no UI until `make mlflow-ui` serves it on 5001.
    assert any("[http://127.0.0.1:5001](http://127.0.0.1:5001)" in m.value for m in at.markdown)
    assert any("`make mlflow-ui`" in c.value for c in at.caption)
    assert not [c.value for c in at.caption if "/tmp/" in c.value or ":5000" in c.value]


def test_mlflow_ui_is_the_tracking_server_or_make_mlflow_ui():
    from ui.data.registry import MlflowUI, mlflow_ui

    local = "sqlite:////somewhere/mlflow.db"
    assert mlflow_ui(None, local) == MlflowUI("http://127.0.0.1:5001", "make mlflow-ui")
    assert mlflow_ui(None, "http://127.0.0.1:5000/") == MlflowUI("http://127.0.0.1:5000", None)
    assert mlflow_ui("http://127.0.0.1:5002/", local).url == "http://127.0.0.1:5002"
    assert mlflow_ui("https://mlflow.example", "http://mlflow:5000").url == "https://mlflow.example"


def test_a_demoted_removed_or_reset_user_loses_rights_at_once(served_app, monkeypatch, tmp_path):
    from ui.config import load_config
    from ui.data.admin import run_action
    from ui.users import User, add_user, load_users, save_users

    users = tmp_path / "users.yaml"
    add_user(users, "otto", "admin", "otto-password-1")
    monkeypatch.setenv("CLEARSIGHT_UI_USERS", str(users))
    monkeypatch.setenv("CLEARSIGHT_CATALOG_URL", sqlite_url(tmp_path / "catalog.db"))
    config = load_config()
    at = page(app(("otto", "otto-password-1")), "models")
    assert at.button(key="deploy")

    entries = load_users(users)
    entries["otto"]["role"] = "reviewer"  # demoted, same password
    save_users(users, entries)
    at.run()
    assert not at.exception, at.exception
    assert any("Signed in as **otto** (reviewer)" in c.value for c in at.sidebar.caption)
    assert any("for admins" in i.value for i in at.info)
    assert not [b for b in at.button if b.key in ("deploy", "rollback", "promote")]
    # An admin action checks the file too: a stale session's "admin" is refused, and audited.
    with pytest.raises(PermissionError, match="otto is a reviewer"):
        run_action(config, User("otto", "admin"), "deploy")
    store = ReviewStore(config.catalog_url)
    entry = store.audit_log()[0]
    assert (entry["actor"], entry["role"], entry["action"], entry["outcome"]) == (
        "otto",
        "reviewer",
        "deploy",
        "refused",
    )

    save_users(users, {})  # removed
    at.run()
    assert [t.value for t in at.title] == ["Clearsight"]
    assert any("otto is no longer a user" in w.value for w in at.warning)
    with pytest.raises(PermissionError, match="no longer a user"):
        run_action(config, User("otto", "admin"), "rollback")
    assert store.audit_log()[0]["outcome"] == "refused"
    store.close()

    add_user(users, "otto", "admin", "otto-password-1")
    sign_in(at, "otto", "otto-password-1")
    assert [t.value for t in at.title] == ["Predict"]
    add_user(users, "otto", "admin", "otto-password-2")  # a password reset ends other sessions
    at.run()
    assert any("password of otto was changed" in w.value for w in at.warning)


def test_review_queue_pages_and_audits_the_reviewers_role(served_app, monkeypatch, tmp_path):
    from ui.data.reviews import content_store

    catalog = sqlite_url(tmp_path / "catalog.db")
    monkeypatch.setenv("CLEARSIGHT_CATALOG_URL", catalog)
    store = ReviewStore(catalog)
    answer = {"label": "3", "confidence": 0.55, "probabilities": {"3": 0.55, "5": 0.3, "8": 0.15}}
    model = {"model_name": UI_MODEL, "model_version": str(served_app.champion)}
    ids = [
        store.keep_prediction(
            image_bytes(seed),
            answer,
            store=content_store(),
            requested_by=REVIEWER[0],
            threshold=0.7,
            model=model,
        )
        for seed in range(12)
    ]

    def saves(at: AppTest) -> list[str]:
        return [b.key for b in at.button if b.key and b.key.startswith("save_")]

    at = page(app(ADMIN), "review")
    assert [m.value for m in at.metric] == ["12", "0", "0"]
    assert saves(at) == [f"save_{i}" for i in ids[:10]]
    assert any("Page 1 of 2: entries 1-10 of 12" in c.value for c in at.caption)
    at.button(key="queue_next").click().run()
    assert saves(at) == [f"save_{i}" for i in ids[10:]]
    at.button(key=f"save_{ids[11]}").click().run()
    assert not at.exception, at.exception
    assert [m.value for m in at.metric] == ["11", "1", "1"]
    assert saves(at) == [f"save_{ids[10]}"]  # still on page 2
    entry = store.audit_log()[0]
    assert (entry["actor"], entry["role"], entry["action"]) == (
        ADMIN[0],
        "admin",
        "review:confirmed",
    )
    at.button(key="queue_previous").click().run()
    assert saves(at) == [f"save_{i}" for i in ids[:10]]
    store.close()


def test_metrics_port_exports_the_apps_metrics(served_app, digits_dir):
    def scrape() -> dict[str, float]:
        text = requests.get(f"http://127.0.0.1:{served_app.metrics_port}/metrics", timeout=5).text
        values: dict[str, float] = {}
        for name, labels, number in re.findall(
            r"^(clearsight_ui_\w+?)(\{[^}]*\})? ([0-9.e+-]+)$", text, re.MULTILINE
        ):
            values[name + labels] = float(number)
            if labels:  # also the total over the labels
                values[name] = values.get(name, 0.0) + float(number)
        return values

    before = scrape()
    image = upscaled(digit(digits_dir, "5", 2), side=20)
    at = app(REVIEWER)
    at.slider(key="threshold").set_value(1.0)
    at.file_uploader(key="uploads").set_value(("five.png", image, "image/png")).run()
    (entry,) = [
        e for e in ReviewStore(served_app.catalog_url).queue() if e["sha256"] == sha256_bytes(image)
    ]
    page(at, "review")
    at.button(key=f"save_{entry['id']}").click().run()
    after = scrape()

    def grew(name: str, by: float = 1) -> bool:
        return after.get(name, 0) - before.get(name, 0) >= by

    assert grew('clearsight_ui_page_views_total{page="Predict"}')
    assert grew('clearsight_ui_page_views_total{page="Review queue"}')
    assert grew("clearsight_ui_uploads_total")
    assert grew("clearsight_ui_predictions_requested_total")
    assert grew("clearsight_ui_upload_to_answer_seconds_count")
    assert grew('clearsight_ui_reviews_total{verdict="confirmed"}') or grew(
        'clearsight_ui_reviews_total{verdict="corrected"}'
    )
    assert grew('clearsight_ui_logins_total{outcome="ok"}')


def test_shipped_prometheus_config_scrapes_the_app():
    import yaml

    config = yaml.safe_load((ROOT / "stack" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = jobs["clearsight-ui"]["static_configs"][0]["targets"]
    assert targets == ["127.0.0.1:8502"]
    result = subprocess.run(
        ["promtool", "check", "config", str(ROOT / "stack" / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_users_cli_adds_hashed_users(tmp_path):
    users = tmp_path / "users.yaml"
    add = subprocess.run(
        [
            sys.executable,
            "-m",
            "ui.users",
            "add",
            "zoe",
            "--role",
            "admin",
            "--password-stdin",
            "--file",
            str(users),
        ],
        input="a-long-password\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert add.returncode == 0, add.stderr
    content = users.read_text()
    assert "a-long-password" not in content and "pbkdf2_sha256$" in content
    assert oct(users.stat().st_mode & 0o777) == "0o600"
    from ui.users import authenticate

    assert authenticate(users, "zoe", "a-long-password").role == "admin"
    assert authenticate(users, "zoe", "a-long-passwor") is None
    short = subprocess.run(
        [sys.executable, "-m", "ui.users", "add", "x", "--password-stdin", "--file", str(users)],
        input="short\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert short.returncode != 0 and "at least 12" in short.stderr


def test_a_possible_label_error_shows_the_given_and_suggested_labels(
    served_app, monkeypatch, tmp_path
):
    from clearsight.dataset import ImageRecord
    from ui.data.reviews import content_store

    catalog = sqlite_url(tmp_path / "catalog.db")
    monkeypatch.setenv("CLEARSIGHT_CATALOG_URL", catalog)
    data = image_bytes(77)
    sha = sha256_bytes(data)
    contents = content_store()
    uri = contents.uri_for(sha, "PNG")
    contents.put(uri, data)
    record = ImageRecord(
        sha256=sha,
        label="3",
        split="train",
        uri=uri,
        width=24,
        height=24,
        mode="RGB",
        format="PNG",
        num_bytes=len(data),
        source_path="/data/3/a.png",
    )
    store = ReviewStore(catalog)
    entry, added = store.keep_label_issue(
        record,
        given_label="3",
        probabilities={"3": 0.04, "5": 0.9, "8": 0.06},
        model={"model_name": UI_MODEL, "model_version": str(served_app.champion)},
    )
    assert added
    at = page(app(ADMIN), "review")
    assert not at.exception, at.exception
    shown = " ".join(m.value for m in at.markdown)
    assert f"#{entry}" in shown and "possible label error" in shown, shown
    assert "given **3** (4.0% out-of-sample), suggested **5**" in shown, shown
    store.close()


MONITORED_MODEL = "ui-monitoring-classifier"


@pytest.fixture()
def monitoring_env(served_app, monkeypatch, tmp_path):
    """A catalog of its own, a model name of its own (no monitor run yet), no Alertmanager."""
    import yaml

    config = yaml.safe_load(served_app.train_config.read_text())
    config["model"]["name"] = MONITORED_MODEL
    train_config = tmp_path / "train.yaml"
    train_config.write_text(yaml.safe_dump(config))
    catalog = sqlite_url(tmp_path / "catalog.db")
    monkeypatch.setenv("CLEARSIGHT_CATALOG_URL", catalog)
    monkeypatch.setenv("CLEARSIGHT_TRAIN_CONFIG", str(train_config))
    monkeypatch.delenv("CLEARSIGHT_ALERTMANAGER_URL", raising=False)
    return catalog


@pytest.fixture()
def alertmanager(tmp_path):
    """Debian's prometheus-alertmanager on a free loopback port, routing to no receiver."""
    import shutil
    import signal
    import time

    binary = shutil.which("prometheus-alertmanager")
    assert binary, "prometheus-alertmanager is missing: make prometheus alerting"
    config = tmp_path / "alertmanager.yml"
    config.write_text("route: {receiver: 'null'}\nreceivers: [{name: 'null'}]\n")
    url = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address={url.removeprefix('http://')}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("Alertmanager did not start in 60 s")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_monitoring_page_with_an_empty_log_says_what_to_run(monitoring_env, monkeypatch):
    at = page(app(REVIEWER), "monitoring")
    assert at.title[0].value == "Monitoring"
    warnings = [w.value for w in at.warning]
    assert any("CLEARSIGHT_ALERTMANAGER_URL is not set" in w for w in warnings), warnings
    infos = " ".join(i.value for i in at.info)
    assert f"No monitor run has judged a version of {MONITORED_MODEL} yet" in infos
    assert [c.value for c in at.code] == ["python run.py monitor"]
    assert "No answer has a ground truth yet" in infos
    assert "The prediction log is empty" in infos
    assert not at.dataframe

    # Configured, but nothing listens there: a notice, not a traceback.
    monkeypatch.setenv("CLEARSIGHT_ALERTMANAGER_URL", f"http://127.0.0.1:{free_port()}")
    at = page(app(REVIEWER), "monitoring")
    assert any("does not answer" in w.value and "make services" in w.value for w in at.warning)


def table_with(at: AppTest, column: str):
    """The page's table that has ``column`` (AppTest does not keep a dataframe's key)."""
    tables = [d.value for d in at.dataframe if column in d.value.columns]
    assert tables, f"no table with a {column!r} column; notices: {[w.value for w in at.warning]}"
    return tables[0]


def test_monitoring_page_shows_figures_accuracy_alerts_and_the_searchable_log(
    monitoring_env, alertmanager, monkeypatch
):
    from datetime import UTC, datetime, timedelta

    from zenml import log_metadata

    from clearsight.alerts import build_alert, post_alerts
    from clearsight.monitoring import (
        METADATA_KEY,
        DriftFigures,
        MonitorResult,
        metadata,
        read_window,
        window_figures,
    )
    from clearsight.prediction_log import REVIEW, LoggedRequest, PredictionLog

    catalog = monitoring_env
    now = datetime.now(UTC).replace(microsecond=0)
    log = PredictionLog(catalog)
    for i in range(60):  # 60 answers of version 2 over the last hours; 6 of version 1 earlier
        version, at = (
            ("2", now - timedelta(minutes=5 * i)) if i < 54 else ("1", now - timedelta(days=3))
        )
        log.log(
            LoggedRequest(
                at=at,
                puid=f"req-{i}",
                model_name=MONITORED_MODEL,
                model_version=version,
                registered_version=version,
                answers=[
                    {
                        "label": str(i % 3),
                        "confidence": 0.4 + (i % 6) / 10,
                        "uncertain": (i % 6) < 3,
                        "top_k": [],
                    }
                ],
            )
        )
    assert log.flush(30)
    for i in range(0, 60, 2):  # every other answer gets a truth; a third of them disagree
        log.record_truths(f"req-{i}", [str(i % 3) if i % 6 else "9"], source=REVIEW)
    log.close()

    # What the monitor records on the model version it judged (its own functions).
    zen = Client()
    zen.create_model(name=MONITORED_MODEL)
    version = zen.create_model_version(model_name_or_id=MONITORED_MODEL, name="monitored")
    predictions, _ = read_window(
        MONITORED_MODEL, "2", now - timedelta(hours=24), now + timedelta(seconds=1), catalog
    )
    figures = window_figures(predictions, ["0", "1", "2"], with_features=0)
    result = MonitorResult(
        model_name=MONITORED_MODEL,
        model_version=str(version.number),
        window_start=now - timedelta(hours=24),
        window_end=now,
        window_hours=24,
        figures=figures,
        drift=DriftFigures(drift_share=0.25),
        checks=[],
        retrain_reasons=["production accuracy below 0.90"],
        max_age_hours=26,
        run_id="run-1",
    )
    log_metadata(metadata={METADATA_KEY: metadata(result)}, model_version_id=version.id)

    post_alerts(
        alertmanager,
        [
            build_alert(
                "ClearsightProductionAccuracyBelowFloor",
                {"severity": "critical", "model_name": MONITORED_MODEL, "model_version": "2"},
                {"summary": "Production accuracy is below its floor"},
            )
        ],
    )
    monkeypatch.setenv("CLEARSIGHT_ALERTMANAGER_URL", alertmanager)

    at = page(app(REVIEWER), "monitoring")
    alerts = table_with(at, "alert")
    assert alerts["alert"].tolist() == ["ClearsightProductionAccuracyBelowFloor"]
    assert alerts["model"].tolist() == [f"{MONITORED_MODEL} v2"]
    assert alerts["severity"].tolist() == ["critical"]

    table = table_with(at, "retrain because")
    row = table.iloc[0]
    assert row["version"] == f"v{version.number}" and row["labelled"] == figures.labelled
    assert row["production accuracy"] == pytest.approx(figures.accuracy)
    assert row["CI lower"] == pytest.approx(figures.accuracy_ci[0])
    assert row["drift share"] == pytest.approx(0.25)
    assert "production accuracy below 0.90" in row["retrain because"]
    assert at.metric[0].value == f"{figures.accuracy:.1%}"

    chart = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert chart["layer"][0]["mark"]["type"] == "area"  # the interval's band under the lines

    log_table = table_with(at, "request")
    assert len(log_table) == 50  # the first page of the 60 answers, newest first
    assert any("Page 1 of 2: answers 1-50 of 60" in c.value for c in at.caption)
    assert log_table["request"].tolist()[:2] == ["req-0", "req-1"]
    assert log_table["truth from"].fillna("").tolist()[:2] == ["review", ""]
    at.button(key="log_next").click().run()
    assert len(table_with(at, "request")) == 10

    # Filters: a label, a confidence band and a version (back to page 1).
    at.multiselect(key="log_labels").set_value(["1"]).run()
    at.slider(key="log_confidence").set_value((0.5, 1.0)).run()
    at.multiselect(key="log_versions").set_value(["2"]).run()
    assert not at.exception, at.exception
    filtered = table_with(at, "request")
    expected = [f"req-{i}" for i in range(54) if i % 3 == 1 and 0.4 + (i % 6) / 10 >= 0.5]
    assert filtered["request"].tolist() == expected
    assert set(filtered["version"]) == {"2"}
    # A date range that holds only the older answers of version 1.
    at.multiselect(key="log_versions").set_value([]).run()
    at.multiselect(key="log_labels").set_value([]).run()
    at.slider(key="log_confidence").set_value((0.0, 1.0)).run()
    three_days = (now - timedelta(days=3)).date()
    at.date_input(key="log_dates").set_value((three_days, three_days)).run()
    assert set(table_with(at, "request")["version"]) == {"1"}
    at.multiselect(key="log_labels").set_value(["2"]).run()
    at.slider(key="log_confidence").set_value((0.99, 1.0)).run()
    assert any("No answer of the log matches" in i.value for i in at.info)
