"""Run ``seldon-core-microservice`` bound to one address (127.0.0.1 by default).

seldon-core 1.19 binds its REST, metrics and gRPC servers to ``0.0.0.0`` with
no option to change it, which exposes a local model server to the whole
network. This launcher makes the same microservice bind to the address in
``CLEARSIGHT_SERVING_HOST`` (``127.0.0.1`` unless set; ``0.0.0.0`` restores
seldon-core's behaviour, as inside a container; the variable is set for the
model class, which requires API keys unless the address is a loopback one) and
then runs seldon-core's own ``main()`` with the command line unchanged::

    python -m stack.seldon.launch clearsight.seldon_model.ImageClassifier \
        --service-type MODEL --http-port 8000 --grpc-port 11000 --metrics-port 10000

It replaces the host part of the two bind addresses seldon-core builds (the
gunicorn option ``bind`` of the REST and metrics servers, the gRPC server's
address) and nothing else.

Only the processes that predict load TensorFlow, and only when they need it.
seldon-core 1.19 imports TensorFlow as soon as it is imported itself (its
``imports_helper`` probes for ``tftensor`` support), and the microservice forks
every server from the launcher: the launcher (which is also gunicorn's REST
master), the multiprocessing manager of its metrics store, the gRPC parent and
worker and the metrics server's master and worker all mapped TensorFlow (about
2.5 GB of RSS for the tree against 1 GB for ``mlflow models serve``).
:func:`defer_tensorflow` makes seldon-core import TensorFlow on first use of a
``tftensor`` instead (same conversions, ``tf.make_ndarray`` /
``tf.make_tensor_proto``), and the gRPC server process skips seldon-core's
eager ``load()`` at start-up: the model class loads on its first request
(``ImageClassifier.predict_raw`` does), so TensorFlow is mapped only by the
gunicorn workers (which call ``load()`` after the fork) and, once it has
answered a gRPC call, the gRPC worker. When the REST server ends (stopped, or
its worker failed to boot), the launcher stops the other servers and exits.

When ``CLEARSIGHT_PARENT_PID`` is set (the local Seldon deployer's daemon sets
it to its own PID), a watchdog thread takes the launcher's whole process group
down (SIGTERM, then SIGKILL after a grace period) as soon as that parent dies,
so a killed daemon never leaves the REST, gRPC or metrics servers behind.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import signal
import sys
import threading
import time
import types
from pathlib import Path
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


class _LazyTensorFlow(types.ModuleType):
    """Stands for ``tensorflow`` in ``seldon_core.utils``; imports it on first use."""

    def __getattr__(self, name: str) -> Any:
        import tensorflow

        return getattr(tensorflow, name)


def _tensor_proto(*args: Any, **kwargs: Any) -> Any:
    """``tensorflow.core.framework.tensor_pb2.TensorProto(...)``, imported when called."""
    from tensorflow.core.framework.tensor_pb2 import TensorProto

    return TensorProto(*args, **kwargs)


# seldon-core's copies of TensorFlow's tensor protos, in dependency order.
_TF_PROTOS = ("types", "tensor_shape", "resource_handle", "tensor")
_SELDON_TF_PROTOS = "seldon_core.proto.tensorflow.core.framework"


def _serialized_proto(pb2_file: Path) -> bytes:
    """The serialized FileDescriptorProto a generated ``*_pb2.py`` adds to the pool."""
    for node in ast.walk(ast.parse(pb2_file.read_text(), str(pb2_file))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, bytes)
        ):
            return node.args[0].value
    raise LookupError(f"no serialized descriptor in {pb2_file}")


def _tensorflow_protos(tf_dir: Path) -> dict[str, bytes] | None:
    """TensorFlow's own tensor protos, read from its files without importing it."""
    from google.protobuf import descriptor_pb2

    try:
        protos = {
            name: _serialized_proto(tf_dir / "core" / "framework" / f"{name}_pb2.py")
            for name in _TF_PROTOS
        }
    except (OSError, SyntaxError, LookupError):
        return None
    known = {f"tensorflow/core/framework/{name}.proto" for name in _TF_PROTOS}
    for serialized in protos.values():
        if not set(descriptor_pb2.FileDescriptorProto.FromString(serialized).dependency) <= known:
            return None  # a TensorFlow whose protos need more: let seldon-core import it
    return protos


def _proto_module(name: str, serialized: bytes) -> types.ModuleType:
    """What a generated ``tensorflow/core/framework/<name>_pb2.py`` builds."""
    from google.protobuf import descriptor_pool
    from google.protobuf.internal import builder

    module = types.ModuleType(f"{_SELDON_TF_PROTOS}.{name}_pb2")
    namespace = module.__dict__
    namespace["DESCRIPTOR"] = descriptor_pool.Default().AddSerializedFile(serialized)
    builder.BuildMessageAndEnumDescriptors(namespace["DESCRIPTOR"], namespace)
    builder.BuildTopDescriptorsAndMessages(
        namespace["DESCRIPTOR"], f"tensorflow.core.framework.{name}_pb2", namespace
    )
    return module


