"""Production monitoring of the served model: the window, the figures, the decisions.

The monitor pipeline (``python run.py monitor``) judges one model version's
recent traffic, read from the catalog database's ``prediction_log`` (every
answered image) and ``ground_truths`` (true labels from Seldon feedback and
reviews; the newest row of a ``(puid, item)`` wins):

- **data drift** of the logged monitoring features (``features``: the pixel
  statistics and embedding components of :mod:`clearsight.features`) against
  the version's reference table (the promote pipeline's ``reference_features``,
  its train split), and **prediction drift** of the predicted-label
  distribution, both measured by Evidently in the pipeline and read back here
  (:func:`drift_figures`);
- the **uncertain share** and the share of each predicted label;
- **production accuracy** and per-class **recall** on the labelled cases, with
  a Wilson score interval (:func:`wilson_interval`);
- **decisions** against :class:`MonitorRules` (:func:`decide`): each check is
  ``ok``, ``alert`` or ``insufficient`` (too few cases: nothing is decided),
  and the alerts become ``retrain_reasons``;
- the **Prometheus** gauges of the metric contract (:func:`build_registry`,
  pushed by :func:`push_metrics`).

Framework-free (no ZenML): the steps in ``steps/monitoring`` only wire these
functions. Rows are handled as whole columns (pandas), so 100,000 logged
predictions take about a second (``benchmarks/bench_monitor.py``).
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Text, and_, cast, create_engine, func, inspect, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from clearsight.catalog import display_url, resolve_catalog_url
from clearsight.errors import ClearsightError
from clearsight.features import PIXEL_COLUMNS, PREDICTION, embedding_columns
from clearsight.prediction_log import GROUND_TRUTHS, PREDICTION_LOG, SMOKE_TEST_PUID_PREFIX

logger = logging.getLogger(__name__)

#: z for a two-sided 95% interval: the 0.975 quantile of the standard normal
#: distribution, Φ⁻¹(0.975) = 1.959963984540054 (``scipy.stats.norm.ppf(0.975)``).
Z_95 = 1.959963984540054
#: The Pushgateway base URL (e.g. ``http://127.0.0.1:9091``); unset: nothing is pushed.
PUSHGATEWAY_URL_ENV = "CLEARSIGHT_PUSHGATEWAY_URL"
#: The Pushgateway job of every push; the grouping key adds ``model_name``.
PUSH_JOB = "clearsight_monitor"
#: Seconds a push waits for the Pushgateway.
PUSH_TIMEOUT = 10.0

OK = "ok"
ALERT = "alert"
INSUFFICIENT = "insufficient"
Status = Literal["ok", "alert", "insufficient"]

#: Check names, also the ``retrain_on`` choices.
DATA_DRIFT = "data_drift"
PREDICTION_DRIFT = "prediction_drift"
UNCERTAIN_SHARE = "uncertain_share"
ACCURACY = "accuracy"
CRITICAL_RECALL = "critical_recall"
CHECKS = (DATA_DRIFT, PREDICTION_DRIFT, UNCERTAIN_SHARE, ACCURACY, CRITICAL_RECALL)


class MonitoringError(ClearsightError):
    """The monitor cannot run: no champion, no reference, no prediction log, bad rules."""


class MonitorRules(BaseModel):
    """The window, the minimum evidence and the thresholds, from ``configs/monitor.yaml``.

    The drift settings default to the promotion gate's (``configs/promote.yaml``):
    the same per-column test and the same share of drifted columns.
    """

    model_config = ConfigDict(extra="forbid")

    window_hours: float = Field(24.0, gt=0, description="hours of traffic judged, up to the run")
    min_predictions: int = Field(
        100, ge=1, description="predictions (with features, for data drift) before deciding drift"
    )
    min_labelled: int = Field(50, ge=1, description="labelled cases before deciding accuracy")
    min_class_labelled: int = Field(
        20, ge=1, description="labelled cases of a critical class before deciding its recall"
    )
    max_drift_share: float = Field(0.5, ge=0, le=1, description="share of drifted feature columns")
    drift_stattest: str = Field(
        "ks", description="Evidently's per-column test (ks: Kolmogorov-Smirnov)"
    )
    prediction_stattest: str = Field(
        "jensenshannon",
        description="Evidently's test of the predicted-label distribution (categorical)",
    )
    prediction_stattest_threshold: float = Field(
        0.1, gt=0, description="the test's threshold (Jensen-Shannon: distance from 0.1 drifts)"
    )
    max_uncertain_share: float = Field(0.2, ge=0, le=1, description="answers flagged uncertain")
    min_accuracy: float = Field(0.90, ge=0, le=1, description="production accuracy floor")
    critical_classes: list[str] = Field(default_factory=list)
    min_critical_recall: float = Field(0.90, ge=0, le=1)
    max_age_hours: float = Field(26.0, gt=0, description="longest acceptable gap between runs")
    retrain_on: list[str] = Field(
        default_factory=lambda: list(CHECKS), description="checks whose alert asks for retraining"
    )

    @model_validator(mode="after")
    def _known_checks(self) -> MonitorRules:
        unknown = sorted(set(self.retrain_on) - set(CHECKS))
        if unknown:
            raise ValueError(f"retrain_on: unknown checks {unknown}; choose from {list(CHECKS)}")
        return self


def feature_columns(embedding_components: int) -> list[str]:
    """The data-drift columns: :data:`~clearsight.features.PIXEL_COLUMNS` + ``embedding_i``."""
    return [*PIXEL_COLUMNS, *embedding_columns(embedding_components)]


# --- the window --------------------------------------------------------------


def window_bounds(hours: float, end: datetime | str | None = None) -> tuple[datetime, datetime]:
    """``(start, end)`` in UTC: the ``hours`` before ``end`` (default: now); start included.

    Args:
        hours: Length of the window, > 0.
        end: Its end, a datetime or an ISO 8601 string; naive means UTC.

    Raises:
        ValueError: ``hours`` is not positive or ``end`` is not a date.
    """
    if not hours > 0:
        raise ValueError(f"window of {hours} hours: it must be positive")
    if end is None:
        end = datetime.now(UTC)
    elif isinstance(end, str):
        end = datetime.fromisoformat(end)
    end = end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)
    return end - timedelta(hours=hours), end


def _engine(url: str | None) -> tuple[Engine, str]:
    url = resolve_catalog_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        from pathlib import Path

        if not Path(parsed.database or "").is_file():
            raise MonitoringError(
                f"The catalog {display_url(url)} does not exist, so there is no prediction "
                "log to monitor. Fix: serve the champion (python run.py deploy) and send it "
                "predictions, or point CLEARSIGHT_CATALOG_URL at the endpoint's catalog."
            )
    return create_engine(url), url


def check_prediction_log(url: str | None = None) -> int:
    """Check that the catalog holds a prediction log; return its row count (all models).

    Args:
        url: The catalog URL (default: :func:`clearsight.catalog.resolve_catalog_url`).

    Raises:
        MonitoringError: No catalog or no ``prediction_log`` table, with the fix.
    """
    engine, url = _engine(url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(PREDICTION_LOG.name):
                raise MonitoringError(
                    f"The catalog {display_url(url)} has no prediction log (table "
                    f"{PREDICTION_LOG.name}). Fix: serve the champion with the log switched on "
                    "(python run.py deploy; CLEARSIGHT_PREDICTION_LOG=on) so that answers are "
                    "logged, or point CLEARSIGHT_CATALOG_URL at the endpoint's catalog."
                )
            return int(
                connection.execute(select(func.count()).select_from(PREDICTION_LOG)).scalar()
            )
    except SQLAlchemyError as error:
        raise MonitoringError(f"The catalog {display_url(url)} cannot be read: {error}") from error
    finally:
        engine.dispose()


def read_window(
    model_name: str,
    model_version: str | int,
    start: datetime,
    end: datetime,
    url: str | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The logged predictions of one model version in ``[start, end)``, with their truths.

    The deploy pipeline's smoke test (request ids starting with
    :data:`clearsight.prediction_log.SMOKE_TEST_PUID_PREFIX`) is not traffic
    and is left out.

    Args:
        model_name: The served model (``prediction_log.model_name``).
        model_version: Its ZenML model version (``prediction_log.model_version``).
        start: First instant included (aware; compared in UTC).
        end: First instant excluded.
        url: The catalog URL (default: :func:`clearsight.catalog.resolve_catalog_url`).

    Returns:
        ``(predictions, other_versions)``. ``predictions``: one row per logged
        image, columns ``puid``, ``item``, ``label``
        (str), ``confidence`` (float, 0..1), ``uncertain`` (bool),
        ``features`` (dict or None; None too when the catalog predates the
        ``features`` column), ``truth`` (str or None: the newest ground truth of
        the image) and ``truth_source`` (``feedback``/``review`` or None).
        ``other_versions``: rows of other versions of the model in the window,
        by version.

    Raises:
        MonitoringError: The catalog or its prediction log is missing or unreadable.
    """
    engine, url = _engine(url)
    log, truths = PREDICTION_LOG, GROUND_TRUTHS
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    in_window = and_(
        log.c.model_name == model_name,
        log.c.created_at >= start,
        log.c.created_at < end,
        ~log.c.puid.startswith(SMOKE_TEST_PUID_PREFIX, autoescape=True),  # not traffic
    )
    try:
        with engine.connect() as connection:
            names = {c["name"] for c in inspect(connection).get_columns(log.name)}
            columns = [log.c.puid, log.c.item, log.c.label, log.c.confidence, log.c.uncertain]
            if "features" in names:
                # As text, parsed at once below: 5x faster than a json.loads per row.
                columns.append(cast(log.c.features, Text))
            mine = and_(in_window, log.c.model_version == str(model_version))
            rows = connection.execute(select(*columns).where(mine)).all()
            truth_rows = connection.execute(
                select(
                    truths.c.id,
                    truths.c.puid,
                    truths.c.item,
                    truths.c.label,
                    truths.c.source,
                    truths.c.created_at,
                )
                .join(log, and_(truths.c.puid == log.c.puid, truths.c.item == log.c.item))
                .where(mine)
            ).all()
            others = connection.execute(
                select(log.c.model_version, func.count())
                .where(in_window, log.c.model_version != str(model_version))
                .group_by(log.c.model_version)
            ).all()
    except SQLAlchemyError as error:
        raise MonitoringError(
            f"The prediction log of {display_url(url)} cannot be read: {error}. "
            "Fix: check CLEARSIGHT_CATALOG_URL and that the endpoint's catalog is migrated "
            "(python -m clearsight.migrations upgrade)."
        ) from error
    finally:
        engine.dispose()
    names_out = ["puid", "item", "label", "confidence", "uncertain", "features"]
    predictions = pd.DataFrame(rows, columns=names_out[: len(columns)])
    if "features" in predictions:
        texts = predictions["features"].fillna("null").tolist()
        predictions["features"] = json.loads("[" + ",".join(texts) + "]") if texts else []
    else:
        predictions["features"] = None
    predictions["confidence"] = predictions["confidence"].astype(np.float64)
    predictions["uncertain"] = predictions["uncertain"].astype(bool)
    predictions["item"] = predictions["item"].astype(np.int64)
    truth = pd.DataFrame(
        truth_rows, columns=["id", "puid", "item", "truth", "truth_source", "truth_at"]
    )
    # The newest truth of an image wins (ties: the later row).
    truth = truth.sort_values(["truth_at", "id"]).drop_duplicates(["puid", "item"], keep="last")
    truth["item"] = truth["item"].astype(np.int64)
    predictions = predictions.merge(
        truth[["puid", "item", "truth", "truth_source"]], on=["puid", "item"], how="left"
    )
    predictions["truth"] = (
        predictions["truth"].astype(object).where(predictions["truth"].notna(), None)
    )
    return predictions, {str(version): int(count) for version, count in others}


