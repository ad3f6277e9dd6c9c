"""Monitoring: alerts firing, the monitor's figures, production accuracy, the prediction log."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta

import pandas as pd
import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from clearsight.errors import CatalogError
from clearsight.monitoring import ACCURACY, DATA_DRIFT, INSUFFICIENT, UNCERTAIN_SHARE
from ui.components.auth import require_user
from ui.components.charts import accuracy_chart
from ui.config import load_config
from ui.data import monitoring

PAGE_SIZE = 50
PAGE_KEY = "log_page"  # 0-based
FILTERS_KEY = "log_filters"  # the filters the page number belongs to

config = load_config()
require_user()


@st.cache_data(ttl=30, show_spinner="Reading the monitor's figures ...")
def _monitored(model_name: str) -> list[monitoring.MonitoredVersion]:
    return monitoring.monitored_versions(model_name)


@st.cache_data(ttl=15, show_spinner=False)
def _alerts() -> list[dict]:
    return monitoring.firing_alerts()


def _turn(step: int) -> None:
    st.session_state[PAGE_KEY] = st.session_state.get(PAGE_KEY, 0) + step


def _catalog_error(error: Exception) -> None:
    st.error(
        f"The catalog database cannot be read: {error.__class__.__name__}: {error}",
        icon=":material/database:",
    )
    st.caption("Check `CLEARSIGHT_CATALOG_URL` (default: `.state/catalog.db`) and that it is up.")


st.title("Monitoring")

# Alerts -----------------------------------------------------------------------
st.subheader("Alerts firing")
try:
    alerts = _alerts()
except monitoring.AlertsUnavailableError as error:
    st.warning(f"Alerts cannot be shown: {error}", icon=":material/notifications_off:")
else:
    if not alerts:
        st.success("No alert is firing.", icon=":material/notifications:")
    else:
        st.dataframe(
            pd.DataFrame(alerts),
            hide_index=True,
            column_config={"link": st.column_config.LinkColumn("link", display_text="open")},
            key="alerts_table",
        )

# The monitor's latest figures ---------------------------------------------------
st.subheader("Latest monitor figures")
try:
    monitored = _monitored(config.model_name)
except Exception as error:  # noqa: BLE001 - any store problem: say so, keep the page
    monitored = []
    st.warning(f"The ZenML store cannot be read: {error.__class__.__name__}: {error}")
if not monitored:
    st.info(
        f"No monitor run has judged a version of {config.model_name} yet. The monitor reads "
        "the prediction log and its ground truths, checks drift, uncertainty and production "
        "accuracy, and records its figures on the model version. Run it with:"
    )
    st.code(monitoring.START_MONITOR, language="bash")
else:
    latest = monitored[0].figures
    accuracy = latest.get("production_accuracy")
    drift = latest.get("drift_share")
    uncertain = latest.get("uncertain_share")
    checks = latest.get("checks") or {}

    def shown(value: float | None, check: str) -> str:
        """A figure, marked when the monitor had too little evidence to judge it."""
        if value is None:
            return "n/a"
        judged = checks.get(check) != INSUFFICIENT
        return f"{value:.1%}" if judged else f"{value:.1%} (not judged)"

    cols = st.columns(4)
    cols[0].metric(f"Production accuracy (v{monitored[0].number})", shown(accuracy, ACCURACY))
    cols[1].metric("Labelled answers", latest.get("labelled", 0))
    cols[2].metric("Drift share", shown(drift, DATA_DRIFT))
    cols[3].metric("Uncertain share", shown(uncertain, UNCERTAIN_SHARE))
    if any(status == INSUFFICIENT for status in checks.values()):
        st.caption(
            "(not judged): too few predictions or labels in the window for a decision "
            "(minimums in configs/monitor.yaml); the figure is shown for information."
        )
    percent = st.column_config.NumberColumn(format="percent")
    st.dataframe(
        pd.DataFrame(monitoring.figures_table(monitored)),
        hide_index=True,
        column_config={
            name: percent
            for name in (
                "drift share",
                "uncertain share",
                "production accuracy",
                "CI lower",
                "CI upper",
            )
        },
        key="monitor_table",
    )
    st.caption(
        f"Figures of each version's latest monitor run. Run it again: `{monitoring.START_MONITOR}`"
    )

# Production accuracy over time ----------------------------------------------------
st.subheader("Production accuracy per version")
try:
    history = monitoring.accuracy_over_time(config.catalog_url, config.model_name)
except (CatalogError, SQLAlchemyError) as error:
    _catalog_error(error)
    st.stop()
if history:
    st.altair_chart(accuracy_chart(history), width="stretch")
    st.caption(
        "Per UTC day, on the answers with a ground truth (Seldon feedback or a review); "
        "the band is the Wilson 95% interval."
    )
else:
    st.info(
        "No answer has a ground truth yet. True labels come from Seldon's feedback call and "
        "from reviews of queued predictions (Review queue)."
    )

# The prediction log -----------------------------------------------------------------
st.subheader("Prediction log")
choices = monitoring.log_choices(config.catalog_url)
if not choices["labels"]:
    st.info(
        "The prediction log is empty: every image the endpoint answers is logged here. "
        "Serve the champion (`python run.py deploy`) and send images (Predict page)."
    )
    st.stop()
today = datetime.now(UTC).date()
dates, labels_col = st.columns(2)
chosen = dates.date_input(
    "Answered between (UTC)", value=(today - timedelta(days=30), today), key="log_dates"
)
days = list(chosen) if isinstance(chosen, tuple | list) else [chosen]
first_day, last_day = (days[0], days[-1]) if days else (None, None)  # one day while picking
labels = labels_col.multiselect(
    "Predicted label", choices["labels"], key="log_labels", placeholder="any"
)
band, versions_col = st.columns(2)
confidence = band.slider("Calibrated confidence", 0.0, 1.0, (0.0, 1.0), 0.01, key="log_confidence")
versions = versions_col.multiselect(
    "Model version", choices["model_versions"], key="log_versions", placeholder="any"
)
filters = (first_day, last_day, tuple(labels), confidence, tuple(versions))
if st.session_state.get(FILTERS_KEY) != filters:  # new filters: back to the first page
    st.session_state[FILTERS_KEY] = filters
    st.session_state[PAGE_KEY] = 0
page = max(0, st.session_state.get(PAGE_KEY, 0))


def _fetch(number: int) -> monitoring.LogPage:
    return monitoring.log_page(
        config.catalog_url,
        model_name=config.model_name,
        start=datetime.combine(first_day, time(), tzinfo=UTC) if first_day else None,
        end=datetime.combine(last_day, time(), tzinfo=UTC) + timedelta(days=1)
        if last_day
        else None,
        labels=labels,
        confidence=confidence,
        versions=versions,
        page=number,
        page_size=PAGE_SIZE,
    )


try:
    result = _fetch(page)
    pages = max(1, math.ceil(result.total / PAGE_SIZE))
    if page >= pages:  # the log may have shrunk (retention)
        page = pages - 1
        st.session_state[PAGE_KEY] = page
        result = _fetch(page)
except (CatalogError, SQLAlchemyError) as error:
    _catalog_error(error)
    st.stop()
if not result.total:
    st.info("No answer of the log matches these filters.")
    st.stop()
st.dataframe(
    pd.DataFrame(
        [
            {
                "answered at (UTC)": row["created_at"],
                "version": row["model_version"],
                "label": row["label"],
                "confidence": row["confidence"],
                "uncertain": row["uncertain"],
                "truth": row["truth"],
                "truth from": row["truth_source"],
                "request": row["puid"],
                "image": row["item"],
                "sha256": (row["image_sha256"] or "")[:12],
            }
            for row in result.rows
        ]
    ),
    hide_index=True,
    column_config={"confidence": st.column_config.NumberColumn(format="%.3f")},
    key="log_table",
)
first = page * PAGE_SIZE + 1
back, where, forward = st.columns([1, 3, 1])
back.button("Previous", on_click=_turn, args=(-1,), disabled=page == 0, key="log_previous")
where.caption(
    f"Page {page + 1} of {pages}: answers {first}-{first + len(result.rows) - 1} of "
    f"{result.total}, newest first."
)
forward.button("Next", on_click=_turn, args=(1,), disabled=page >= pages - 1, key="log_next")
