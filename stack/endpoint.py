"""Find the prediction endpoint of a model and the API key to send it: the one place.

Every client of the endpoint goes through here: ``run.py`` (the ``endpoint``
command, the summary's ``curl``, redeploy after a rollback), the review app
(``ui.data.endpoint``), the deploy pipeline's smoke test and the benchmarks.

* **The server**: the running server of the model on the active ZenML stack's
  model deployer, whichever model version it serves: our ``local_seldon``
  deployer (``servers_for``) or ZenML's Seldon Core deployer on Kubernetes
  (:func:`stack.seldon.kubernetes.seldon_servers_for`). An explicit URL
  (``CLEARSIGHT_ENDPOINT_URL``, the review app's setting) is used as is.
* **The key**: ``CLEARSIGHT_ENDPOINT_API_KEY``, else the platform's own client
  key in ``credentials.env`` (:func:`stack.settings.credentials_path`, mode
  0600), which a deployer that starts a server with keys required makes once
  and registers hashed in the catalog (:func:`ensure_platform_key`), so that
  the smoke test and the review app on this machine work with keys on. A key
  is sent whenever there is one; a server with keys off ignores it.

Imports nothing of ZenML at module level (the review app imports it).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clearsight.api_keys import HEADER, MODE_ENV, SCHEME, parse_mode

API_KEY_ENV = "CLEARSIGHT_ENDPOINT_API_KEY"
ENDPOINT_URL_ENV = "CLEARSIGHT_ENDPOINT_URL"
#: Name of this machine's platform client key: ``platform@<host name>``.
PLATFORM_KEY_PREFIX = "platform@"
START_ENDPOINT = "python run.py deploy"


class EndpointNotFoundError(Exception):
    """No running server serves the model; ``reason`` says what was found instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"No prediction endpoint: {reason}. Start one with: {START_ENDPOINT}")
        self.reason = reason