def current_features(predictions: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """The data-drift table of a window: the rows whose ``features`` hold every column.

    Args:
        predictions: :func:`read_window`'s table.
        columns: The feature columns the reference has (:func:`feature_columns`).

    Returns:
        ``(table, without)``: float64 ``columns`` plus ``prediction`` (the
        label), one row per complete image; ``without``: rows left out (no
        features, or a column missing or not finite).
    """
    columns = list(columns)
    has = predictions["features"].map(lambda value: isinstance(value, dict))
    records = predictions.loc[has, "features"].tolist()
    table = pd.DataFrame.from_records(records, columns=columns) if records else None
    if table is None:
        table = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in columns})
    table = table.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    complete = np.isfinite(table.to_numpy()).all(axis=1)
    table = table.loc[complete].reset_index(drop=True)
    table[PREDICTION] = predictions.loc[has, "label"].to_numpy()[complete].astype(str)
    return table, int(len(predictions) - len(table))


def reference_table(
    reference: pd.DataFrame, columns: Sequence[str], classes: Sequence[str]
) -> pd.DataFrame:
    """The gate's reference table as the monitor compares it: features + predicted label.

    Args:
        reference: The promote pipeline's ``reference_features`` (train split):
            feature columns and ``prediction`` as an index into ``classes``.
        columns: The feature columns to compare (:func:`feature_columns`).
        classes: The model's classes, in its output order.

    Returns:
        float64 ``columns`` and ``prediction`` as the label (str).

    Raises:
        MonitoringError: A column is missing (another ``embedding_components``)
            or a prediction index is out of range.
    """
    missing = [c for c in [*columns, PREDICTION] if c not in reference.columns]
    if missing:
        present = sum(c.startswith("embedding_") for c in reference.columns)
        raise MonitoringError(
            f"The reference table lacks the columns {missing}; it has {present} embedding "
            "components. Fix: set embedding_components in configs/monitor.yaml to the "
            "value the version was judged with (configs/promote.yaml)."
        )
    index = reference[PREDICTION].to_numpy()
    if len(index) and (index.min() < 0 or index.max() >= len(classes)):
        raise MonitoringError(
            f"The reference predicts class indices up to {index.max()} but the model has "
            f"{len(classes)} classes: the reference belongs to another model."
        )
    table = reference[list(columns)].astype(np.float64).reset_index(drop=True)
    table[PREDICTION] = np.asarray(classes, dtype=object)[index].astype(str)
    return table


