"""Run ``seldon-core-microservice`` bound to one address (127.0.0.1 by default).

seldon-core 1.19 binds its REST, metrics and gRPC servers to ``0.0.0.0`` with
no option to change it, which exposes a local model server to the whole
network. This launcher makes the same microservice bind to the address in
``CLEARSIGHT_SERVING_HOST`` (``127.0.0.1`` unless set; ``0.0.0.0`` restores
seldon-core's behaviour, as inside a container) and then runs seldon-core's own
``main()`` with the command line unchanged::

    python -m stack.seldon.launch clearsight.seldon_model.ImageClassifier \
        --service-type MODEL --http-port 8000 --grpc-port 9000 --metrics-port 10000

It replaces the host part of the two bind addresses seldon-core builds (the
gunicorn option ``bind`` of the REST and metrics servers, the gRPC server's
address) and nothing else.

When ``CLEARSIGHT_PARENT_PID`` is set (the local Seldon deployer's daemon sets
it to its own PID), a watchdog thread takes the launcher's whole process group
down (SIGTERM, then SIGKILL after a grace period) as soon as that parent dies,
so a killed daemon never leaves the REST, gRPC or metrics servers behind.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

HOST_ENV = "CLEARSIGHT_SERVING_HOST"
PARENT_PID_ENV = "CLEARSIGHT_PARENT_PID"
WATCH_INTERVAL = 1.0
WATCH_GRACE = 20.0
DEFAULT_HOST = "127.0.0.1"
ANY = "0.0.0.0"  # noqa: S104 - the address seldon-core hard-codes, replaced below


def _rebind(address: str, host: str) -> str:
    return host + address[len(ANY) :] if address.startswith(ANY + ":") else address


def bind_to(host: str) -> None:
    """Make seldon-core's servers bind to ``host`` instead of every interface."""
    from seldon_core import gunicorn_utils, microservice

    load_config = gunicorn_utils.StandaloneApplication.load_config

    def load_config_on_host(self: Any) -> None:
        if self.options and "bind" in self.options:
            self.options["bind"] = _rebind(self.options["bind"], host)
        load_config(self)

    gunicorn_utils.StandaloneApplication.load_config = load_config_on_host

    run_grpc_server = microservice._run_grpc_server

    def run_grpc_server_on_host(*args: Any) -> None:
        *head, bind_address = args
        run_grpc_server(*head, _rebind(bind_address, host))

    microservice._run_grpc_server = run_grpc_server_on_host


def _watch_parent(parent: int, grace: float = WATCH_GRACE) -> None:
    """Stop this process group once ``parent`` is gone (the daemon died)."""
    while os.getppid() == parent:
        time.sleep(WATCH_INTERVAL)
    group = os.getpgrp()
    if group != os.getpid():  # not our own group: never signal someone else's
        os._exit(1)
    os.killpg(group, signal.SIGTERM)
    time.sleep(grace)
    os.killpg(group, signal.SIGKILL)


def watch_parent() -> None:
    """Start the watchdog when the daemon told us its PID."""
    value = os.environ.get(PARENT_PID_ENV, "")
    if value.isdigit() and os.getppid() == int(value):
        threading.Thread(
            target=_watch_parent, args=(int(value),), name="parent-watchdog", daemon=True
        ).start()


def main() -> None:
    """Bind to the configured host, then hand over to seldon-core's command line."""
    watch_parent()
    host = os.environ.get(HOST_ENV, DEFAULT_HOST)
    if host != ANY:
        bind_to(host)
    from seldon_core.microservice import main as seldon_main

    seldon_main()


if __name__ == "__main__":
    main()
