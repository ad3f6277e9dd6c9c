"""Review queue: an expert confirms or corrects each uncertain or flagged prediction."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from clearsight.catalog import Catalog
from clearsight.decode import InvalidImageError
from clearsight.review import LABEL_ERROR_REASON, ReviewError
from ui import metrics
from ui.components.auth import require_user
from ui.config import load_config
from ui.data.reviews import read_image, review_store, thumbnail

PAGE_SIZE = 10
PAGE_KEY = "queue_page"  # 0-based

config = load_config()
user = require_user()
store = review_store(config.catalog_url)


def _turn(step: int) -> None:
    st.session_state[PAGE_KEY] = st.session_state.get(PAGE_KEY, 0) + step


st.title("Review queue")
waiting = store.pending_count()
reviewed = store.reviewed_images()
left, middle, right = st.columns(3)
left.metric("Waiting for review", waiting)
middle.metric("Labelled production set", len(reviewed))
right.metric("Reviews by you", store.review_count(user.name))

pages = max(1, math.ceil(waiting / PAGE_SIZE))
page = min(max(0, st.session_state.get(PAGE_KEY, 0)), pages - 1)  # the queue may have shrunk
st.session_state[PAGE_KEY] = page
pending = store.queue(limit=PAGE_SIZE, offset=page * PAGE_SIZE)
if not pending:
    st.success("Nothing to review: every uncertain or flagged prediction has a verdict.")
for entry in pending:
    eid = entry["id"]
    st.divider()
    picture, details, verdict = st.columns([1, 2, 2])
    try:
        shown = thumbnail(read_image(entry["uri"]), config.decoding)
        picture.image(shown, caption=entry["filename"] or None, width=140)
    except (OSError, InvalidImageError) as error:
        picture.error("The stored image is not readable.")
        picture.caption(f"{error.__class__.__name__}: {error}")
    if entry["reason"] == LABEL_ERROR_REASON:  # queued by the train pipeline's label check
        details.markdown(
            f"**#{eid}** · **{LABEL_ERROR_REASON}** · given **{entry['given_label']}** "
            f"({entry['confidence']:.1%} out-of-sample), suggested "
            f"**{entry['suggested_label']}**"
        )
    else:
        details.markdown(
            f"**#{eid}** · predicted **{entry['label']}** at {entry['confidence']:.1%} "
            f"(threshold {entry['threshold']:.0%}) · {entry['reason']}"
        )
    details.caption(
        f"{entry['model_name']} v{entry['model_version']} · asked by {entry['requested_by']} "
        f"on {entry['created_at']:%Y-%m-%d %H:%M} UTC · sha256 {entry['sha256'][:12]}"
        + (f" · request `{entry['puid']}` image {entry['item']}" if entry.get("puid") else "")
    )
    ranked = sorted(entry["probabilities"].items(), key=lambda item: -item[1])
    details.caption(" · ".join(f"{label} {p:.1%}" for label, p in ranked[:3]))
    classes = sorted(entry["probabilities"])
    label = verdict.selectbox(
        "True label",
        classes,
        index=classes.index(entry["label"]) if entry["label"] in classes else 0,
        key=f"label_{eid}",
    )
    note = verdict.text_input("Note (optional)", key=f"note_{eid}")
    save, reject = verdict.columns(2)
    action = None
    if save.button("Save label", key=f"save_{eid}", type="primary"):
        action = {"label": label}
    if reject.button("Reject image", key=f"reject_{eid}", help="Not a usable case: left out."):
        action = {"label": None, "reject": True}
    if action is not None:
        try:
            done = store.review(eid, reviewer=user.name, role=user.role, note=note, **action)
        except ReviewError as error:
            st.error(str(error))
        else:
            metrics.REVIEWS.labels(verdict=done["verdict"]).inc()
            truth = done["ground_truth"]
            st.toast(
                f"#{eid}: {done['verdict']} by {user.name}"
                + (f"; ground truth of request {truth['puid']} recorded" if truth else "")
            )
            st.rerun()
if pages > 1:
    first = page * PAGE_SIZE + 1
    back, where, forward = st.columns([1, 3, 1])
    back.button("Previous", on_click=_turn, args=(-1,), disabled=page == 0, key="queue_previous")
    where.caption(
        f"Page {page + 1} of {pages}: entries {first}-{first + len(pending) - 1} of {waiting}, "
        "oldest first."
    )
    forward.button("Next", on_click=_turn, args=(1,), disabled=page >= pages - 1, key="queue_next")

st.divider()
st.subheader("Labelled production set")
st.write(
    "Reviewed images join the reference data on the next ingestion (`python run.py`), "
    "with provenance **review** in the dataset manifest and the catalog."
)
if reviewed:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "sha256": r.sha256[:12],
                    "label": r.label,
                    "verdict": r.verdict,
                    "predicted": r.predicted_label,
                    "reviewer": r.reviewer,
                    "reviewed at (UTC)": r.reviewed_at,
                    "model version": r.model_version,
                }
                for r in reviewed
            ]
        ),
        hide_index=True,
        key="reviewed_table",
    )
catalog = Catalog(config.catalog_url)
try:
    counts = catalog.provenance_counts()
finally:
    catalog.close()
st.caption(
    "Catalogued images by provenance: "
    + (", ".join(f"{name} {count}" for name, count in counts.items()) or "none yet")
)