def defer_tensorflow() -> bool:
    """Make seldon-core import TensorFlow on first ``tftensor`` use, not when imported.

    seldon-core decides at import whether TensorFlow is there
    (``seldon_core.imports_helper`` imports it), then imports it in
    ``seldon_core.utils`` and uses TensorFlow's own tensor protos instead of its
    older copies (``seldon_core.proto.tensorflow.core.framework``): both
    register ``tensorflow/core/framework/*.proto`` in protobuf's default pool,
    and a later TensorFlow import fails on a pool holding seldon-core's copies.
    So this registers TensorFlow's descriptors (read from its ``*_pb2.py``
    files, nothing of TensorFlow imported) under seldon-core's module names,
    tells seldon-core that TensorFlow is present, and gives ``seldon_core.utils``
    a ``tf`` and a ``TensorProto`` that import TensorFlow when first used.
    Importing TensorFlow later re-registers the identical descriptors (allowed).

    Must run before anything imports seldon-core's protos. Returns whether
    seldon-core was set up lazily (False: nothing changed; TensorFlow is not
    installed, or seldon-core or TensorFlow are already imported).
    """
    if any(name in sys.modules for name in ("seldon_core.proto", "tensorflow")):
        return False
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return False  # seldon-core's own behaviour: no tftensor support
    protos = _tensorflow_protos(Path(list(spec.submodule_search_locations)[0]))
    if protos is None:
        return False
    import seldon_core

    helper = types.ModuleType("seldon_core.imports_helper")
    helper._TF_PRESENT = False  # type: ignore[attr-defined]
    sys.modules[helper.__name__] = helper
    seldon_core.imports_helper = helper  # type: ignore[attr-defined]
    framework = importlib.import_module(_SELDON_TF_PROTOS)  # nothing shadowed: TF absent
    for name, serialized in protos.items():
        module = _proto_module(name, serialized)
        sys.modules[module.__name__] = module
        setattr(framework, f"{name}_pb2", module)
    import seldon_core.utils as utils

    helper._TF_PRESENT = utils._TF_PRESENT = True  # type: ignore[attr-defined]
    utils.tf = _LazyTensorFlow("tensorflow")  # type: ignore[attr-defined]
    utils.TensorProto = _tensor_proto  # type: ignore[attr-defined]
    return True


def load_on_first_request() -> None:
    """Skip seldon-core's eager ``load()`` in the gRPC server process.

    seldon-core's ``_run_grpc_server`` calls ``user_object.load()`` before it
    serves; the model class loads itself on its first request instead
    (``ImageClassifier.predict_raw``), so a gRPC worker that never answers
    keeps TensorFlow out of memory.
    """
    from seldon_core import microservice

    run_grpc_server = microservice._run_grpc_server

    def run_grpc_server_lazily(user_object: Any, *rest: Any) -> None:
        if "load" not in vars(user_object):

            def skip_start_up_load() -> None:
                del user_object.load  # later calls reach the class's own load()

            user_object.load = skip_start_up_load
        run_grpc_server(user_object, *rest)

    microservice._run_grpc_server = run_grpc_server_lazily


def end_with_the_rest_server() -> None:
    """Stop the gRPC and metrics servers as soon as the REST server has ended.

    seldon-core runs gunicorn's REST master in the launcher and then waits for
    the gRPC server process, which never ends on its own. A REST server that
    fails to start (a model that does not load: its worker fails to boot) would
    leave the launcher waiting forever now that the gRPC worker no longer loads
    the model (and died of it) at start-up; so the launcher takes its process
    group down and exits.
    """
    from seldon_core import microservice

    start_servers = microservice.start_servers

    def start_servers_ending_together(rest_server: Any, *others: Any) -> None:
        def rest_then_the_rest() -> None:
            try:
                rest_server()
            finally:
                _stop_other_servers()

        start_servers(rest_then_the_rest, *others)

    microservice.start_servers = start_servers_ending_together


def _stop_other_servers() -> None:
    import multiprocessing

    if os.getpgrp() == os.getpid():  # our own group: every server, grandchildren too
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.killpg(os.getpgrp(), signal.SIGTERM)
    else:
        for child in multiprocessing.active_children():
            child.terminate()


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
    defer_tensorflow()
    load_on_first_request()
    end_with_the_rest_server()
    host = os.environ.get(HOST_ENV, DEFAULT_HOST)
    # The model class reads it: a server on loopback answers without API keys by default.
    os.environ[HOST_ENV] = host
    if host != ANY:
        bind_to(host)
    from seldon_core.microservice import main as seldon_main

    seldon_main()


if __name__ == "__main__":
    main()
