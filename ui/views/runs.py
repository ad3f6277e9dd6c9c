"""Runs: the recent pipeline runs, with links to the ZenML dashboard and the MLflow UI."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.components.auth import require_user
from ui.config import load_config
from ui.data import registry

config = load_config()
require_user()


@st.cache_data(ttl=15, show_spinner="Reading pipeline runs ...")
def _runs() -> list[dict]:
    return registry.recent_runs(limit=25)


@st.cache_data(ttl=30, show_spinner=False)
def _mlflow_ui(override: str | None) -> registry.MlflowUI:
    return registry.mlflow_ui(override)


st.title("Runs")
runs = _runs()
if not runs:
    st.info("No pipeline run yet. Start one with:  `python run.py`")
    st.stop()
table = pd.DataFrame(runs)
table["model version"] = [f"v{int(n)}" if pd.notna(n) else "" for n in table["model version"]]
counts = table["status"].value_counts()
cols = st.columns(max(1, len(counts)))
for col, (status, count) in zip(cols, counts.items(), strict=False):
    col.metric(status, int(count))
st.dataframe(
    table.drop(columns=["id"]),
    hide_index=True,
    column_config={
        "dashboard": st.column_config.LinkColumn("ZenML dashboard", display_text="open"),
        "duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f"),
        "started": st.column_config.DatetimeColumn("started (UTC)"),
    },
    key="runs_table",
)
if not any(r["dashboard"] for r in runs):
    st.info(
        "Links to the ZenML dashboard appear when the app talks to a ZenML server: "
        "`make dashboard` (http://127.0.0.1:8237), then start the app from the same shell."
    )
mlflow_ui = _mlflow_ui(config.mlflow_ui_url)
st.markdown(f"**MLflow UI**: [{mlflow_ui.url}]({mlflow_ui.url})")
if mlflow_ui.start:
    st.caption(f"Start it with `{mlflow_ui.start}` (it serves the stack's tracking store).")
else:
    st.caption("The active stack's MLflow tracking server.")
if st.button("Refresh", key="refresh_runs"):
    _runs.clear()
    st.rerun()
