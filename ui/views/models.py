"""Models: the champion and the challengers over time, the gate's evidence, admin actions."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from clearsight.review import SIGN_IN
from ui import metrics
from ui.components.auth import require_user
from ui.components.charts import metrics_chart
from ui.config import START_ENDPOINT, load_config
from ui.data import registry
from ui.data.admin import run_action
from ui.data.reviews import review_store

config = load_config()
user = require_user()


@st.cache_data(ttl=30, show_spinner="Reading model versions ...")
def _versions(model_name: str) -> list[registry.ModelVersionInfo]:
    return registry.model_versions(model_name)


@st.cache_data(ttl=300, show_spinner="Loading the report ...")
def _report(artifact_version_id: str) -> str:
    return registry.report_html(artifact_version_id)


@st.cache_data(ttl=30, show_spinner=False)
def _mlflow_ui(override: str | None) -> registry.MlflowUI:
    return registry.mlflow_ui(override)


st.title("Models")
versions = _versions(config.model_name)
if not versions:
    st.info(f"No version of {config.model_name} yet. Train one with:  `python run.py`")
    st.stop()
mlflow_ui = _mlflow_ui(config.mlflow_ui_url)
links = registry.mlflow_links(versions, mlflow_ui.url)
champion = next((v for v in versions if v.stage == "production"), None)

if champion is None:
    st.warning("No champion yet: no version has passed the gate.")
else:
    st.subheader(f"Champion: {config.model_name} v{champion.number}")
    cols = st.columns(4)
    cols[0].metric("Test accuracy", f"{champion.metrics.get('test_accuracy', float('nan')):.4f}")
    cols[1].metric("Macro-F1", f"{champion.metrics.get('test_macro_f1', float('nan')):.4f}")
    cols[2].metric(
        "Calibration error", f"{champion.metrics.get('test_ece_after', float('nan')):.4f}"
    )
    cols[3].metric("MLflow version", champion.registered_version or "?")
    if champion.promotion:
        st.caption(
            f"Promoted {champion.promotion.get('at', '?')} by {champion.promotion.get('by', '?')}: "
            f"{champion.promotion.get('reason', '')}"
        )

rows = []
for v in versions:
    decision = v.decision
    rows.append(
        {
            "version": v.number,
            "stage": v.stage,
            "created": v.created,
            "accuracy": v.metrics.get("test_accuracy"),
            "macro-F1": v.metrics.get("test_macro_f1"),
            "ECE": v.metrics.get("test_ece_after"),
            "gate": ("promote" if decision.promote else "reject") if decision else "not judged",
            "MLflow version": v.registered_version,
            "MLflow run": links.get(v.number, {}).get("run", ""),
        }
    )
st.subheader("Versions")
st.dataframe(
    pd.DataFrame(rows),
    hide_index=True,
    column_config={
        "MLflow run": st.column_config.LinkColumn("MLflow run", display_text="open"),
        "accuracy": st.column_config.NumberColumn(format="%.4f"),
        "macro-F1": st.column_config.NumberColumn(format="%.4f"),
        "ECE": st.column_config.NumberColumn(format="%.4f"),
    },
    key="versions_table",
)
st.altair_chart(metrics_chart(rows), width="stretch")
st.caption(
    f"MLflow UI: [{mlflow_ui.url}]({mlflow_ui.url})"
    + (f" (start it with `{mlflow_ui.start}`)" if mlflow_ui.start else " (the stack's server)")
)

st.subheader("The gate's decision")
chosen = st.selectbox(
    "Model version",
    [v.number for v in versions],
    format_func=lambda n: f"v{n}" + (" (champion)" if champion and n == champion.number else ""),
    key="version_choice",
)
version = next(v for v in versions if v.number == chosen)
if version.decision is None:
    st.info(
        f"v{chosen} was never judged by the gate: `python run.py promote --model-version {chosen}`"
    )
else:
    decision = version.decision
    verdict = "passed: promoted" if decision.promote else "failed: production unchanged"
    (st.success if decision.promote else st.error)(
        f"v{chosen} {verdict} (run {decision.run_name}, champion then: "
        f"{'v' + str(decision.champion_version) if decision.champion_version else 'none'})"
    )
    st.markdown("\n".join(f"- {reason}" for reason in decision.reasons))
    if decision.reports:
        title = st.radio("Evidently report", list(decision.reports), horizontal=True, key="report")
        if st.toggle("Show the report", key="show_report"):
            # The pipelines' own artifact: trusted like the artifact store it comes from.
            st.iframe(_report(decision.reports[title]), height=900)
for kind, url in links.get(chosen, {}).items():
    label = "MLflow registered version" if kind == "registered" else "MLflow training run"
    st.markdown(f"[{label}]({url})")

st.subheader("Deploy and roll back")
if not user.is_admin:
    st.info("Deploying a version and rolling back are for admins.")
    st.stop()
st.write(
    "Each action runs `python run.py ...` with `--actor " + user.name + "`; ZenML, MLflow "
    "and the audit log below record who did it. A version reaches production only through "
    "the gate."
)
confirm = st.checkbox("I understand these actions change what production serves.", key="confirm")
first, second, third = st.columns(3)
requested: tuple[str, tuple[str, ...], str] | None = None
if first.button("Redeploy the champion", disabled=not confirm, key="deploy"):
    requested = ("deploy", (), "champion")
candidates = [v.number for v in versions if not champion or v.number != champion.number]
target = second.selectbox("Version to promote", candidates or [None], key="promote_version")
if second.button(
    "Promote through the gate and deploy",
    disabled=not confirm or target is None,
    key="promote",
):
    requested = ("promote", ("--model-version", str(target)), f"v{target}")
if third.button("Roll back to the previous champion", disabled=not confirm, key="rollback"):
    requested = ("rollback", (), "previous champion")

if requested is not None:
    action, args, target_name = requested
    try:
        with st.spinner(f"{action} {target_name} ... (this runs a pipeline)"):
            result = run_action(config, user, action, *args, target=target_name)
            if action == "promote" and result.ok:
                _versions.clear()
                refreshed = {v.number: v for v in _versions(config.model_name)}
                if refreshed.get(int(args[1])) and refreshed[int(args[1])].stage == "production":
                    result = run_action(config, user, "deploy", target=target_name)
                else:
                    st.warning(f"The gate rejected {target_name}: production unchanged.")
    except PermissionError as error:  # demoted or removed since this page was drawn
        metrics.ADMIN_ACTIONS.labels(action=action, outcome="refused").inc()
        st.error(str(error))
        st.stop()
    metrics.ADMIN_ACTIONS.labels(action=action, outcome="ok" if result.ok else "failed").inc()
    _versions.clear()
    st.session_state["last_action"] = {
        "text": f"{result.action} {target_name}: "
        + ("done" if result.ok else f"failed (exit {result.returncode})")
        + f" in {result.seconds:.0f} s",
        "ok": result.ok,
        "output": result.output[-4000:],
    }
    st.rerun()

last = st.session_state.get("last_action")
if last:
    (st.success if last["ok"] else st.error)(last["text"])
    with st.expander("Command output"):
        st.code(last["output"] or "(no output)")
    if not last["ok"] and "No endpoint" in last["output"]:
        st.caption(f"Start the endpoint with `{START_ENDPOINT}`.")

st.subheader("Audit log")
st.caption("Sign-ins are left out here (lockouts and resets are shown); all are in `audit_log`.")
log = review_store(config.catalog_url).audit_log(limit=30, exclude_actions=(SIGN_IN,))
if log:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "at (UTC)": e["at"],
                    "who": e["actor"],
                    "role": e["role"],
                    "action": e["action"],
                    "target": e["target"],
                    "outcome": e["outcome"],
                }
                for e in log
            ]
        ),
        hide_index=True,
        key="audit_table",
    )
