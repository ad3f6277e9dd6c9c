"""Clearsight's review app: ``streamlit run ui/main.py`` (or ``make ui``).

Sign-in first; then Predict, Review queue, Models, Runs and Monitoring. The app's own
Prometheus metrics are served on a separate port (8502 by default).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run ui/main.py` puts only ui/ on the path
    sys.path.insert(0, str(ROOT))

from ui.config import apply_environment  # noqa: E402

apply_environment()

import streamlit as st  # noqa: E402

from ui import metrics  # noqa: E402
from ui.components.auth import current_user, login_page, sidebar  # noqa: E402
from ui.config import load_config  # noqa: E402

VIEWS = Path(__file__).resolve().parent / "views"


@st.cache_resource
def _metrics_server(port: int, address: str) -> int | None:
    return metrics.start_server(port, address)


def main() -> None:
    """Route to the sign-in page or the app's pages."""
    st.set_page_config(page_title="Clearsight", page_icon=":microscope:", layout="wide")
    config = load_config()
    _metrics_server(config.metrics_port, config.metrics_address)
    user = current_user(config)  # re-read from the users file on every rerun
    if user is None:
        pages = [st.Page(lambda: login_page(config), title="Sign in", url_path="login")]
    else:
        sidebar(user)
        pages = [
            st.Page(VIEWS / "predict.py", title="Predict", icon=":material/image_search:"),
            st.Page(VIEWS / "review.py", title="Review queue", icon=":material/fact_check:"),
            st.Page(VIEWS / "models.py", title="Models", icon=":material/model_training:"),
            st.Page(VIEWS / "runs.py", title="Runs", icon=":material/timeline:"),
            st.Page(VIEWS / "monitoring.py", title="Monitoring", icon=":material/monitor_heart:"),
        ]
    page = st.navigation(pages)
    if st.session_state.get("_last_page") != page.title:  # a view, not a widget rerun
        st.session_state["_last_page"] = page.title
        metrics.PAGE_VIEWS.labels(page=page.title).inc()
    page.run()


main()
