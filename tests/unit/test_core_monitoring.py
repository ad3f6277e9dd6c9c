"""The monitor's core: the window, Wilson intervals, recall, decisions, the metric contract.

Real SQLite catalogs migrated to head; real Evidently reports on the pixel
features of the UCI digits (normal and inverted); the metric names are checked
against the contract the alert rules and Grafana are written against.
"""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image, ImageOps
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_digits
from sqlalchemy import insert

from clearsight import prediction_log as plog
from clearsight.catalog import sqlite_url
from clearsight.features import PREDICTION, embedding_columns, pixel_features
from clearsight.monitoring import (
    ACCURACY,
    ALERT,
    CRITICAL_RECALL,
    DATA_DRIFT,
    INSUFFICIENT,
    METRICS,
    OK,
    PREDICTION_DRIFT,
    UNCERTAIN_SHARE,
    DriftFigures,
    MonitoringError,
    MonitorRules,
    MonitorWindow,
    build_registry,
    check_prediction_log,
    check_rules,
    current_features,
    decide,
    drift_figures,
    feature_columns,
    load_window,
    monitor_result,
    read_window,
    reference_table,
    summary_html,
    summary_lines,
    wilson_interval,
    window_bounds,
    window_figures,
)

ROOT = Path(__file__).resolve().parents[2]
CLASSES = [str(d) for d in range(10)]
COLUMNS = feature_columns(2)
END = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WINDOW = (END - timedelta(hours=24), END)

# The metric contract of issue 13 item 3 (alert rules and Grafana are written against it).
CONTRACT = {
    "clearsight_monitor_run_info": {"run_id", "run_url"},
    "clearsight_monitor_last_run_timestamp_seconds": set(),
    "clearsight_monitor_window_predictions": set(),
    "clearsight_monitor_drift_share": set(),
    "clearsight_monitor_drift_detected": set(),
    "clearsight_monitor_prediction_drift_detected": set(),
    "clearsight_monitor_uncertain_share": set(),
    "clearsight_monitor_predicted_share": {"label"},
    "clearsight_monitor_labelled": set(),
    "clearsight_monitor_production_accuracy": set(),
    "clearsight_monitor_production_accuracy_ci_lower": set(),
    "clearsight_monitor_production_accuracy_ci_upper": set(),
    "clearsight_monitor_class_recall": {"label"},
    "clearsight_monitor_accuracy_below_floor": set(),
    "clearsight_monitor_critical_recall_below_floor": {"label"},
    "clearsight_monitor_max_age_seconds": set(),
}


# --- Wilson ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "lower", "upper"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion",
        # Statistics in Medicine 17, Table II, method 3 (score interval without correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_the_published_values(successes, n, lower, upper):
    low, high = wilson_interval(successes, n)
    assert low == pytest.approx(lower, abs=5e-5)
    assert high == pytest.approx(upper, abs=5e-5)


def test_wilson_interval_from_its_definition_and_its_edges():
    # The interval's bounds are the roots in p of (p̂ - p)² = z² p (1 - p) / n.
    z, n, k = 1.959963984540054, 120, 97
    for bound in wilson_interval(k, n):
        assert (k / n - bound) ** 2 == pytest.approx(z * z * bound * (1 - bound) / n, rel=1e-9)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] < 1.0
    assert wilson_interval(0, 1) == (0.0, pytest.approx(0.7935, abs=1e-4))
    low, high = wilson_interval(3, 3)
    assert high - low > 0.4  # three cases say little
    with pytest.raises(ValueError, match="n >= 1"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="between 0 and n"):
        wilson_interval(5, 4)


# --- the window ----------------------------------------------------------------------


def digit_png(image: np.ndarray, invert: bool = False) -> bytes:
    picture = Image.fromarray((image * 255 / 16).astype(np.uint8)).resize((32, 32))
    if invert:
        picture = ImageOps.invert(picture)
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def features_of(data: bytes, embedding: tuple[float, float] = (0.0, 0.0)) -> dict[str, float]:
    values = pixel_features(data)
    values.update(dict(zip(embedding_columns(2), embedding, strict=True)))
    return {k: float(v) for k, v in values.items()}


