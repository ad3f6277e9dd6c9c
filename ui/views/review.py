"""Review queue: an expert confirms or corrects each uncertain or flagged prediction."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from clearsight.catalog import Catalog
from clearsight.review import ReviewError
from ui import metrics
from ui.components.auth import require_user
from ui.config import load_config
from ui.data.reviews import read_image, review_store

PAGE_SIZE = 10

config = load_config()
user = require_user()
store = review_store(config.catalog_url)

st.title("Review queue")
pending = store.queue()
reviewed = store.reviewed_images()
left, middle, right = st.columns(3)
left.metric("Waiting for review", len(pending))
middle.metric("Labelled production set", len(reviewed))
right.metric("Reviews by you", sum(1 for r in store.reviews() if r["reviewer"] == user.name))

if not pending:
    st.success("Nothing to review: every uncertain or flagged prediction has a verdict.")
for entry in pending[:PAGE_SIZE]:
    eid = entry["id"]
    st.divider()
    picture, details, verdict = st.columns([1, 2, 2])
    try:
        picture.image(read_image(entry["uri"]), caption=entry["filename"] or None, width=140)
    except OSError as error:
        picture.error(f"Image not readable at {entry['uri']}: {error}")
    reasons = [
        name
        for name, on in (("uncertain", entry["uncertain"]), ("flagged", entry["flagged"]))
        if on
    ]
    details.markdown(
        f"**#{eid}** · predicted **{entry['label']}** at {entry['confidence']:.1%} "
        f"(threshold {entry['threshold']:.0%}) · {', '.join(reasons)}"
    )
    details.caption(
        f"{entry['model_name']} v{entry['model_version']} · asked by {entry['requested_by']} "
        f"on {entry['created_at']:%Y-%m-%d %H:%M} UTC · sha256 {entry['sha256'][:12]}"
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
            done = store.review(eid, reviewer=user.name, note=note, **action)
        except ReviewError as error:
            st.error(str(error))
        else:
            metrics.REVIEWS.labels(verdict=done["verdict"]).inc()
            st.toast(f"#{eid}: {done['verdict']} by {user.name}")
            st.rerun()
if len(pending) > PAGE_SIZE:
    st.caption(f"{len(pending) - PAGE_SIZE} more after these; review these first.")

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