def current_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """The prediction-drift table of a window: every row's predicted label (str)."""
    return pd.DataFrame({PREDICTION: predictions["label"].astype(str).to_numpy()})


# --- accuracy ----------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion.

    ``(p̂ + z²/2n ± z·sqrt(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n)``: Wilson (1927),
    "Probable inference, the law of succession, and statistical inference",
    JASA 22; recommended over the Wald interval for small n and p̂ near 0 or 1
    by Brown, Cai & DasGupta (2001), "Interval estimation for a binomial
    proportion", Statistical Science 16(2). Unlike Wald, it never leaves
    [0, 1] and is not empty at p̂ = 0 or 1.

    Args:
        successes: Correct cases, ``0 <= successes <= n``.
        n: Cases, ``>= 1``.
        z: The normal quantile (default :data:`Z_95`: a 95% interval).

    Returns:
        ``(lower, upper)`` in [0, 1].

    Raises:
        ValueError: ``n < 1`` or ``successes`` outside ``[0, n]``.
    """
    if n < 1:
        raise ValueError(f"a proportion of {n} cases has no interval: need n >= 1")
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n}: must be between 0 and n")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At p̂ = 0 (or 1) a bound is exactly 0 (or 1); computed, it is off by rounding.
    lower = 0.0 if successes == 0 else max(0.0, centre - half)
    upper = 1.0 if successes == n else min(1.0, centre + half)
    return lower, upper


class ClassRecall(BaseModel):
    """Recall of one true class on the labelled cases."""

    labelled: int = Field(description="labelled cases whose truth is this class")
    recalled: int = Field(description="of those, predicted as this class")
    recall: float | None = Field(description="recalled / labelled; None without a case")


class WindowFigures(BaseModel):
    """What one window of traffic shows, before any drift measure (see :func:`window_figures`)."""

    predictions: int = Field(description="logged images of the version in the window")
    with_features: int = Field(description="of those, with complete monitoring features")
    without_features: int = Field(description="of those, left out of the data drift")
    other_versions: dict[str, int] = Field(
        default_factory=dict, description="rows of other versions in the window, by version"
    )
    uncertain_share: float | None = Field(description="share flagged uncertain (0..1)")
    predicted_share: dict[str, float] = Field(description="share of each predicted label (0..1)")
    labelled: int = Field(description="predictions with a ground truth")
    correct: int = Field(description="of those, predicted right")
    accuracy: float | None = Field(description="correct / labelled; None without a label")
    accuracy_ci: tuple[float, float] | None = Field(description="Wilson 95% interval")
    labelled_by_source: dict[str, int] = Field(default_factory=dict)
    class_recall: dict[str, ClassRecall] = Field(default_factory=dict)
    unknown_truths: list[str] = Field(
        default_factory=list, description="true labels that are not classes of the model"
    )


def window_figures(
    predictions: pd.DataFrame,
    classes: Sequence[str],
    with_features: int,
    other_versions: dict[str, int] | None = None,
) -> WindowFigures:
    """Counts, uncertain share, label shares, accuracy and per-class recall of a window.

    Args:
        predictions: :func:`read_window`'s table.
        classes: The model's classes (every one gets a share and a recall entry).
        with_features: Rows usable for data drift (:func:`current_features`).
        other_versions: Rows of other versions in the window.

    Returns:
        The figures; shares and accuracy are None when there is no row to
        compute them on, a class's recall None when it has no labelled case.
    """
    n = len(predictions)
    labels = predictions["label"].astype(str)
    shares = labels.value_counts(normalize=True) if n else pd.Series(dtype=np.float64)
    predicted_share = {c: float(shares.get(c, 0.0)) for c in classes}
    predicted_share.update({c: float(v) for c, v in shares.items() if c not in predicted_share})
    labelled = predictions[predictions["truth"].notna()]
    truth = labelled["truth"].astype(str)
    right = truth.to_numpy() == labelled["label"].astype(str).to_numpy()
    correct = int(right.sum())
    by_class = pd.DataFrame({"truth": truth.to_numpy(), "right": right}).groupby("truth")["right"]
    counts, hits = by_class.size(), by_class.sum()
    recall: dict[str, ClassRecall] = {}
    for name in [*classes, *sorted(set(counts.index) - set(classes))]:
        k = int(counts.get(name, 0))
        r = int(hits.get(name, 0))
        recall[name] = ClassRecall(labelled=k, recalled=r, recall=r / k if k else None)
    m = len(labelled)
    return WindowFigures(
        predictions=n,
        with_features=with_features,
        without_features=n - with_features,
        other_versions=dict(other_versions or {}),
        uncertain_share=float(predictions["uncertain"].mean()) if n else None,
        predicted_share=predicted_share,
        labelled=m,
        correct=correct,
        accuracy=correct / m if m else None,
        accuracy_ci=wilson_interval(correct, m) if m else None,
        labelled_by_source={
            str(k): int(v) for k, v in labelled["truth_source"].value_counts().items()
        },
        class_recall=recall,
        unknown_truths=sorted(set(counts.index) - set(classes)),
    )


class MonitorWindow(BaseModel):
    """The judged version and window with its figures, handed from step to step."""

    model_name: str
    model_version: str = Field(description="ZenML model version")
    registered_version: str | None = Field(None, description="MLflow registry version")
    start: datetime
    end: datetime
    classes: list[str]
    figures: WindowFigures


def load_window(
    model_name: str,
    model_version: str | int,
    classes: Sequence[str],
    columns: Sequence[str],
    window: tuple[datetime, datetime],
    url: str | None = None,
    registered_version: str | None = None,
) -> tuple[MonitorWindow, pd.DataFrame, pd.DataFrame]:
    """Read a window and compute its figures: what the monitor does before Evidently.

    Args:
        model_name: The served model.
        model_version: Its ZenML model version.
        classes: The model's classes.
        columns: The data-drift feature columns (:func:`feature_columns`).
        window: ``(start, end)`` (:func:`window_bounds`).
        url: The catalog URL (default: resolved).
        registered_version: The MLflow registry version, for the record.

    Returns:
        ``(window, features, predictions)``: the :class:`MonitorWindow`, the
        data-drift table (:func:`current_features`) and the prediction-drift
        table (:func:`current_predictions`).

    Raises:
        MonitoringError: The catalog cannot be read.
    """
    predictions, others = read_window(model_name, model_version, window[0], window[1], url)
    features, _ = current_features(predictions, columns)
    figures = window_figures(predictions, classes, len(features), others)
    record = MonitorWindow(
        model_name=model_name,
        model_version=str(model_version),
        registered_version=registered_version,
        start=window[0],
        end=window[1],
        classes=list(classes),
        figures=figures,
    )
    return record, features, current_predictions(predictions)


# --- drift -------------------------------------------------------------------


class DriftFigures(BaseModel):
    """Data and prediction drift as Evidently measured them (None: not measured)."""

    drift_share: float | None = None
    drifted_columns: list[str] = Field(default_factory=list)
    columns: int = 0
    column_scores: dict[str, float] = Field(default_factory=dict)
    drift_stattest: str | None = None
    prediction_drift_detected: bool | None = None
    prediction_drift_score: float | None = None
    prediction_stattest: str | None = None
    prediction_stattest_threshold: float | None = None


def _metric(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    for metric in report.get("metrics", []):
        if metric.get("metric") == name:
            return metric["result"]
    return None


def drift_figures(
    data_report: dict[str, Any] | None, prediction_report: dict[str, Any] | None
) -> DriftFigures:
    """Read Evidently's (legacy) report JSONs: data drift and the prediction column's drift.

    Args:
        data_report: A report with ``DatasetDriftMetric`` and ``DataDriftTable``
            (``DataDriftPreset``), or None when the window had no features.
        prediction_report: A report with ``ColumnDriftMetric`` on ``prediction``,
            or None when the window had no prediction.

    Raises:
        MonitoringError: A report lacks the metrics named above.
    """
    figures = DriftFigures()
    if data_report is not None:
        dataset = _metric(data_report, "DatasetDriftMetric")
        table = _metric(data_report, "DataDriftTable")
        if dataset is None or table is None:
            raise MonitoringError(
                "The data drift report has no DatasetDriftMetric/DataDriftTable: "
                "build it with DataDriftPreset (steps/monitoring/evidently_config.py)."
            )
        by_column = table.get("drift_by_columns", {})
        figures.drift_share = float(dataset["share_of_drifted_columns"])
        figures.columns = int(dataset["number_of_columns"])
        figures.drifted_columns = sorted(c for c, v in by_column.items() if v["drift_detected"])
        figures.column_scores = {c: float(v["drift_score"]) for c, v in sorted(by_column.items())}
        tests = {str(v["stattest_name"]) for v in by_column.values()}
        figures.drift_stattest = ", ".join(sorted(tests)) or None
    if prediction_report is not None:
        column = _metric(prediction_report, "ColumnDriftMetric")
        if column is None or column.get("column_name") != PREDICTION:
            raise MonitoringError(
                "The prediction drift report has no ColumnDriftMetric on 'prediction' "
                "(steps/monitoring/evidently_config.py)."
            )
        figures.prediction_drift_detected = bool(column["drift_detected"])
        figures.prediction_drift_score = float(column["drift_score"])
        figures.prediction_stattest = str(column["stattest_name"])
        figures.prediction_stattest_threshold = float(column["stattest_threshold"])
    return figures


# --- decisions ---------------------------------------------------------------


class Check(BaseModel):
    """One decision: which check, for which class, its outcome and why."""

    name: str
    status: Status
    detail: str
    label: str | None = None


class MonitorResult(BaseModel):
    """One monitor run: the window, its figures, the checks and the retrain reasons."""

    model_name: str
    model_version: str = Field(description="ZenML model version")
    registered_version: str | None = Field(None, description="MLflow registry version")
    window_start: datetime
    window_end: datetime
    window_hours: float
    figures: WindowFigures
    drift: DriftFigures
    checks: list[Check]
    retrain_reasons: list[str]
    max_age_hours: float
    run_id: str = ""
    run_url: str = ""

    @property
    def retrain(self) -> bool:
        """Whether any check in ``retrain_on`` raised an alert."""
        return bool(self.retrain_reasons)

    def check(self, name: str, label: str | None = None) -> Check | None:
        """The check ``name`` (for ``label``), if it was made."""
        return next((c for c in self.checks if c.name == name and c.label == label), None)


def _names(columns: Sequence[str], most: int = 6) -> str:
    return ", ".join(columns[:most]) + ("..." if len(columns) > most else "")


def decide(
    figures: WindowFigures, drift: DriftFigures, rules: MonitorRules
) -> tuple[list[Check], list[str]]:
    """Judge a window against the rules; nothing is decided on too little evidence.

    Thresholds and minimum counts come from ``rules`` (``configs/monitor.yaml``);
    the data-drift rule is the promotion gate's (share of drifted columns above
    ``max_drift_share``), the prediction-drift verdict is Evidently's own
    (``drift_detected`` of the ``prediction`` column at ``prediction_stattest``).

    Args:
        figures: :func:`window_figures`.
        drift: :func:`drift_figures`.
        rules: The thresholds.

    Returns:
        ``(checks, retrain_reasons)``: one :class:`Check` per rule (and per
        critical class), ``insufficient`` when the evidence is below its
        minimum; the reasons are the alerts of the checks in ``retrain_on``,
        e.g. ``"drift share 0.62 > 0.5"``.
    """
    checks: list[Check] = []

    def add(name: str, status: Status, detail: str, label: str | None = None) -> None:
        checks.append(Check(name=name, status=status, detail=detail, label=label))

    n, k = figures.predictions, figures.with_features
    if drift.drift_share is None or k < rules.min_predictions:
        add(
            DATA_DRIFT,
            INSUFFICIENT,
            f"{k} predictions with features < {rules.min_predictions}: data drift not judged",
        )
    elif drift.drift_share > rules.max_drift_share:
        add(
            DATA_DRIFT,
            ALERT,
            f"drift share {drift.drift_share:.2f} > {rules.max_drift_share} "
            f"({len(drift.drifted_columns)}/{drift.columns} columns: "
            f"{_names(drift.drifted_columns)})",
        )
    else:
        add(DATA_DRIFT, OK, f"drift share {drift.drift_share:.2f} <= {rules.max_drift_share}")

    if drift.prediction_drift_detected is None or n < rules.min_predictions:
        add(
            PREDICTION_DRIFT,
            INSUFFICIENT,
            f"{n} predictions < {rules.min_predictions}: prediction drift not judged",
        )
    else:
        measure = (
            f"{drift.prediction_stattest} {drift.prediction_drift_score:.3f}, "
            f"threshold {drift.prediction_stattest_threshold}"
        )
        if drift.prediction_drift_detected:
            add(
                PREDICTION_DRIFT, ALERT, f"prediction drift: label distribution changed ({measure})"
            )
        else:
            add(PREDICTION_DRIFT, OK, f"no prediction drift ({measure})")

    if figures.uncertain_share is None or n < rules.min_predictions:
        add(
            UNCERTAIN_SHARE,
            INSUFFICIENT,
            f"{n} predictions < {rules.min_predictions}: uncertain share not judged",
        )
    elif figures.uncertain_share > rules.max_uncertain_share:
        add(
            UNCERTAIN_SHARE,
            ALERT,
            f"uncertain share {figures.uncertain_share:.2f} > {rules.max_uncertain_share}",
        )
    else:
        add(
            UNCERTAIN_SHARE,
            OK,
            f"uncertain share {figures.uncertain_share:.2f} <= {rules.max_uncertain_share}",
        )

    m = figures.labelled
    if figures.accuracy is None or m < rules.min_labelled:
        add(ACCURACY, INSUFFICIENT, f"{m} labelled < {rules.min_labelled}: accuracy not judged")
    else:
        low, high = figures.accuracy_ci or (math.nan, math.nan)
        interval = f"(n={m}, 95% CI {low:.2f}-{high:.2f})"
        if figures.accuracy < rules.min_accuracy:
            add(
                ACCURACY,
                ALERT,
                f"production accuracy {figures.accuracy:.2f} < {rules.min_accuracy} {interval}",
            )
        else:
            add(
                ACCURACY,
                OK,
                f"production accuracy {figures.accuracy:.2f} >= {rules.min_accuracy} {interval}",
            )

    for name in rules.critical_classes:
        recall = figures.class_recall.get(name) or ClassRecall(labelled=0, recalled=0, recall=None)
        if recall.recall is None or recall.labelled < rules.min_class_labelled:
            add(
                CRITICAL_RECALL,
                INSUFFICIENT,
                f"{recall.labelled} labelled {name!r} < {rules.min_class_labelled}: "
                "recall not judged",
                name,
            )
        elif recall.recall < rules.min_critical_recall:
            add(
                CRITICAL_RECALL,
                ALERT,
                f"recall of critical class {name!r} {recall.recall:.2f} < "
                f"{rules.min_critical_recall} (n={recall.labelled})",
                name,
            )
        else:
            add(
                CRITICAL_RECALL,
                OK,
                f"recall of critical class {name!r} {recall.recall:.2f} >= "
                f"{rules.min_critical_recall} (n={recall.labelled})",
                name,
            )
    reasons = [c.detail for c in checks if c.status == ALERT and c.name in rules.retrain_on]
    return checks, reasons


def check_rules(rules: MonitorRules, classes: Sequence[str], model: str) -> None:
    """Refuse critical classes the model does not have (a typo would never alert).

    Raises:
        MonitoringError: Naming the unknown classes and the model's classes.
    """
    unknown = [c for c in rules.critical_classes if c not in classes]
    if unknown:
        raise MonitoringError(
            f"critical_classes {unknown} are not classes of {model} (its classes: "
            f"{list(classes)}). Fix: correct critical_classes in configs/monitor.yaml."
        )


def monitor_result(
    window: MonitorWindow,
    drift: DriftFigures,
    rules: MonitorRules,
    run_id: str = "",
    run_url: str = "",
) -> MonitorResult:
    """Decide (:func:`decide`) and assemble the run's :class:`MonitorResult`."""
    checks, reasons = decide(window.figures, drift, rules)
    return MonitorResult(
        model_name=window.model_name,
        model_version=window.model_version,
        registered_version=window.registered_version,
        window_start=window.start,
        window_end=window.end,
        window_hours=(window.end - window.start).total_seconds() / 3600,
        figures=window.figures,
        drift=drift,
        checks=checks,
        retrain_reasons=reasons,
        max_age_hours=rules.max_age_hours,
        run_id=run_id,
        run_url=run_url,
    )


