"""Messages shared by the pages."""

from __future__ import annotations

import streamlit as st

from ui.config import START_ENDPOINT


def endpoint_down(reason: str) -> None:
    """Say the endpoint is down, why, and the command that starts it."""
    st.error(f"The prediction endpoint is not available: {reason}.", icon=":material/cloud_off:")
    st.markdown("Start it (it serves the current champion) with:")
    st.code(START_ENDPOINT, language="bash")
    st.caption("`python run.py endpoint` prints its URL once it runs.")
