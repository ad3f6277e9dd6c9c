"""Sign-in and the signed-in user, kept in the session and re-checked on every rerun."""

from __future__ import annotations

import streamlit as st

from ui import metrics
from ui.config import UIConfig, load_config
from ui.users import User, UsersError, authenticate, lookup_user

USER_KEY = "user"
NOTICE_KEY = "signed_out_because"


def current_user(config: UIConfig | None = None) -> User | None:
    """The signed-in user of this browser session, as the users file says now.

    The users file is read again on every rerun: a user removed from it, or
    whose password was reset, is signed out; a changed role applies at once.
    """
    entry = st.session_state.get(USER_KEY)
    if not entry:
        return None
    config = config or load_config()
    try:
        found = lookup_user(config.users_file, entry["name"])
    except UsersError as error:
        return _signed_out(f"the users file cannot be read ({error})")
    if found is None:
        return _signed_out(f"{entry['name']} is no longer a user of this app")
    user, stamp = found
    if stamp != entry.get("stamp"):
        return _signed_out(f"the password of {user.name} was changed")
    if user.role != entry.get("role"):
        st.session_state[USER_KEY] = {**entry, "role": user.role}
    return user


def _signed_out(reason: str) -> None:
    sign_out()
    st.session_state[NOTICE_KEY] = reason


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
    notice = st.session_state.get(NOTICE_KEY)
    if notice:
        st.warning(f"You were signed out: {notice}.", icon=":material/logout:")
    with st.form("login"):
        name = st.text_input("User name", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Sign in")
    if not submitted:
        return
    try:
        user = authenticate(config.users_file, name.strip(), password)
        found = lookup_user(config.users_file, user.name) if user else None
    except UsersError as error:
        metrics.LOGINS.labels(outcome="error").inc()
        st.error(str(error))
        return
    if user is None or found is None:
        metrics.LOGINS.labels(outcome="failed").inc()
        st.error("Unknown user name or wrong password.")
        return
    metrics.LOGINS.labels(outcome="ok").inc()
    st.session_state.pop(NOTICE_KEY, None)
    st.session_state[USER_KEY] = {"name": user.name, "role": user.role, "stamp": found[1]}
    st.rerun()


def sidebar(user: User) -> None:
    """Who is signed in, and the way out."""
    with st.sidebar:
        st.caption(f"Signed in as **{user.name}** ({user.role})")
        st.button("Sign out", on_click=sign_out, key="sign_out")
