"""Predict: upload images, see the top-k classes, the confidence, and whether to send for review."""

from __future__ import annotations

import time

import streamlit as st

from clearsight.decode import SUPPORTED_FORMAT_NAMES, DecodeOptions
from clearsight.deidentify import stored_copy
from clearsight.images import SUPPORTED_EXTENSIONS, InvalidImageError, inspect_image
from ui import metrics
from ui.components.auth import require_user
from ui.components.charts import top_k_chart
from ui.components.status import endpoint_down
from ui.config import load_config
from ui.data.endpoint import (
    EndpointDownError,
    RequestRefusedError,
    check_health,
    find_prediction_url,
    predict,
    top_k,
)
from ui.data.reviews import content_store, review_store, thumbnail

config = load_config()
decoding = DecodeOptions(**config.decoding)
user = require_user()
answers: dict[str, dict] = st.session_state.setdefault("answers", {})
queued: dict[str, int] = st.session_state.setdefault("queued", {})
seen_uploads: set[str] = st.session_state.setdefault("seen_uploads", set())

st.title("Predict")
left, right = st.columns(2)
k = left.slider("Top-k classes shown", 1, 10, config.top_k, key="top_k")
threshold = right.slider(
    "Uncertainty threshold (calibrated confidence)",
    0.0,
    1.0,
    config.uncertain_threshold,
    0.01,
    key="threshold",
    help="Answers below it are uncertain: sent to the review queue for an expert.",
)

try:
    url = find_prediction_url(config.model_name, config.endpoint_url)
    served = check_health(url)  # also which model version answers now
except EndpointDownError as error:
    # Not a failed prediction (none was asked for): prediction_errors counts those only.
    endpoint_down(error.reason)
    st.stop()
served_version = served.get("model_version", "")
st.caption(
    f"Endpoint: `{url}` serving **{served.get('model_name', config.model_name)}**"
    + (f" v{served_version}" if served_version else "")
)

files = st.file_uploader(
    f"Images ({SUPPORTED_FORMAT_NAMES})",
    type=sorted(ext.lstrip(".") for ext in SUPPORTED_EXTENSIONS),
    accept_multiple_files=True,
    key="uploads",
)
if not files:
    st.info("Upload one or more images to classify them.")
    st.stop()

# Each image is sent once per endpoint and served model version: slider moves and
# reruns reuse the answer; a redeploy on the same URL asks the new model.
received = time.perf_counter()
shown: dict[str, str] = {}  # answer key -> file name, of the usable uploads
todo: dict[str, tuple[str, bytes]] = {}
for upload in files:
    name, data = upload.name, upload.getvalue()
    if upload.file_id not in seen_uploads:
        seen_uploads.add(upload.file_id)
        metrics.UPLOADS.inc()
    try:
        # A DICOM upload goes no further than its de-identified copy: the endpoint,
        # the thumbnails and the review queue only ever see that.
        data = stored_copy(data)
        info = inspect_image(data, min_side=1, options=decoding)
    except InvalidImageError as error:
        st.warning(f"{name}: not usable ({error}).")
        continue
    key = f"{url}|{served_version}|{info.sha256}"
    if key in shown:
        st.caption(f"{name} is the same image as {shown[key]}: shown once.")
        continue
    shown[key] = name
    if key not in answers:
        todo[key] = (name, data)
if todo:
    try:
        with st.spinner(f"Asking the model about {len(todo)} image(s) ..."):
            metrics.PREDICTIONS.inc(len(todo))
            result = predict(url, [data for _, data in todo.values()])
    except EndpointDownError as error:
        metrics.PREDICTION_ERRORS.labels(reason="endpoint_down").inc()
        endpoint_down(error.reason)
        st.stop()
    except RequestRefusedError as error:
        metrics.PREDICTION_ERRORS.labels(reason="refused").inc()
        st.error(f"The endpoint refused the images: {error}")
        st.stop()
    elapsed = time.perf_counter() - received
    for (key, (_, data)), answer, (puid, item) in zip(
        todo.items(), result.answers, result.requests, strict=True
    ):
        metrics.LATENCY.observe(elapsed)
        answers[key] = {
            "answer": answer,
            "model": result.model,
            "data": data,
            "puid": puid,  # the answer's request id: a review becomes its ground truth
            "item": item,
        }

store = review_store(config.catalog_url)
for key, name in shown.items():
    entry = answers[key]
    sha = key.rsplit("|", 1)[1]
    answer, model = entry["answer"], entry["model"]
    uncertain = answer["confidence"] < threshold
    st.divider()
    picture, verdict = st.columns([1, 3])
    picture.image(thumbnail(entry["data"], config.decoding), caption=name, width=160)
    with verdict:
        st.subheader(f"{answer['label']} · {answer['confidence']:.2%}")
        queue_key = f"{key}|{model.get('model_version', '')}"
        if uncertain:
            if queue_key not in queued:
                queued[queue_key] = store.keep_prediction(
                    entry["data"],
                    answer,
                    store=content_store(),
                    requested_by=user.name,
                    threshold=threshold,
                    filename=name,
                    model=model,
                    puid=entry.get("puid"),
                    item=entry.get("item"),
                )
                metrics.UNCERTAIN.inc()
            st.warning(
                f"Uncertain: send for expert review. The calibrated confidence "
                f"{answer['confidence']:.2%} is below the threshold {threshold:.0%}; "
                f"queued for review as #{queued[queue_key]}.",
                icon=":material/help:",
            )
        else:
            st.success(
                f"Confident: {answer['confidence']:.2%} ≥ threshold {threshold:.0%}.",
                icon=":material/check_circle:",
            )
            if queue_key in queued:
                st.caption(f"Flagged for expert review as #{queued[queue_key]}.")
            elif st.button("Flag for expert review", key=f"flag_{sha}"):
                queued[queue_key] = store.keep_prediction(
                    entry["data"],
                    answer,
                    store=content_store(),
                    requested_by=user.name,
                    threshold=threshold,
                    flagged=True,
                    filename=name,
                    model=model,
                    puid=entry.get("puid"),
                    item=entry.get("item"),
                )
                st.rerun()
        st.altair_chart(
            top_k_chart(top_k(answer, k), threshold), width="stretch", height=60 + 30 * k
        )
        st.caption(
            f"Answered by {model.get('model_name', '?')} v{model.get('model_version', '?')} "
            f"(MLflow registered version {model.get('registered_version', '?')}, "
            f"run {model.get('mlflow_run_id', '?')})"
            + (f" · request `{entry['puid']}` image {entry['item']}" if entry.get("puid") else "")
        )
