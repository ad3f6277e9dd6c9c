"""Sign-in and the signed-in user, kept in the session and re-checked on every rerun.

The rules (lockout after failed sign-ins, counted in the catalog's audit log;
idle sessions expire) are :mod:`ui.signin`'s; this module shows them.
"""

from __future__ import annotations

import logging

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from clearsight.errors import CatalogError
from ui import metrics, signin
from ui.config import UIConfig, load_config
from ui.data.reviews import review_store
from ui.users import User, UsersError, lookup_user

logger = logging.getLogger(__name__)

USER_KEY = "user"
NOTICE_KEY = "signed_out_because"


def current_user(config: UIConfig | None = None) -> User | None:
    """The signed-in user of this browser session, as the users file says now.

    The users file is read again on every rerun: a user removed from it, or
    whose password was reset, is signed out; a changed role applies at once.
    A session idle for longer than ``CLEARSIGHT_UI_IDLE_MINUTES`` is signed
    out at its next rerun; any other rerun (an interaction) keeps it alive.
    """
    entry = st.session_state.get(USER_KEY)
    if not entry:
        return None
    config = config or load_config()
    at = signin.now()
    if signin.idle_expired(
        entry.get("last_active"), at=at, policy=signin.SignInPolicy.from_config(config)
    ):
        return _signed_out(
            f"the session was idle for more than {config.idle_minutes:g} minutes; sign in again"
        )
    try:
        found = lookup_user(config.users_file, entry["name"])
    except UsersError as error:
        return _signed_out(f"the users file cannot be read ({error})")
    if found is None:
        return _signed_out(f"{entry['name']} is no longer a user of this app")
    user, stamp = found
    if stamp != entry.get("stamp"):
        return _signed_out(f"the password of {user.name} was changed")
    st.session_state[USER_KEY] = {**entry, "role": user.role, "last_active": at.timestamp()}
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
    name = name.strip()
    if not name or not password:
        st.error("Enter your user name and password.")
        return
    try:
        result = signin.sign_in(
            review_store(config.catalog_url),
            config.users_file,
            name,
            password,
            signin.SignInPolicy.from_config(config),
        )
    except UsersError as error:
        metrics.LOGINS.labels(outcome="error").inc()
        st.error(str(error))
        return
    except (CatalogError, SQLAlchemyError) as error:  # no count, no sign-in (fail closed)
        logger.exception("Sign-in refused: the catalog database cannot count attempts")
        metrics.LOGINS.labels(outcome="error").inc()
        st.error(
            "Signing in is not possible right now: the catalog database, which counts "
            f"failed sign-ins, does not answer ({error.__class__.__name__}). "
            "Try again later or tell an administrator."
        )
        return
    if result.user is None:
        metrics.LOGINS.labels(outcome="failed" if result.failed else "locked").inc()
        st.error(result.message(signin.now()))
        return
    metrics.LOGINS.labels(outcome="ok").inc()
    st.session_state.pop(NOTICE_KEY, None)
    st.session_state[USER_KEY] = {
        "name": result.user.name,
        "role": result.user.role,
        "stamp": result.stamp,
        "last_active": signin.now().timestamp(),
    }
    st.rerun()


def sidebar(user: User) -> None:
    """Who is signed in, and the way out."""
    with st.sidebar:
        st.caption(f"Signed in as **{user.name}** ({user.role})")
        st.button("Sign out", on_click=sign_out, key="sign_out")