def row(puid, item=0, label="3", at=END - timedelta(hours=1), version="2", **kw) -> dict:
    return {
        "created_at": at,
        "puid": puid,
        "item": item,
        "model_name": kw.pop("model_name", "clf"),
        "model_version": version,
        "registered_version": "5",
        "input_kind": "images",
        "image_sha256": None,
        "pixel_sha256": None,
        "label": label,
        "confidence": kw.pop("confidence", 0.95),
        "uncertain": kw.pop("uncertain", False),
        "top_k": [],
        "tags": None,
        "features": kw.pop("features", None),
        **kw,
    }


def truth(puid, item, label, at, source="feedback") -> dict:
    return {
        "puid": puid,
        "item": item,
        "label": label,
        "source": source,
        "created_at": at,
        "recorded_by": None,
    }


def write(url: str, rows: list[dict], truths: list[dict] = ()) -> None:
    engine = plog.connect(url)  # migrated to head: the live tables
    with engine.begin() as connection:
        if rows:
            connection.execute(insert(plog.PREDICTION_LOG), rows)
        if truths:
            connection.execute(insert(plog.GROUND_TRUTHS), list(truths))
    engine.dispose()


@pytest.fixture()
def url(tmp_path) -> str:
    return sqlite_url(tmp_path / "catalog.db")


def test_the_window_is_the_versions_rows_in_time_with_the_newest_truth(url):
    image = digit_png(load_digits().images[0])
    complete = features_of(image)
    hour = timedelta(hours=1)
    rows = [
        row("a", 0, "3", features=complete),
        row("a", 1, "5", features={k: v for k, v in complete.items() if k != "embedding_1"}),
        row("b", 0, "3", uncertain=True),  # no features
        row("c", 0, "7", at=END - 25 * hour),  # before the window
        row("d", 0, "7", at=END),  # the end is excluded
        row("e", 0, "3", version="1"),  # another version of the model
        row("e", 1, "3", version="1"),
        row("f", 0, "3", model_name="other"),  # another model
        row("g", 0, "9", at=END - 24 * hour),  # the start is included
    ]
    truths = [
        truth("a", 0, "8", END - 3 * hour),
        truth("a", 0, "3", END - 2 * hour, source="review"),  # newer: wins
        truth("a", 1, "5", END - 2 * hour),
        truth("a", 1, "6", END - 3 * hour, source="review"),  # older: loses
        truth("c", 0, "7", END - 2 * hour),  # its prediction is outside the window
        truth("zz", 0, "1", END - 2 * hour),  # its prediction was never logged
    ]
    write(url, rows, truths)
    predictions, others = read_window("clf", 2, *WINDOW, url=url)
    assert sorted(predictions["puid"] + predictions["item"].astype(str)) == ["a0", "a1", "b0", "g0"]
    assert others == {"1": 2}
    by_key = predictions.set_index(["puid", "item"])
    assert by_key.loc[("a", 0), "truth"] == "3" and by_key.loc[("a", 0), "truth_source"] == "review"
    assert (
        by_key.loc[("a", 1), "truth"] == "5" and by_key.loc[("a", 1), "truth_source"] == "feedback"
    )
    assert by_key.loc[("b", 0), "truth"] is None

    table, without = current_features(predictions, COLUMNS)
    assert without == 3  # an incomplete dict counts as without features
    assert list(table.columns) == [*COLUMNS, PREDICTION] and len(table) == 1
    assert table.loc[0, "brightness"] == pytest.approx(complete["brightness"])
    assert table.loc[0, PREDICTION] == "3"

    figures = window_figures(predictions, CLASSES, len(table), others)
    assert figures.predictions == 4 and figures.with_features == 1 and figures.without_features == 3
    assert figures.uncertain_share == pytest.approx(0.25)
    assert figures.predicted_share["3"] == pytest.approx(0.5)
    assert figures.predicted_share["0"] == 0.0 and sum(figures.predicted_share.values()) == 1.0
    assert (figures.labelled, figures.correct, figures.accuracy) == (2, 2, 1.0)
    assert figures.labelled_by_source == {"review": 1, "feedback": 1}
    assert figures.accuracy_ci == wilson_interval(2, 2)