#: The model version metadata key :func:`metadata` is logged under (the latest run's figures).
METADATA_KEY = "monitoring"


def metadata(result: MonitorResult) -> dict[str, Any]:
    """The run's figures and decisions as plain values, for the model version's metadata."""
    figures, drift = result.figures, result.drift
    return {
        "at": result.window_end.isoformat(timespec="seconds"),
        "window_start": result.window_start.isoformat(timespec="seconds"),
        "window_hours": result.window_hours,
        "predictions": figures.predictions,
        "without_features": figures.without_features,
        "drift_share": drift.drift_share,
        "drifted_columns": drift.drifted_columns,
        "prediction_drift_score": drift.prediction_drift_score,
        "uncertain_share": figures.uncertain_share,
        "labelled": figures.labelled,
        "production_accuracy": figures.accuracy,
        "accuracy_ci": list(figures.accuracy_ci) if figures.accuracy_ci else None,
        "class_recall": {
            name: r.recall for name, r in figures.class_recall.items() if r.recall is not None
        },
        "checks": {(f"{c.name}:{c.label}" if c.label else c.name): c.status for c in result.checks},
        "retrain_reasons": result.retrain_reasons,
        "run_id": result.run_id,
    }


# --- what people read ----------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def summary_lines(result: MonitorResult) -> list[str]:
    """A short plain-text summary: window, predictions, drift, uncertainty, accuracy, reasons."""
    f, d = result.figures, result.drift
    status = {c.name: c for c in result.checks if c.label is None}

    def verdict(name: str) -> str:
        check = status.get(name)
        return {OK: "ok", ALERT: "ALERT", INSUFFICIENT: "not judged"}[check.status] if check else ""

    lines = [
        f"  model           {result.model_name} v{result.model_version}"
        + (f" (MLflow v{result.registered_version})" if result.registered_version else ""),
        f"  window          {result.window_start:%Y-%m-%d %H:%M} to "
        f"{result.window_end:%Y-%m-%d %H:%M} UTC ({result.window_hours:g} h)",
        f"  predictions     {f.predictions} ({f.without_features} without features)"
        + (
            "; other versions: "
            + ", ".join(f"v{v} {n}" for v, n in sorted(f.other_versions.items()))
            if f.other_versions
            else ""
        ),
        f"  data drift      share {_pct(d.drift_share)}"
        + (f", {len(d.drifted_columns)}/{d.columns} columns" if d.drift_share is not None else "")
        + f"  [{verdict(DATA_DRIFT)}]",
        f"  prediction drift {d.prediction_stattest or ''} {_pct(d.prediction_drift_score)}"
        f"  [{verdict(PREDICTION_DRIFT)}]",
        f"  uncertain       {_pct(f.uncertain_share)}  [{verdict(UNCERTAIN_SHARE)}]",
    ]
    if f.accuracy is not None and f.accuracy_ci is not None:
        lines.append(
            f"  accuracy        {f.accuracy:.3f} (95% CI {f.accuracy_ci[0]:.3f}-"
            f"{f.accuracy_ci[1]:.3f}, n={f.labelled})  [{verdict(ACCURACY)}]"
        )
    else:
        lines.append(f"  accuracy        no labelled prediction  [{verdict(ACCURACY)}]")
    for check in result.checks:
        if check.status == INSUFFICIENT or check.label is not None:
            lines.append(f"                  {check.status}: {check.detail}")
    if result.retrain_reasons:
        lines.append("  retrain         recommended (python run.py monitor --retrain runs it):")
        lines.extend(f"                  - {reason}" for reason in result.retrain_reasons)
    else:
        lines.append("  retrain         no")
    return lines


