"""Send one real image through the endpoint."""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Annotated, Any

import requests
from zenml import step
from zenml.io import fileio

from clearsight.dataset import DatasetManifest
from clearsight.prediction_log import SMOKE_TEST_PUID_PREFIX
from stack.endpoint import Endpoint, client_api_key

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def smoke_test(
    deployment: dict[str, Any], dataset: DatasetManifest
) -> Annotated[dict[str, Any], "smoke_test"]:
    """Predict one test image through the deployed endpoint and check the answer's shape.

    Sends the key of :func:`stack.endpoint.client_api_key` (the platform's own,
    which the deployer made when it started a server with keys required).

    Args:
        deployment: Output of ``deploy_champion``.
        dataset: A dataset whose first test image is sent.

    Returns:
        The image's label, the endpoint's answer and the trace tags.
    """
    record = dataset.split("test")[0]
    with fileio.open(record.uri, "rb") as handle:
        payload = {
            "binData": base64.b64encode(handle.read()).decode(),
            # Not traffic: the monitor leaves requests with this id prefix out.
            "meta": {"puid": f"{SMOKE_TEST_PUID_PREFIX}{uuid.uuid4()}"},
        }
    endpoint = Endpoint(deployment["prediction_url"], api_key=client_api_key())
    response = requests.post(
        endpoint.prediction_url, json=payload, headers=endpoint.headers(), timeout=30
    )
    if response.status_code != 200:
        raise RuntimeError(f"The endpoint answered {response.status_code}: {response.text[:500]}")
    body = response.json()
    answer = body["jsonData"]["predictions"][0]
    logger.info(
        "Smoke test: true label %s, predicted %s (confidence %.3f%s).",
        record.label,
        answer["label"],
        answer["confidence"],
        ", uncertain" if answer["uncertain"] else "",
    )
    return {
        "true_label": record.label,
        "image_path": record.source_path,
        "answer": answer,
        "meta": body["meta"]["tags"],
    }
