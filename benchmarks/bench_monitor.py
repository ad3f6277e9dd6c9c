"""Benchmark the monitor's core and its Evidently drift computation.

For each size (default 10,000 and 100,000 logged predictions), a temporary
SQLite catalog (migrated to head, WAL, as the endpoint writes it) is filled
with prediction-log rows of one model version inside the window, each with a
``features`` JSON object (the 13 pixel columns of real UCI digits, scaled
from 8x8 to 32x32, plus 5 embedding components), a predicted label and
confidence, and ground truths (feedback) for 30% of them, plus 10% rows of
another version. Insertion is not timed. Then, best of ``--repeat``:

* the core, :func:`clearsight.monitoring.load_window` (read the window and
  its truths, build the data-drift table, the counts, accuracy with the
  Wilson interval and per-class recall) and :func:`~clearsight.monitoring.decide`,
  with each part's time;
* Evidently's drift, separately: the two reports the pipeline asks ZenML's
  ``evidently_report_step`` for (``DataDriftPreset`` on 18 columns with the
  gate's ``ks``; ``ColumnDriftMetric`` of the predicted label), built from
  ``steps/monitoring/evidently_config.py`` and run with Evidently's legacy API
  as the step runs them, against a 1,257-row reference (the digits' train
  split size); JSON and HTML rendering included, as the step does both.

Examples:
    python benchmarks/bench_monitor.py              # or: make bench-monitor
    python benchmarks/bench_monitor.py --sizes 1000 10000 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")

from PIL import Image  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from clearsight import monitoring as mon  # noqa: E402
from clearsight import prediction_log as plog  # noqa: E402
from clearsight.catalog import sqlite_url  # noqa: E402
from clearsight.features import PIXEL_COLUMNS, PREDICTION, pixel_features  # noqa: E402

CLASSES = [str(d) for d in range(10)]
COMPONENTS = 5
COLUMNS = mon.feature_columns(COMPONENTS)
REFERENCE_ROWS = 1257
END = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WINDOW = (END - timedelta(hours=24), END)


def digit_features() -> pd.DataFrame:
    """Pixel features of the 1,797 UCI digits as 32x32 PNGs."""
    rows = []
    for image in load_digits().images:
        picture = Image.fromarray((image * 255 / 16).astype(np.uint8)).resize((32, 32))
        buffer = io.BytesIO()
        picture.convert("RGB").save(buffer, format="PNG")
        rows.append(pixel_features(buffer.getvalue()))
    return pd.DataFrame(rows)[PIXEL_COLUMNS]


def sample(pixels: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    table = pixels.sample(n, replace=True, random_state=int(rng.integers(1 << 31)))
    table = table.reset_index(drop=True)
    for i in range(COMPONENTS):
        table[f"embedding_{i}"] = rng.normal(size=n)
    table[PREDICTION] = rng.choice(CLASSES, n)
    return table


def fill(url: str, table: pd.DataFrame, rng: np.random.Generator) -> None:
    n = len(table)
    features = table[COLUMNS].to_dict("records")
    at = END - pd.to_timedelta(rng.uniform(0, 23.9, n), unit="h")
    confidence = rng.uniform(0.3, 1.0, n)
    rows = [
        {
            "created_at": at[i].to_pydatetime(),
            "puid": f"req-{i}",
            "item": 0,
            "model_name": "bench",
            "model_version": "3" if i % 10 else "2",  # 10%: the previous version
            "registered_version": "7",
            "input_kind": "images",
            "image_sha256": None,
            "pixel_sha256": None,
            "label": table[PREDICTION].iat[i],
            "confidence": float(confidence[i]),
            "uncertain": bool(confidence[i] < 0.5),
            "top_k": [],
            "tags": None,
            "features": features[i],
        }
        for i in range(n)
    ]
    labelled = rng.random(n) < 0.3
    truths = [
        {
            "puid": f"req-{i}",
            "item": 0,
            "label": table[PREDICTION].iat[i] if rng.random() < 0.9 else rng.choice(CLASSES),
            "source": "feedback",
            "created_at": END,
            "recorded_by": None,
        }
        for i in np.flatnonzero(labelled)
    ]
    engine = plog.connect(url)
    with engine.begin() as connection:
        for start in range(0, n, 20_000):
            connection.execute(insert(plog.PREDICTION_LOG), rows[start : start + 20_000])
        connection.execute(insert(plog.GROUND_TRUTHS), truths)
    engine.dispose()


def core(url: str, rules: mon.MonitorRules) -> dict[str, float]:
    times = {}
    start = time.perf_counter()
    predictions, others = mon.read_window("bench", 3, *WINDOW, url=url)
    times["read window"] = time.perf_counter() - start
    start = time.perf_counter()
    features, _ = mon.current_features(predictions, COLUMNS)
    times["features table"] = time.perf_counter() - start
    start = time.perf_counter()
    figures = mon.window_figures(predictions, CLASSES, len(features), others)
    times["figures (accuracy, recall)"] = time.perf_counter() - start
    start = time.perf_counter()
    drift = mon.DriftFigures(
        drift_share=0.1,
        columns=len(COLUMNS),
        prediction_drift_detected=False,
        prediction_drift_score=0.02,
        prediction_stattest="Jensen-Shannon distance",
        prediction_stattest_threshold=0.1,
    )
    mon.decide(figures, drift, rules)
    times["decisions"] = time.perf_counter() - start
    times["total"] = sum(times.values())
    times["_rows"] = len(predictions)
    times["_labelled"] = figures.labelled
    return times


def evidently(reference: pd.DataFrame, current: pd.DataFrame, rules: mon.MonitorRules) -> float:
    from evidently.legacy.report import Report

    from steps.monitoring import evidently_config as ev

    start = time.perf_counter()
    jobs = [
        (ev.data_drift_metrics(rules, COMPONENTS), ev.feature_mapping(COMPONENTS), current),
        (ev.prediction_drift_metrics(rules), ev.prediction_mapping(), current[[PREDICTION]]),
    ]
    for metrics, mapping, table in jobs:
        report = Report(metrics=[m.to_evidently_metric() for m in metrics])
        report.run(
            reference_data=reference,
            current_data=table,
            column_mapping=mapping.to_evidently_column_mapping(),
        )
        report.json()
        report.get_html()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("clearsight").setLevel(logging.WARNING)
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"pandas {pd.__version__}"
    )
    rng = np.random.default_rng(0)
    pixels = digit_features()
    reference = sample(pixels, REFERENCE_ROWS, rng)
    rules = mon.MonitorRules()
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            url = sqlite_url(Path(folder) / f"catalog-{n}.db")
            table = sample(pixels, n, rng)
            fill(url, table, rng)
            runs = [core(url, rules) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["total"])
            rows, labelled = int(best.pop("_rows")), int(best.pop("_labelled"))
            print(f"\n{n:,} logged predictions ({rows:,} of the version, {labelled:,} labelled)")
            for part, seconds in best.items():
                print(f"  core  {part:28} {seconds * 1000:9.1f} ms")
            current = table[table.index % 10 != 0].reset_index(drop=True)
            seconds = min(evidently(reference, current, rules) for _ in range(args.repeat))
            print(f"  evidently drift (2 reports, JSON + HTML) {seconds * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