def summary_html(result: MonitorResult) -> str:
    """The run's summary as a self-contained HTML page (the dashboard's visualization)."""
    e = html.escape
    f, d = result.figures, result.drift
    colours = {OK: "#1b7f3b", ALERT: "#b3261e", INSUFFICIENT: "#7a6a00"}
    rows = [
        ("model", f"{result.model_name} v{result.model_version}"),
        (
            "window",
            f"{result.window_start:%Y-%m-%d %H:%M} to {result.window_end:%Y-%m-%d %H:%M} UTC",
        ),
        ("predictions", f"{f.predictions} ({f.with_features} with features)"),
        ("drift share", _pct(d.drift_share)),
        ("drifted columns", ", ".join(d.drifted_columns) or "none"),
        ("prediction drift", f"{d.prediction_stattest or ''} {_pct(d.prediction_drift_score)}"),
        ("uncertain share", _pct(f.uncertain_share)),
        (
            "labelled",
            f"{f.labelled} ("
            + (", ".join(f"{k} {v}" for k, v in f.labelled_by_source.items()) or "none")
            + ")",
        ),
        (
            "production accuracy",
            f"{_pct(f.accuracy)}"
            + (f" (95% CI {f.accuracy_ci[0]:.3f}-{f.accuracy_ci[1]:.3f})" if f.accuracy_ci else ""),
        ),
    ]
    figures = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    checks = "".join(
        f"<tr><td>{e(c.name)}{' ' + e(c.label) if c.label else ''}</td>"
        f"<td style='color:{colours[c.status]};font-weight:bold'>{e(c.status)}</td>"
        f"<td>{e(c.detail)}</td></tr>"
        for c in result.checks
    )
    classes = "".join(
        f"<tr><td>{e(name)}</td><td>{f.predicted_share.get(name, 0.0):.3f}</td>"
        f"<td>{r.labelled}</td><td>{_pct(r.recall)}</td></tr>"
        for name, r in f.class_recall.items()
    )
    reasons = (
        "<ul>" + "".join(f"<li>{e(r)}</li>" for r in result.retrain_reasons) + "</ul>"
        if result.retrain_reasons
        else "<p>none</p>"
    )
    return (
        "<html><head><meta charset='utf-8'><style>body{font-family:sans-serif}"
        "table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:left}</style></head><body>"
        f"<h2>Monitor: {e(result.model_name)} v{e(result.model_version)}</h2>"
        f"<table>{figures}</table><h3>Checks</h3><table><tr><th>check</th><th>status</th>"
        f"<th>detail</th></tr>{checks}</table><h3>Retrain reasons</h3>{reasons}"
        "<h3>Per class</h3><table><tr><th>class</th><th>predicted share</th>"
        f"<th>labelled</th><th>recall</th></tr>{classes}</table></body></html>"
    )