def test_a_catalog_before_the_features_column_is_read_without_features(url):
    from sqlalchemy import create_engine, text

    write(url, [row("a", 0, "3", features={"brightness": 0.5})])
    engine = create_engine(url)
    with engine.begin() as connection:  # as migration 0003 left it
        connection.execute(text("ALTER TABLE prediction_log DROP COLUMN features"))
    engine.dispose()
    predictions, _ = read_window("clf", "2", *WINDOW, url=url)
    assert len(predictions) == 1 and predictions.loc[0, "features"] is None
    assert current_features(predictions, COLUMNS)[1] == 1


def test_accuracy_and_per_class_recall_follow_the_truths():
    # 3 classes, truths and predictions written out by hand.
    truths = ["0"] * 10 + ["1"] * 6 + ["2"] * 4 + [None] * 5
    labels = ["0"] * 9 + ["1"] + ["1"] * 3 + ["0"] * 3 + ["2"] * 4 + ["1"] * 5
    predictions = pd.DataFrame(
        {
            "label": labels,
            "truth": truths,
            "truth_source": ["feedback" if t else None for t in truths],
            "uncertain": [False] * 25,
        }
    )
    figures = window_figures(predictions, ["0", "1", "2", "3"], 0)
    assert (figures.labelled, figures.correct) == (20, 16)
    assert figures.accuracy == pytest.approx(0.8)
    recall = {name: r.recall for name, r in figures.class_recall.items()}
    assert recall == {"0": 0.9, "1": 0.5, "2": 1.0, "3": None}
    assert figures.class_recall["1"].labelled == 6 and figures.class_recall["1"].recalled == 3
    assert figures.predicted_share["1"] == pytest.approx(9 / 25)
    assert figures.unknown_truths == []

    reviewed = predictions.assign(truth=["9"] + truths[1:])  # a class the model does not have
    figures = window_figures(reviewed, ["0", "1", "2", "3"], 0)
    assert figures.unknown_truths == ["9"] and figures.class_recall["9"].recall == 0.0
    assert figures.accuracy == pytest.approx(15 / 20)


def test_an_empty_window_has_counts_and_no_figures(url):
    write(url, [])
    window, features, predictions = load_window("clf", 2, CLASSES, COLUMNS, WINDOW, url)
    figures = window.figures
    assert figures.predictions == 0 and figures.labelled == 0
    assert figures.accuracy is None and figures.accuracy_ci is None
    assert figures.uncertain_share is None
    assert features.empty and predictions.empty


def test_a_missing_catalog_or_log_names_the_fix(tmp_path):
    with pytest.raises(MonitoringError, match="does not exist.*python run.py deploy"):
        check_prediction_log(sqlite_url(tmp_path / "nothing.db"))
    from sqlalchemy import create_engine, text

    bare = sqlite_url(tmp_path / "bare.db")
    engine = create_engine(bare)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE images (id INTEGER)"))
    engine.dispose()
    with pytest.raises(MonitoringError, match="no prediction log.*CLEARSIGHT_PREDICTION_LOG=on"):
        check_prediction_log(bare)
    full = sqlite_url(tmp_path / "full.db")
    write(full, [row("a"), row("b")])
    assert check_prediction_log(full) == 2


