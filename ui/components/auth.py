"""Sign-in and the signed-in user, kept in the session."""

from __future__ import annotations

import streamlit as st

from ui import metrics
from ui.config import UIConfig
from ui.users import User, UsersError, authenticate

USER_KEY = "user"


def current_user() -> User | None:
    """The signed-in user of this browser session, if any."""
    entry = st.session_state.get(USER_KEY)
    return User(**entry) if entry else None


def require_user() -> User:
    """The signed-in user; pages are only routed to after sign-in."""
    user = current_user()
    if user is None:
        st.stop()
    return user


def sign_out() -> None:
    """Forget the user (and their uploads' answers) in this session."""
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def login_page(config: UIConfig) -> None:
    """The sign-in form; the only page before sign-in."""
    st.title("Clearsight")
    st.write("Image classification with expert review. Sign in to continue.")
    with st.form("login"):
        name = st.text_input("User name", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Sign in")
    if not submitted:
        return
    try:
        user = authenticate(config.users_file, name.strip(), password)
    except UsersError as error:
        metrics.LOGINS.labels(outcome="error").inc()
        st.error(str(error))
        return
    if user is None:
        metrics.LOGINS.labels(outcome="failed").inc()
        st.error("Unknown user name or wrong password.")
        return
    metrics.LOGINS.labels(outcome="ok").inc()
    st.session_state[USER_KEY] = {"name": user.name, "role": user.role}
    st.rerun()


def sidebar(user: User) -> None:
    """Who is signed in, and the way out."""
    with st.sidebar:
        st.caption(f"Signed in as **{user.name}** ({user.role})")
        st.button("Sign out", on_click=sign_out, key="sign_out")