# --- Prometheus ----------------------------------------------------------------

#: The metric contract: name -> (help, extra label). Every gauge also has
#: ``model_name`` and ``model_version``; alert rules and Grafana rely on these names.
METRICS: dict[str, tuple[str, str | None]] = {
    "clearsight_monitor_run_info": ("The monitor run (always 1), with its id and link.", None),
    "clearsight_monitor_last_run_timestamp_seconds": ("When the monitor ran (Unix time).", None),
    "clearsight_monitor_window_predictions": ("Predictions of the version in the window.", None),
    "clearsight_monitor_drift_share": ("Share of drifted feature columns (0..1).", None),
    "clearsight_monitor_drift_detected": (
        "1: data drift above the limit; absent: not judged.",
        None,
    ),
    "clearsight_monitor_prediction_drift_detected": (
        "1: the predicted-label distribution drifted; absent: not judged.",
        None,
    ),
    "clearsight_monitor_uncertain_share": ("Share of answers flagged uncertain (0..1).", None),
    "clearsight_monitor_predicted_share": ("Share of predictions per label (0..1).", "label"),
    "clearsight_monitor_labelled": ("Predictions with a ground truth in the window.", None),
    "clearsight_monitor_production_accuracy": ("Accuracy on the labelled predictions.", None),
    "clearsight_monitor_production_accuracy_ci_lower": ("Wilson 95% interval, lower.", None),
    "clearsight_monitor_production_accuracy_ci_upper": ("Wilson 95% interval, upper.", None),
    "clearsight_monitor_class_recall": ("Recall per true label on the labelled cases.", "label"),
    "clearsight_monitor_accuracy_below_floor": (
        "1: accuracy below the floor; absent: too few labels.",
        None,
    ),
    "clearsight_monitor_critical_recall_below_floor": (
        "1: a critical class's recall below its floor; absent: too few labels.",
        "label",
    ),
    "clearsight_monitor_max_age_seconds": ("Longest acceptable gap between monitor runs.", None),
}


