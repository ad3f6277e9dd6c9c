"""Charts: top-k probabilities of one answer, model metrics over versions, production accuracy."""

from __future__ import annotations

import altair as alt
import pandas as pd


def top_k_chart(pairs: list[tuple[str, float]], threshold: float) -> alt.LayerChart:
    """Horizontal bars of the top-k probabilities, with the uncertainty threshold marked."""
    table = pd.DataFrame(pairs, columns=["class", "probability"])
    table["class"] = table["class"].astype(str)
    bars = (
        alt.Chart(table)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), title="probability"),
            y=alt.Y("class:N", sort=None, title=None),
            tooltip=["class", alt.Tooltip("probability:Q", format=".3f")],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"threshold": [threshold]}))
        .mark_rule(color="red", strokeDash=[4, 3])
        .encode(x="threshold:Q")
    )
    return (bars + rule).properties(height=max(60, 28 * len(pairs)))


def metrics_chart(rows: list[dict]) -> alt.Chart:
    """Test accuracy and macro-F1 per model version, champion marked."""
    table = pd.DataFrame(rows)
    long = table.melt(
        id_vars=["version", "stage"],
        value_vars=[c for c in ("accuracy", "macro-F1") if c in table],
        var_name="metric",
        value_name="value",
    ).dropna()
    return (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("version:O", title="model version"),
            y=alt.Y("value:Q", scale=alt.Scale(zero=False), title="test split"),
            color="metric:N",
            tooltip=["version", "stage", "metric", alt.Tooltip("value:Q", format=".4f")],
        )
        .properties(height=220)
    )


def accuracy_chart(rows: list[dict]) -> alt.LayerChart:
    """Production accuracy per model version and day, with its confidence band.

    ``rows``: ``day``, ``model_version``, ``accuracy``, ``ci_lower``, ``ci_upper``
    and ``labelled`` (``ui.data.monitoring.accuracy_over_time``).
    """
    table = pd.DataFrame(rows)
    table["version"] = "v" + table["model_version"].astype(str)
    base = alt.Chart(table).encode(
        x=alt.X("day:T", title="day (UTC)"),
        color=alt.Color("version:N", title="model version"),
    )
    band = base.mark_area(opacity=0.2).encode(
        y=alt.Y("ci_lower:Q", scale=alt.Scale(domain=[0, 1]), title="production accuracy"),
        y2="ci_upper:Q",
    )
    line = base.mark_line(point=True).encode(
        y="accuracy:Q",
        tooltip=[
            "version",
            alt.Tooltip("day:T", title="day"),
            alt.Tooltip("accuracy:Q", format=".3f"),
            alt.Tooltip("ci_lower:Q", format=".3f", title="95% CI lower"),
            alt.Tooltip("ci_upper:Q", format=".3f", title="95% CI upper"),
            alt.Tooltip("labelled:Q", title="labelled answers"),
        ],
    )
    return (band + line).properties(height=260)
