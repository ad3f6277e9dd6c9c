"""Find the prediction endpoint and ask it for answers (Seldon v1 protocol).

Discovery and the API key are :mod:`stack.endpoint`'s, as for every client of
the endpoint; this module adds the app's errors and batching.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any

import requests

from ui.config import START_ENDPOINT

logger = logging.getLogger(__name__)

BATCH = 16  # images per request; the server accepts up to max_batch (64)
MODEL_TAGS = ("model_name", "model_version", "registered_version", "mlflow_run_id")


class EndpointDownError(Exception):
    """No endpoint serves the model, or it does not answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"The prediction endpoint is not available: {reason}. Start it with:  {START_ENDPOINT}"
        )
        self.reason = reason


class RequestRefusedError(Exception):
    """The endpoint refused the request (4xx); the message is the server's reason."""


@dataclass
class Prediction:
    """The endpoint's answers for a batch, and the model that gave them.

    ``requests`` has one ``(puid, item)`` per answer: the request id the
    server gave the answer (``meta.puid``, the key of its prediction log and
    ground truths) and the image's index in that request; ``puid`` is None
    when the server sent none.
    """

    answers: list[dict[str, Any]]
    model: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str | None, int]] = field(default_factory=list)


def find_prediction_url(model_name: str, override: str | None = None) -> str:
    """The prediction URL of the served champion (:func:`stack.endpoint.find_endpoint`).

    Found on the active stack's model deployer, local or Kubernetes, as
    ``python run.py endpoint`` finds it.

    Args:
        model_name: The served model.
        override: An explicit URL (``CLEARSIGHT_ENDPOINT_URL``), used as is.

    Raises:
        EndpointDownError: When no running server serves the model.
    """
    from stack.endpoint import EndpointNotFoundError, find_endpoint

    try:
        return find_endpoint(model_name, url=override).prediction_url
    except EndpointNotFoundError as error:
        raise EndpointDownError(error.reason) from None


def check_health(url: str, timeout: float = 3) -> dict[str, str]:
    """Check the server behind a prediction URL, and say which model it serves now.

    One request: Seldon's ``/health/status``, which our model answers with
    ``ready`` and the served model's tags (``model_name``, ``model_version``,
    ``registered_version``, ``mlflow_run_id``). A server that does not answer
    it is pinged at ``/health/ping`` instead, and the model stays unknown.

    Returns:
        The served model's tags; empty when the server does not say.

    Raises:
        EndpointDownError: When the server does not answer, or is not ready.
    """
    base = url.split("/api/", 1)[0]
    try:
        response = requests.get(f"{base}/health/status", timeout=timeout)
        if response.status_code != 200:
            response = requests.get(f"{base}/health/ping", timeout=timeout)
    except requests.RequestException as error:
        raise EndpointDownError(f"{base} does not answer ({error.__class__.__name__})") from None
    if response.status_code != 200:
        raise EndpointDownError(f"{base}/health/ping answered HTTP {response.status_code}")
    try:
        status = response.json()
    except ValueError:
        return {}  # the ping's "pong"
    if not isinstance(status, dict):
        return {}
    if status.get("ready") is False:
        raise EndpointDownError(f"{base} is still loading the model")
    return {key: str(status[key]) for key in MODEL_TAGS if key in status}


def predict(
    url: str, images: list[bytes], timeout: float = 60, api_key: str | None = None
) -> Prediction:
    """Send images to the endpoint as ``jsonData.images`` batches; one answer per image.

    Args:
        url: The prediction URL.
        images: The images' bytes.
        timeout: Seconds per request.
        api_key: The key to send (default: :func:`stack.endpoint.client_api_key`).

    Raises:
        EndpointDownError: The endpoint does not answer.
        RequestRefusedError: It answered 4xx (the reason is the server's; for a
            401, also where the app reads its key).
    """
    from stack.endpoint import API_KEY_ENV, auth_headers, client_api_key

    headers = auth_headers(api_key or client_api_key())
    answers: list[dict[str, Any]] = []
    model: dict[str, str] = {}
    requests_made: list[tuple[str | None, int]] = []
    for start in range(0, len(images), BATCH):
        chunk = images[start : start + BATCH]
        body = {"jsonData": {"images": [base64.b64encode(i).decode("ascii") for i in chunk]}}
        try:
            response = requests.post(url, json=body, headers=headers, timeout=timeout)
        except requests.RequestException as error:
            raise EndpointDownError(f"{url} did not answer ({error.__class__.__name__})") from None
        if 400 <= response.status_code < 500:
            try:
                info = response.json()["status"]["info"]
            except (ValueError, KeyError, TypeError):
                info = response.text[:500]
            if response.status_code == 401:
                info = f"{info}. The app sends {API_KEY_ENV} (else this machine's platform key)."
            raise RequestRefusedError(str(info))
        if response.status_code != 200:
            raise EndpointDownError(f"{url} answered HTTP {response.status_code}")
        payload = response.json()
        batch = payload["jsonData"]["predictions"]
        answers.extend(batch)
        meta = payload.get("meta") or {}
        puid = str(meta["puid"]) if meta.get("puid") else None
        requests_made.extend((puid, item) for item in range(len(batch)))
        model = {str(k): str(v) for k, v in (meta.get("tags") or {}).items()}
    return Prediction(answers=answers, model=model, requests=requests_made)


def top_k(answer: dict[str, Any], k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable classes of an answer, from its full probabilities."""
    ranked = sorted(answer["probabilities"].items(), key=lambda item: -item[1])
    return [(label, float(p)) for label, p in ranked[:k]]