def test_window_bounds():
    assert window_bounds(24, "2026-12-01T12:00:00") == WINDOW
    start, end = window_bounds(1.5, END.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris")))
    assert end == END and end.tzinfo == UTC and start == END - timedelta(minutes=90)
    with pytest.raises(ValueError, match="positive"):
        window_bounds(0)


# --- drift through real Evidently reports ------------------------------------------


def evidently_reports(reference: pd.DataFrame, current: pd.DataFrame, rules: MonitorRules):
    """The monitor's two reports, with the legacy API the ZenML step uses."""
    from evidently.legacy.metric_preset import DataDriftPreset
    from evidently.legacy.metrics import ColumnDriftMetric
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report

    data = Report(
        metrics=[
            DataDriftPreset(
                columns=COLUMNS,
                num_stattest=rules.drift_stattest,
                drift_share=rules.max_drift_share,
            )
        ]
    )
    data.run(
        reference_data=reference,
        current_data=current,
        column_mapping=ColumnMapping(numerical_features=COLUMNS, categorical_features=[]),
    )
    labels = Report(
        metrics=[
            ColumnDriftMetric(
                PREDICTION,
                stattest=rules.prediction_stattest,
                stattest_threshold=rules.prediction_stattest_threshold,
            )
        ]
    )
    labels.run(
        reference_data=reference[[PREDICTION]],
        current_data=current[[PREDICTION]],
        column_mapping=ColumnMapping(
            numerical_features=[], categorical_features=[PREDICTION], prediction=None
        ),
    )
    return json.loads(data.json()), json.loads(labels.json())


@pytest.fixture(scope="module")
def digit_tables():
    """Reference: 600 digits; normal: 150 others; shifted: those 150 inverted, all predicted '1'."""
    digits = load_digits()
    rng = np.random.default_rng(0)

    def table(indices, invert=False, labels=None):
        rows = [
            features_of(digit_png(digits.images[i], invert), tuple(rng.normal(size=2)))
            for i in indices
        ]
        frame = pd.DataFrame(rows)[COLUMNS]
        frame[PREDICTION] = labels if labels is not None else digits.target[indices].astype(str)
        return frame

    reference = table(range(600))
    normal = table(range(600, 750))
    shifted = table(range(600, 750), invert=True, labels=["1"] * 150)
    return reference, normal, shifted


def test_drift_is_read_from_evidently_and_judged_on_real_images(digit_tables):
    reference, normal, shifted = digit_tables
    rules = MonitorRules(max_drift_share=0.3, min_predictions=100)
    calm = drift_figures(*evidently_reports(reference, normal, rules))
    moved = drift_figures(*evidently_reports(reference, shifted, rules))
    assert calm.columns == len(COLUMNS) and calm.drift_share <= 0.3, calm.drifted_columns
    assert calm.prediction_drift_detected is False
    assert moved.drift_share > 0.3 and "brightness" in moved.drifted_columns
    assert moved.prediction_drift_detected is True and moved.prediction_drift_score > 0.1
    assert moved.drift_stattest == "K-S p_value"

    def figures_of(table):
        return window_figures(
            pd.DataFrame(
                {
                    "label": table[PREDICTION],
                    "truth": None,
                    "truth_source": None,
                    "uncertain": False,
                }
            ),
            CLASSES,
            len(table),
        )

    checks, reasons = decide(figures_of(normal), calm, rules)
    assert {c.name: c.status for c in checks}[DATA_DRIFT] == OK and not reasons
    checks, reasons = decide(figures_of(shifted), moved, rules)
    status = {c.name: c.status for c in checks}
    assert status[DATA_DRIFT] == ALERT and status[PREDICTION_DRIFT] == ALERT
    assert any(r.startswith(f"drift share {moved.drift_share:.2f} > 0.3") for r in reasons)
    assert any(r.startswith("prediction drift: label distribution changed") for r in reasons)

    with pytest.raises(MonitoringError, match="DataDriftPreset"):
        drift_figures({"metrics": []}, None)


def test_reference_table_maps_indices_to_labels_and_checks_its_columns():
    reference = pd.DataFrame(
        {c: [0.1, 0.2] for c in COLUMNS} | {"target": [0, 2], PREDICTION: [0, 2]}
    )
    table = reference_table(reference, COLUMNS, ["cat", "dog", "fox"])
    assert list(table[PREDICTION]) == ["cat", "fox"] and "target" not in table
    with pytest.raises(MonitoringError, match="embedding_components"):
        reference_table(reference, feature_columns(5), ["cat", "dog", "fox"])
    with pytest.raises(MonitoringError, match="another model"):
        reference_table(reference, COLUMNS, ["cat", "dog"])


# --- decisions ------------------------------------------------------------------------


def figures(n=500, labelled=200, correct=190, uncertain=0.05, recall=None, with_features=None):
    recall = recall or {}
    from clearsight.monitoring import ClassRecall, WindowFigures

    return WindowFigures(
        predictions=n,
        with_features=n if with_features is None else with_features,
        without_features=0 if with_features is None else n - with_features,
        uncertain_share=uncertain if n else None,
        predicted_share={"0": 0.5, "1": 0.5} if n else {},
        labelled=labelled,
        correct=correct,
        accuracy=correct / labelled if labelled else None,
        accuracy_ci=wilson_interval(correct, labelled) if labelled else None,
        class_recall={
            k: ClassRecall(labelled=m, recalled=r, recall=r / m if m else None)
            for k, (m, r) in recall.items()
        },
    )


CALM = DriftFigures(
    drift_share=0.1,
    columns=20,
    prediction_drift_detected=False,
    prediction_drift_score=0.02,
    prediction_stattest="Jensen-Shannon distance",
    prediction_stattest_threshold=0.1,
)


def test_decisions_name_every_alert_with_its_numbers():
    rules = MonitorRules(critical_classes=["1"], min_labelled=50, min_class_labelled=20)
    drifted = CALM.model_copy(
        update={"drift_share": 0.62, "drifted_columns": ["brightness", "mean_r"]}
    )
    checks, reasons = decide(
        figures(labelled=120, correct=97, uncertain=0.31, recall={"1": (40, 30)}), drifted, rules
    )
    status = {(c.name, c.label): c.status for c in checks}
    assert status == {
        (DATA_DRIFT, None): ALERT,
        (PREDICTION_DRIFT, None): OK,
        (UNCERTAIN_SHARE, None): ALERT,
        (ACCURACY, None): ALERT,
        (CRITICAL_RECALL, "1"): ALERT,
    }
    assert reasons[0].startswith("drift share 0.62 > 0.5 (2/20 columns: brightness, mean_r)")
    assert "uncertain share 0.31 > 0.2" in reasons
    assert any(
        r.startswith("production accuracy 0.81 < 0.9 (n=120, 95% CI 0.73-0.87)") for r in reasons
    )
    assert "recall of critical class '1' 0.75 < 0.9 (n=40)" in reasons

    only_accuracy = rules.model_copy(update={"retrain_on": [ACCURACY]})
    _, reasons = decide(figures(labelled=120, correct=97), drifted, only_accuracy)
    assert len(reasons) == 1 and reasons[0].startswith("production accuracy 0.81")

    checks, reasons = decide(
        figures(labelled=200, correct=190, recall={"1": (40, 39)}), CALM, rules
    )
    assert {c.status for c in checks} == {OK} and reasons == []


def test_nothing_is_decided_on_too_little_evidence():
    rules = MonitorRules(critical_classes=["1"], min_predictions=100, min_labelled=50)
    # 3 labelled cases, all wrong; 40 predictions with a drift share of 1.0.
    drifted = CALM.model_copy(update={"drift_share": 1.0, "prediction_drift_detected": True})
    checks, reasons = decide(
        figures(n=40, labelled=3, correct=0, uncertain=0.9, recall={"1": (3, 0)}), drifted, rules
    )
    assert {c.status for c in checks} == {INSUFFICIENT} and reasons == []
    details = " | ".join(c.detail for c in checks)
    assert "40 predictions with features < 100: data drift not judged" in details
    assert "3 labelled < 50: accuracy not judged" in details
    assert "3 labelled '1' < 20: recall not judged" in details
    # Enough predictions, but none with features: data drift alone is not judged.
    no_features = figures(n=500, with_features=0, recall={"1": (40, 39)})
    checks, _ = decide(no_features, CALM.model_copy(update={"drift_share": None}), rules)
    assert [c.name for c in checks if c.status == INSUFFICIENT] == [DATA_DRIFT]


def test_rules_refuse_typos_and_unknown_critical_classes():
    with pytest.raises(ValueError, match="retrain_on"):
        MonitorRules(retrain_on=["drift"])
    with pytest.raises(ValueError, match="extra"):
        MonitorRules(max_drift=0.3)
    with pytest.raises(MonitoringError, match=r"\['melanom'\] are not classes.*configs/monitor"):
        check_rules(MonitorRules(critical_classes=["melanom"]), ["melanoma", "nevus"], "clf v3")
    shipped = yaml.safe_load((ROOT / "configs" / "monitor.yaml").read_text())["parameters"]
    assert MonitorRules.model_validate(shipped["rules"]).window_hours == 24


# --- what is published ------------------------------------------------------------------


def result_of(fig, drift=CALM, rules=None, version="4"):
    window = MonitorWindow(
        model_name="clf",
        model_version=version,
        registered_version="9",
        start=WINDOW[0],
        end=WINDOW[1],
        classes=["0", "1"],
        figures=fig,
    )
    return monitor_result(
        window, drift, rules or MonitorRules(critical_classes=["1"]), "run-1", "http://x/runs/1"
    )


def samples(registry) -> dict[str, list]:
    parsed = text_string_to_metric_families(generate_latest(registry).decode())
    return {family.name: family.samples for family in parsed}


def test_the_registry_follows_the_metric_contract():
    assert set(METRICS) == set(CONTRACT)
    result = result_of(figures(labelled=120, correct=97, recall={"0": (60, 60), "1": (60, 37)}))
    found = samples(build_registry(result, now=1_700_000_000.0))
    assert set(found) == set(CONTRACT)
    for name, extra in CONTRACT.items():
        for sample in found[name]:
            assert sample.name == name
            assert set(sample.labels) == {"model_name", "model_version", *extra}, name
            assert sample.labels["model_name"] == "clf" and sample.labels["model_version"] == "4"

    def value(name, **labels):
        (match,) = [s.value for s in found[name] if labels.items() <= s.labels.items()]
        return match

    assert value("clearsight_monitor_run_info", run_id="run-1", run_url="http://x/runs/1") == 1
    assert value("clearsight_monitor_last_run_timestamp_seconds") == 1_700_000_000.0
    assert value("clearsight_monitor_window_predictions") == 500
    assert value("clearsight_monitor_drift_share") == pytest.approx(0.1)
    assert value("clearsight_monitor_drift_detected") == 0
    assert value("clearsight_monitor_prediction_drift_detected") == 0
    assert value("clearsight_monitor_predicted_share", label="1") == 0.5
    assert value("clearsight_monitor_production_accuracy") == pytest.approx(97 / 120)
    low, high = wilson_interval(97, 120)
    assert value("clearsight_monitor_production_accuracy_ci_lower") == pytest.approx(low)
    assert value("clearsight_monitor_production_accuracy_ci_upper") == pytest.approx(high)
    assert value("clearsight_monitor_class_recall", label="1") == pytest.approx(37 / 60)
    assert value("clearsight_monitor_accuracy_below_floor") == 1
    assert value("clearsight_monitor_critical_recall_below_floor", label="1") == 1
    assert value("clearsight_monitor_max_age_seconds") == 26 * 3600


def test_undecided_figures_are_left_out_not_pushed_as_zero():
    result = result_of(figures(n=40, labelled=3, correct=3, recall={"1": (3, 3)}))
    found = samples(build_registry(result, now=0.0))
    for absent in (
        "clearsight_monitor_drift_detected",
        "clearsight_monitor_prediction_drift_detected",
        "clearsight_monitor_accuracy_below_floor",
        "clearsight_monitor_critical_recall_below_floor",
    ):
        assert found.get(absent, []) == [], absent
    assert found["clearsight_monitor_labelled"][0].value == 3  # the figures are still there
    assert found["clearsight_monitor_production_accuracy"][0].value == 1.0
    empty = result_of(figures(n=0, labelled=0, correct=0), drift=DriftFigures())
    found = samples(build_registry(empty, now=0.0))
    assert found["clearsight_monitor_window_predictions"][0].value == 0
    assert found.get("clearsight_monitor_production_accuracy", []) == []
    assert found.get("clearsight_monitor_uncertain_share", []) == []


def test_summary_lines_and_page_show_the_window_figures_and_reasons():
    result = result_of(figures(labelled=120, correct=97))
    text = "\n".join(summary_lines(result))
    assert "clf v4 (MLflow v9)" in text
    assert "2026-11-30 12:00 to 2026-12-01 12:00 UTC (24 h)" in text
    assert "share 0.10, 0/20 columns  [ok]" in text
    assert "accuracy        0.808 (95% CI 0.729-0.869, n=120)  [ALERT]" in text
    assert "retrain         recommended" in text and "production accuracy 0.81 < 0.9" in text
    assert result.retrain and result.check(ACCURACY).status == ALERT
    page = summary_html(result_of(figures(n=5, labelled=0, correct=0)))
    assert "<h2>Monitor: clf v4</h2>" in page and "insufficient" in page and "<p>none</p>" in page
    assert not math.isnan(result.window_hours)