def build_registry(result: MonitorResult, now: float | None = None) -> CollectorRegistry:
    """The run's gauges, named and labelled by the metric contract (:data:`METRICS`).

    Figures that could not be computed (no prediction, no label) and decisions
    not taken for lack of evidence are left out, never pushed as 0.

    Args:
        result: The monitor run.
        now: The run's Unix time (default: now).

    Returns:
        A fresh registry holding only these gauges.
    """
    registry = CollectorRegistry()
    base = {"model_name": result.model_name, "model_version": result.model_version}
    gauges: dict[str, Gauge] = {}
    for name, (doc, extra) in METRICS.items():
        labels = ["model_name", "model_version"] + ([extra] if extra else [])
        if name == "clearsight_monitor_run_info":
            labels += ["run_id", "run_url"]
        gauges[name] = Gauge(name, doc, labels, registry=registry)

    def put(name: str, value: float | None, **labels: str) -> None:
        if value is not None:
            gauges[name].labels(**base, **labels).set(float(value))

    f, d = result.figures, result.drift
    put("clearsight_monitor_run_info", 1, run_id=result.run_id, run_url=result.run_url)
    put("clearsight_monitor_last_run_timestamp_seconds", now if now is not None else _now())
    put("clearsight_monitor_window_predictions", f.predictions)
    put("clearsight_monitor_drift_share", d.drift_share if f.with_features else None)
    put("clearsight_monitor_uncertain_share", f.uncertain_share)
    if f.predictions:
        for label, share in f.predicted_share.items():
            put("clearsight_monitor_predicted_share", share, label=label)
    put("clearsight_monitor_labelled", f.labelled)
    put("clearsight_monitor_production_accuracy", f.accuracy)
    if f.accuracy_ci is not None:
        put("clearsight_monitor_production_accuracy_ci_lower", f.accuracy_ci[0])
        put("clearsight_monitor_production_accuracy_ci_upper", f.accuracy_ci[1])
    for label, recall in f.class_recall.items():
        put("clearsight_monitor_class_recall", recall.recall, label=label)
    decided = {
        DATA_DRIFT: "clearsight_monitor_drift_detected",
        PREDICTION_DRIFT: "clearsight_monitor_prediction_drift_detected",
        ACCURACY: "clearsight_monitor_accuracy_below_floor",
        CRITICAL_RECALL: "clearsight_monitor_critical_recall_below_floor",
    }
    for check in result.checks:
        if check.name in decided and check.status != INSUFFICIENT:
            extra = {"label": check.label} if check.label is not None else {}
            put(decided[check.name], 1 if check.status == ALERT else 0, **extra)
    put("clearsight_monitor_max_age_seconds", result.max_age_hours * 3600)
    return registry


def _now() -> float:
    return datetime.now(UTC).timestamp()


def push_metrics(url: str, result: MonitorResult, registry: CollectorRegistry) -> None:
    """Replace the model's group on the Pushgateway with ``registry`` (HTTP PUT).

    ``push_to_gateway(url, job="clearsight_monitor", grouping_key={"model_name": ...})``:
    one group per model, so a run's gauges replace the previous run's (a
    version no longer served leaves no stale series).

    Raises:
        MonitoringError: The Pushgateway refused or could not be reached.
    """
    try:
        push_to_gateway(
            url,
            job=PUSH_JOB,
            registry=registry,
            grouping_key={"model_name": result.model_name},
            timeout=PUSH_TIMEOUT,
        )
    except OSError as error:  # urllib's URLError/HTTPError are OSErrors
        raise MonitoringError(
            f"Could not push the monitor's metrics to the Pushgateway at {url}: {error}. "
            f"Fix: start it (prometheus-pushgateway) or correct {PUSHGATEWAY_URL_ENV}."
        ) from error