@dataclass(frozen=True)
class Endpoint:
    """A model's prediction endpoint and what to send it.

    Attributes:
        prediction_url: Seldon v1 ``.../api/v1.0/predictions`` (or ``v0.1`` on Kubernetes).
        api_key: The key clients send (None: none is configured).
        keys_required: Whether the server asks for a key (None: unknown, a given URL).
        service: The ZenML service behind it, when found through the deployer.
    """

    prediction_url: str
    api_key: str | None = None
    keys_required: bool | None = None
    service: Any = field(default=None, compare=False, repr=False)

    @property
    def base_url(self) -> str:
        """The server's root, where ``/health/ping`` and ``/metadata`` answer."""
        return self.prediction_url.split("/api/", 1)[0]

    @property
    def feedback_url(self) -> str:
        """Seldon's feedback call on the same server."""
        return self.prediction_url.rsplit("/predictions", 1)[0] + "/feedback"

    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header, when there is a key."""
        return auth_headers(self.api_key)


def auth_headers(api_key: str | None) -> dict[str, str]:
    """``{"Authorization": "Bearer <key>"}``, or nothing without a key."""
    return {HEADER: f"{SCHEME} {api_key}"} if api_key else {}


def client_api_key(environ: Mapping[str, str] | None = None) -> str | None:
    """The key this machine's clients send: ``CLEARSIGHT_ENDPOINT_API_KEY``, else the platform's."""
    from stack.settings import read_credential

    env = os.environ if environ is None else environ
    return env.get(API_KEY_ENV) or read_credential(API_KEY_ENV)


def platform_key_name() -> str:
    """``platform@<host name>``: one platform key per machine, in a shared catalog too."""
    host = re.sub(r"[^A-Za-z0-9_.@-]", "-", socket.gethostname() or "localhost")
    return (PLATFORM_KEY_PREFIX + host)[:64]


def ensure_platform_key(catalog_url: str | None = None) -> str:
    """The platform's client key, active in the catalog; made and stored once.

    The key lives in ``credentials.env`` (0600) as ``CLEARSIGHT_ENDPOINT_API_KEY``
    and, hashed, in the catalog as :func:`platform_key_name`. A stored key that
    the catalog does not know (a new catalog) is registered; one that was
    revoked is replaced by a new key (revoking the platform key rotates it at
    the next deploy).

    Args:
        catalog_url: The catalog the servers read keys from (default: resolved as usual).

    Raises:
        CatalogError: The catalog cannot be opened.
    """
    from clearsight.api_keys import ApiKeyError, ApiKeyStore, generate_key
    from stack.settings import read_credential, save_credential

    name = platform_key_name()
    key = read_credential(API_KEY_ENV)
    store = ApiKeyStore(catalog_url)
    try:
        state = store.state(key) if key else "revoked"
        if state == "active":
            return key
        if state is None:  # unknown here: register it
            try:
                store.register(name, key, created_by="clearsight")
                return key
            except ApiKeyError:  # an older platform key of this machine holds the name
                pass
        if any(k.name == name and k.active for k in store.list_keys()):
            store.revoke(name)  # its plaintext is gone: nobody can send it any more
        key = generate_key()
        store.register(name, key, created_by="clearsight")
        save_credential(API_KEY_ENV, key)
        return key
    finally:
        store.close()


def _active_deployer() -> Any:
    """The active stack's model deployer (None: the stack has none).

    Raises:
        EndpointNotFoundError: The ZenML store or stack cannot be read.
    """
    from zenml.client import Client

    try:
        return Client().active_stack.model_deployer
    except Exception as error:  # noqa: BLE001 - any store or stack problem means no endpoint
        raise EndpointNotFoundError(f"the ZenML stack cannot be read ({error})") from error


def servers_for(deployer: Any, model_name: str) -> list[Any]:
    """Every server of a model on ``deployer``, local or on Kubernetes, running or not."""
    if hasattr(deployer, "servers_for"):  # our local Seldon deployer
        return list(deployer.servers_for(model_name))
    from stack.seldon.kubernetes import seldon_servers_for

    return seldon_servers_for(deployer, model_name)


def running_server(model_name: str, deployer: Any = None) -> Any | None:
    """The running server of ``model_name`` on the active stack (or ``deployer``), if any.

    Raises:
        EndpointNotFoundError: The ZenML store or stack cannot be read.
    """
    deployer = deployer if deployer is not None else _active_deployer()
    if deployer is None:
        return None
    running = [s for s in servers_for(deployer, model_name) if s.is_running]
    return running[0] if running else None


def server_requires_keys(service: Any) -> bool:
    """Whether a server asks for keys: ours say so; a Kubernetes pod by its environment."""
    config = service.config
    if hasattr(config, "api_keys"):
        return bool(config.api_keys)
    for container in (getattr(config, "spec", None) or {}).get("containers", []):
        for variable in container.get("env", []):
            if variable.get("name") == MODE_ENV and "value" in variable:
                return parse_mode(variable["value"]) is not False
    return True  # a pod without the variable binds every interface: required


def find_endpoint(
    model_name: str, *, url: str | None = None, api_key: str | None = None
) -> Endpoint:
    """The endpoint serving ``model_name`` and the key to send it.

    Args:
        model_name: The served model.
        url: An explicit prediction URL (``CLEARSIGHT_ENDPOINT_URL``), used as is.
        api_key: An explicit key (default: :func:`client_api_key`).

    Raises:
        EndpointNotFoundError: No deployer on the active stack, or no running server.
    """
    key = api_key or client_api_key()
    if url:
        return Endpoint(prediction_url=url, api_key=key)
    deployer = _active_deployer()
    if deployer is None:
        raise EndpointNotFoundError("the active ZenML stack has no model deployer")
    service = running_server(model_name, deployer)
    if service is None or not service.prediction_url:
        raise EndpointNotFoundError(f"no running server serves {model_name}")
    return Endpoint(
        prediction_url=str(service.prediction_url),
        api_key=key,
        keys_required=server_requires_keys(service),
        service=service,
    )


def curl_command(url: str, image: str | None = None, keys_required: bool | None = False) -> str:
    """A ready-to-paste ``curl`` of one image; with keys, the header reads the variable.

    The key itself is never printed: ``$CLEARSIGHT_ENDPOINT_API_KEY`` stands for it.
    """
    image = image or "path/to/image.png"
    header = f'-H "{HEADER}: {SCHEME} ${API_KEY_ENV}" ' if keys_required is not False else ""
    return (
        f"curl -s -X POST -H 'Content-Type: application/json' {header}"
        f'-d "{{\\"binData\\": \\"$(base64 -w0 {image})\\"}}" {url}'
    )


def key_hint() -> str:
    """How to get a key to send, for messages that show the ``curl``."""
    return (
        f"the endpoint requires an API key: export {API_KEY_ENV}=... (yours, or "
        f"`python -m clearsight.api_keys create NAME`; this machine's platform key is in "
        f".state/services/credentials.env)"
    )
