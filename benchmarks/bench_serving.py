"""Benchmark the Seldon endpoint against `mlflow models serve` of the same model.

Everything runs on loopback with bounded request counts:

    python benchmarks/bench_serving.py                 # or: make bench-serving
    python benchmarks/bench_serving.py --requests 600 --soak 10000   # the same, spelled out
    python benchmarks/bench_serving.py --prediction-log   # the endpoint with and without its log
    python benchmarks/bench_serving.py --api-keys         # the endpoint with and without API keys

Prints, for each server: single-image latency p50/p99 and requests/s at
concurrency 1, 8 and 32, images/s for batches of 64; then a soak of N requests
at concurrency 16 (5xx count, memory growth); then the memory of each server's
whole process tree with one worker each: number of processes, how many map
TensorFlow, peak and steady RSS and PSS. The model is a Clearsight model
trained briefly on the bundled digits (the figures are about serving, not
accuracy). Targets from issue #4: at least 2x MLflow's throughput, p99 under
50 ms at concurrency 8, 10,000 requests at concurrency 16 with zero 5xx and
no memory growth beyond 10%; from issue #11: the endpoint's memory at most
MLflow's.

Memory: RSS counts a page shared by several processes (TensorFlow's libraries,
pages inherited through fork) once per process; PSS (``Pss`` of
``/proc/<pid>/smaps_rollup``) divides each page among the processes mapping
it, so the tree's PSS counts shared pages once. Peak: the highest sum over the
tree, sampled every 0.25 s from start-up to the end of the load; steady: after
the load, idle for 2 s. The servers run one after the other, and the model is
trained in a child process, so that no other process of the benchmark maps
TensorFlow and shares (lowers) the servers' PSS; other TensorFlow processes on
the machine still do.

``--prediction-log`` measures only the cost of the prediction log (issue #13,
target: p50 and p99 within 10%): two endpoints of the same model, one with
``CLEARSIGHT_PREDICTION_LOG=off`` and one logging to a throw-away SQLite
catalog, take the same single-image requests (the digits' PNG ``binData``;
the digits as 640x480 camera JPEGs with noise, about 60 KB, whose pixel
identity costs the writer a decode; preprocessed tensors) at concurrency 8
in interleaved rounds; the latencies of all rounds are pooled per server, and
the CPU time of each server's process tree (the log writer's included) is
divided by the requests it answered: a figure that other load on the machine
hardly moves.
Before each round the logging server's writer has written everything sent so
far, so its background work does not fall into the other server's round.

The endpoint of the main run requires API keys, as one listening beyond
loopback does: every request sends ``Authorization: Bearer <key>`` (a key made
in the throw-away catalog; the header from :func:`stack.endpoint.auth_headers`,
as every client of the endpoint builds it). ``--api-keys`` measures only their
cost (issue #15): two endpoints of the same model, prediction log off, one
with ``CLEARSIGHT_API_KEYS=off`` and one requiring keys, take the same
single-image requests at concurrency 8 in interleaved rounds, as above.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pss(pid: int) -> int:
    """Proportional set size of one process, in bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def maps_tensorflow(pid: int) -> bool:
    """Whether the process has TensorFlow's native library mapped."""
    try:
        with open(f"/proc/{pid}/maps") as maps:
            return any("libtensorflow" in line for line in maps)
    except OSError:
        return False


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_memory(pid: int) -> tuple[int, int, int]:
    """(processes, RSS, PSS) of the whole process tree under ``pid``."""
    processes = rss = total_pss = 0
    for process in tree(pid):
        try:
            rss += process.memory_info().rss
        except psutil.Error:
            continue
        processes += 1
        total_pss += pss(process.pid)
    return processes, rss, total_pss


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of the tree under ``pid``."""
    total = 0.0
    for process in tree(pid):
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def tree_rss(pid: int) -> int:
    return tree_memory(pid)[1]


class Server:
    def __init__(self, argv: list[str], env: dict[str, str], health: str) -> None:
        self.process = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(health, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            self.stop()
            sys.exit(f"server did not start: {argv}")
        self.peak = 0  # RSS
        self.peak_pss = 0
        self.peak_processes = 0
        self._watch = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self._watch:
            processes, rss, total_pss = tree_memory(self.process.pid)
            self.peak = max(self.peak, rss)
            self.peak_pss = max(self.peak_pss, total_pss)
            self.peak_processes = max(self.peak_processes, processes)
            time.sleep(0.25)

    def rss(self) -> int:
        return tree_rss(self.process.pid)

    def memory(self) -> dict[str, int]:
        """The tree now, with the peaks so far."""
        processes, rss, total_pss = tree_memory(self.process.pid)
        return {
            "processes": processes,
            "tensorflow": sum(maps_tensorflow(p.pid) for p in tree(self.process.pid)),
            "peak_rss": max(self.peak, rss),
            "peak_pss": max(self.peak_pss, total_pss),
            "rss": rss,
            "pss": total_pss,
        }

    def stop(self) -> None:
        self._watch = False
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def load(
    url: str,
    bodies: list[str],
    concurrency: int,
    count: int,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """Send ``count`` requests from ``concurrency`` threads; failures are counted, not fatal.

    A failure is a 5xx answer or a request that got no answer at all
    (connection refused or reset, timeout): both are counted, and the run goes on.
    """
    latencies: list[float] = []
    errors_5xx = 0
    errors_4xx = 0
    connection_errors = 0
    sent_headers = {"Content-Type": "application/json", **(headers or {})}
    lock = threading.Lock()
    session_local = threading.local()

    def one(i: int) -> None:
        nonlocal errors_5xx, errors_4xx, connection_errors
        session = getattr(session_local, "s", None) or requests.Session()
        session_local.s = session
        start = time.perf_counter()
        try:
            response = session.post(
                url,
                data=bodies[i % len(bodies)],
                headers=sent_headers,
                timeout=60,
            )
        except requests.RequestException:
            session_local.s = None  # a broken connection: start afresh
            with lock:
                connection_errors += 1
            return
        elapsed = time.perf_counter() - start
        with lock:
            latencies.append(elapsed)
            if response.status_code >= 500:
                errors_5xx += 1
            elif response.status_code >= 400:
                errors_4xx += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))
    wall = time.perf_counter() - start
    ordered = sorted(latencies) or [float("nan")]
    return {
        "latencies": ordered,
        "rps": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "errors_5xx": errors_5xx,
        "errors_4xx": errors_4xx,
        "connection_errors": connection_errors,
        "failures": errors_5xx + errors_4xx + connection_errors,
    }


def prepare(work: Path) -> None:
    """Train the model and write both servers' model folders and the inputs (child process)."""
    import numpy as np
    import tensorflow as tf

    from clearsight.dataset import build_manifest
    from clearsight.models import build_model, with_temperature
    from clearsight.preprocess import make_dataset, preprocess_batch
    from clearsight.sample_data import write_digits
    from clearsight.serving import ServingConfig, export_model_dir

    tf.keras.utils.set_random_seed(0)
    write_digits(work / "digits")
    manifest, _ = build_manifest(work / "digits")
    index = manifest.label_index()
    items = [(r.uri, index[r.label]) for r in manifest.split("train")]
    data = make_dataset(
        items, lambda u: Path(u).read_bytes(), image_size=32, batch_size=32, training=True
    )
    model = build_model(10, image_size=32)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(data, epochs=3, verbose=0)
    model = with_temperature(model, 1.0)
    folder = export_model_dir(
        model, ServingConfig("bench", "1", manifest.classes, 32), work / "seldon-model"
    )
    # The embedding projection a promoted version is served with: the logging server
    # then computes and logs every answer's full monitoring features, as in production.
    from clearsight.features import EmbeddingProjection, fit_embedding_pca
    from clearsight.models import embedding_model
    from clearsight.serving import MONITORING_FILE

    reference = preprocess_batch([Path(r.uri).read_bytes() for r in manifest.split("train")], 32)
    pca = fit_embedding_pca(embedding_model(model).predict(reference, verbose=0), 5)
    (folder / MONITORING_FILE).write_text(EmbeddingProjection.from_pca(pca).model_dump_json())
    images = [Path(r.uri).read_bytes() for r in manifest.split("test")[:64]]
    (work / "images").mkdir()
    for i, image in enumerate(images):
        (work / "images" / f"{i:02d}.png").write_bytes(image)
    tensors = preprocess_batch(images, 32)
    np.save(work / "tensors.npy", tensors)

    import mlflow
    from mlflow.models import infer_signature

    mlflow.tensorflow.save_model(
        model,
        str(work / "mlflow-model"),
        signature=infer_signature(tensors[:1], model.predict(tensors[:1], verbose=0)),
    )


def bench(
    name: str,
    server: Server,
    url: str,
    single: list[str],
    batch: list[str],
    n: int,
    headers: dict[str, str] | None = None,
):
    """Throughput at concurrency 1, 8, 32 and with batches of 64; returns c=8's figures."""
    results = {}
    load(url, single, 4, 50, headers)  # warm up
    for concurrency in (1, 8, 32):
        r = load(url, single, concurrency, n, headers)
        results[concurrency] = r
        print(
            f"{name:7s} c={concurrency:<3d} {r['rps']:7.1f} req/s"
            f"  p50 {r['p50_ms']:6.1f} ms"
            f"  p99 {r['p99_ms']:6.1f} ms  5xx {r['errors_5xx']}  4xx {r['errors_4xx']}"
            f"  no answer {r['connection_errors']}",
            flush=True,
        )
    b = load(url, batch, 1, 50, headers)
    print(f"{name:7s} batch of 64: {64 * b['rps']:7.1f} images/s", flush=True)
    return results[8]


def photo(png: bytes) -> bytes:
    """A digit as a camera would send it: 640x480 with sensor noise, JPEG quality 90."""
    import io

    import numpy as np
    from PIL import Image

    picture = Image.open(io.BytesIO(png)).convert("RGB").resize((640, 480), Image.BILINEAR)
    noise = np.random.default_rng(len(png)).normal(0, 6, (480, 640, 3))
    pixels = np.clip(np.asarray(picture, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def percentile(ordered: list[float], share: float) -> float:
    return ordered[int(share * (len(ordered) - 1))]


def logged_rows(database: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(database, timeout=30) as connection:
            return connection.execute("SELECT count(*) FROM prediction_log").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def compare_prediction_log(work: Path, bodies: dict[str, list[str]], n: int, rounds: int) -> None:
    """p50/p99 at concurrency 8 with and without the prediction log, interleaved rounds."""
    from stack.seldon.service import microservice_command

    database = work / "catalog.db"
    settings = {
        "off": {"CLEARSIGHT_PREDICTION_LOG": "off"},
        "on": {
            "CLEARSIGHT_PREDICTION_LOG": "on",
            "CLEARSIGHT_CATALOG_URL": f"sqlite:///{database}",
        },
    }
    servers: dict[str, tuple[Server, str, str]] = {}
    sent = 0  # requests to the logging server, one image each

    def drained(timeout: float = 120) -> float:
        started = time.perf_counter()
        while logged_rows(database) < sent and time.perf_counter() - started < timeout:
            time.sleep(0.05)
        return time.perf_counter() - started

    try:
        for mode, extra in settings.items():
            http, metrics = free_port(), free_port()
            env = {
                **os.environ,
                "CLEARSIGHT_MODEL_DIR": str(work / "seldon-model"),
                "PYTHONPATH": str(ROOT),
                **extra,
            }
            server = Server(
                microservice_command(http, free_port(), metrics, workers=1),
                env,
                f"http://127.0.0.1:{http}/health/ping",
            )
            servers[mode] = (
                server,
                f"http://127.0.0.1:{http}/api/v1.0/predictions",
                f"http://127.0.0.1:{metrics}/metrics",
            )
        for mode, (_, url, _) in servers.items():
            for payload in bodies.values():
                load(url, payload, 4, 50)  # warm up
                sent += 50 if mode == "on" else 0
        drained()
        pooled: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], float] = {}  # server CPU seconds, the writer's included
        lag: list[float] = []
        for round_ in range(rounds):
            order = ("off", "on") if round_ % 2 == 0 else ("on", "off")
            for mode in order:
                server, url, _ = servers[mode]
                for payload, payload_bodies in bodies.items():
                    before = tree_cpu(server.process.pid)
                    r = load(url, payload_bodies, 8, n)
                    pooled.setdefault((mode, payload), []).extend(r["latencies"])
                    if r["failures"]:
                        print(f"  {mode} {payload}: {r['failures']} failures", flush=True)
                    if mode == "on":
                        sent += n
                        lag.append(drained())
                    used = tree_cpu(server.process.pid) - before
                    cpu[(mode, payload)] = cpu.get((mode, payload), 0.0) + used
        print(
            f"prediction log: c=8, {rounds} interleaved rounds of {n} single-image requests "
            f"per payload and server, latencies pooled",
            flush=True,
        )
        print(f"  {'payload':12s} {'log':4s} {'p50 ms':>7s} {'p99 ms':>7s} {'CPU ms/req':>10s}")
        for payload in bodies:
            figures = {}
            for mode in ("off", "on"):
                ordered = sorted(pooled[(mode, payload)])
                figures[mode] = (
                    percentile(ordered, 0.5) * 1000,
                    percentile(ordered, 0.99) * 1000,
                    cpu[(mode, payload)] * 1000 / len(ordered),
                )
                print(
                    f"  {payload:12s} {mode:4s} {figures[mode][0]:7.2f} {figures[mode][1]:7.2f} "
                    f"{figures[mode][2]:10.2f}",
                    flush=True,
                )
            print(
                f"  {payload:12s} on/off: p50 {figures['on'][0] / figures['off'][0]:.2f}x, "
                f"p99 {figures['on'][1] / figures['off'][1]:.2f}x, "
                f"CPU {figures['on'][2] - figures['off'][2]:+.2f} ms per request",
                flush=True,
            )
        dropped = [
            line
            for line in requests.get(servers["on"][2], timeout=10).text.splitlines()
            if line.startswith("clearsight_prediction_log_dropped_total")
        ]
        print(
            f"  logged rows {logged_rows(database)} of {sent} requests answered; dropped: "
            f"{', '.join(dropped) or 'none'}; writer caught up within "
            f"{max(lag):.2f} s after a round",
            flush=True,
        )
    finally:
        for server, _, _ in servers.values():
            server.stop()


def api_key(catalog: Path, name: str = "bench") -> str:
    """A key made in the throw-away catalog ``catalog`` (SQLite file)."""
    import logging

    from clearsight.api_keys import ApiKeyStore

    for quiet in ("alembic", "clearsight.migrations"):  # the new catalog's migrations
        logging.getLogger(quiet).setLevel(logging.WARNING)
    store = ApiKeyStore(f"sqlite:///{catalog}")
    try:
        return store.create(name)
    finally:
        store.close()


def check_cost(catalog: Path, key: str, calls: int = 20_000) -> None:
    """The key check of one request in this process: cached, and read from the catalog."""
    from clearsight.api_keys import ApiKeyVerifier, bearer_token

    header = f"Bearer {key}"
    cached = ApiKeyVerifier(f"sqlite:///{catalog}", ttl=3600)
    cached.verify(key)  # open the store, fill the cache
    start = time.perf_counter()
    for _ in range(calls):
        cached.verify(bearer_token(header))
    hit = (time.perf_counter() - start) / calls
    fresh = ApiKeyVerifier(f"sqlite:///{catalog}", ttl=0)  # every check reads the catalog
    fresh.verify(key)
    start = time.perf_counter()
    for _ in range(200):
        fresh.verify(bearer_token(header))
    miss = (time.perf_counter() - start) / 200
    print(
        f"key check per request: {hit * 1e6:.1f} us cached (every request within the TTL), "
        f"{miss * 1e3:.2f} ms when read from the SQLite catalog (once per key and TTL)",
        flush=True,
    )


def compare_api_keys(work: Path, bodies: dict[str, list[str]], n: int, rounds: int) -> None:
    """p50/p99 and CPU per request at concurrency 8 without and with API keys, interleaved."""
    from stack.endpoint import auth_headers
    from stack.seldon.service import microservice_command

    catalog = work / "catalog.db"
    key = api_key(catalog)
    headers = {"off": {}, "required": auth_headers(key)}
    check_cost(catalog, key)
    servers: dict[str, tuple[Server, str]] = {}
    try:
        for mode in headers:
            http = free_port()
            env = {
                **os.environ,
                "CLEARSIGHT_MODEL_DIR": str(work / "seldon-model"),
                "PYTHONPATH": str(ROOT),
                "CLEARSIGHT_PREDICTION_LOG": "off",
                "CLEARSIGHT_API_KEYS": mode,
                "CLEARSIGHT_CATALOG_URL": f"sqlite:///{catalog}",
            }
            server = Server(
                microservice_command(http, free_port(), free_port(), workers=1),
                env,
                f"http://127.0.0.1:{http}/health/ping",
            )
            servers[mode] = (server, f"http://127.0.0.1:{http}/api/v1.0/predictions")
        for mode, (_, url) in servers.items():
            for payload in bodies.values():
                load(url, payload, 4, 50, headers[mode])  # warm up
        pooled: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], float] = {}
        failures = 0
        for round_ in range(rounds):
            order = ("off", "required") if round_ % 2 == 0 else ("required", "off")
            for mode in order:
                server, url = servers[mode]
                for payload, payload_bodies in bodies.items():
                    before = tree_cpu(server.process.pid)
                    r = load(url, payload_bodies, 8, n, headers[mode])
                    failures += r["failures"]
                    pooled.setdefault((mode, payload), []).extend(r["latencies"])
                    used = tree_cpu(server.process.pid) - before
                    cpu[(mode, payload)] = cpu.get((mode, payload), 0.0) + used
        print(
            f"API keys: c=8, {rounds} interleaved rounds of {n} single-image requests per "
            f"payload and server, latencies pooled; failures (4xx, 5xx, no answer): {failures}",
            flush=True,
        )
        print(f"  {'payload':12s} {'keys':8s} {'p50 ms':>7s} {'p99 ms':>7s} {'CPU ms/req':>10s}")
        for payload in bodies:
            figures = {}
            for mode in headers:
                ordered = sorted(pooled[(mode, payload)])
                figures[mode] = (
                    percentile(ordered, 0.5) * 1000,
                    percentile(ordered, 0.99) * 1000,
                    cpu[(mode, payload)] * 1000 / len(ordered),
                )
                print(
                    f"  {payload:12s} {mode:8s} {figures[mode][0]:7.2f} {figures[mode][1]:7.2f} "
                    f"{figures[mode][2]:10.2f}",
                    flush=True,
                )
            on, off = figures["required"], figures["off"]
            print(
                f"  {payload:12s} required/off: p50 {on[0] / off[0]:.2f}x, "
                f"p99 {on[1] / off[1]:.2f}x, CPU {on[2] - off[2]:+.2f} ms per request",
                flush=True,
            )
    finally:
        for server, _ in servers.values():
            server.stop()


def steady(server: Server) -> dict[str, int]:
    time.sleep(2)
    return server.memory()


def mib(value: int) -> str:
    return f"{value / 2**20:,.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600, help="requests per level")
    parser.add_argument("--soak", type=int, default=10000, help="soak requests at c=16")
    parser.add_argument(
        "--prediction-log",
        action="store_true",
        help="only compare the endpoint with and without its prediction log (p50/p99 at c=8)",
    )
    parser.add_argument(
        "--api-keys",
        action="store_true",
        help="only compare the endpoint without and with API keys (p50/p99 at c=8)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds for --prediction-log, --api-keys"
    )
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
        return

    import numpy as np

    from stack.seldon.service import microservice_command

    work = Path(tempfile.mkdtemp(prefix="clearsight-serving-bench-"))
    servers: list[Server] = []
    memory: dict[str, dict[str, int]] = {}
    c8: dict[str, dict[str, float]] = {}
    try:
        # Trained in a child: this process must not map TensorFlow (it would share,
        # and so lower, the servers' PSS).
        subprocess.run(
            [sys.executable, __file__, "--prepare", str(work)],
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        tensors = np.load(work / "tensors.npy")
        images = [p.read_bytes() for p in sorted((work / "images").glob("*.png"))]
        if args.api_keys:
            print(
                f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
                f"{platform.python_version()}; model: small CNN, 32x32x3, 10 classes",
                flush=True,
            )
            compare_api_keys(
                work,
                {
                    "PNG binData": [
                        json.dumps({"binData": base64.b64encode(i).decode()}) for i in images
                    ],
                    "tensor": [
                        json.dumps({"data": {"ndarray": t[None].tolist()}}) for t in tensors
                    ],
                },
                args.requests,
                args.rounds,
            )
            return
        if args.prediction_log:
            print(
                f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
                f"{platform.python_version()}; model: small CNN, 32x32x3, 10 classes",
                flush=True,
            )
            compare_prediction_log(
                work,
                {
                    "PNG binData": [
                        json.dumps({"binData": base64.b64encode(i).decode()}) for i in images
                    ],
                    "JPEG 640x480": [
                        json.dumps({"binData": base64.b64encode(photo(i)).decode()})
                        for i in images[:16]
                    ],
                    "tensor": [
                        json.dumps({"data": {"ndarray": t[None].tolist()}}) for t in tensors
                    ],
                },
                args.requests,
                args.rounds,
            )
            return

        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; model: small CNN, 32x32x3, 10 classes",
            flush=True,
        )
        from stack.endpoint import auth_headers

        http = free_port()
        env = {
            **os.environ,
            "CLEARSIGHT_MODEL_DIR": str(work / "seldon-model"),
            "PYTHONPATH": str(ROOT),
            # The prediction log is on by default: it goes to a throw-away catalog,
            # which holds the API key the requests send too.
            "CLEARSIGHT_CATALOG_URL": f"sqlite:///{work / 'catalog.db'}",
            "CLEARSIGHT_API_KEYS": "required",
        }
        keyed = auth_headers(api_key(work / "catalog.db"))
        seldon = Server(
            microservice_command(http, free_port(), free_port(), workers=1),
            env,
            f"http://127.0.0.1:{http}/health/ping",
        )
        servers.append(seldon)
        seldon_url = f"http://127.0.0.1:{http}/api/v1.0/predictions"
        seldon_single = [json.dumps({"data": {"ndarray": t[None].tolist()}}) for t in tensors]
        seldon_png = [json.dumps({"binData": base64.b64encode(i).decode()}) for i in images]
        seldon_batch = [json.dumps({"data": {"ndarray": tensors.tolist()}})]
        c8["seldon"] = bench(
            "seldon", seldon, seldon_url, seldon_single, seldon_batch, args.requests, keyed
        )
        r = load(seldon_url, seldon_png, 8, args.requests, keyed)
        print(
            f"seldon  c=8 PNG binData (decode+preprocess in server): {r['rps']:.1f} req/s, "
            f"p99 {r['p99_ms']:.1f} ms",
            flush=True,
        )
        memory["seldon"] = steady(seldon)
        before = seldon.rss()
        soak = load(seldon_url, seldon_png, 16, args.soak, keyed)
        after = seldon.rss()
        print(
            f"seldon  soak {args.soak} requests c=16: 5xx {soak['errors_5xx']}, "
            f"no answer {soak['connection_errors']}, "
            f"{soak['rps']:.1f} req/s, RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB "
            f"({100 * (after - before) / before:+.1f}%)",
            flush=True,
        )
        memory["seldon"].update({k: v for k, v in seldon.memory().items() if k.startswith("peak")})
        seldon.stop()

        port = free_port()
        mlflow_server = Server(
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                str(work / "mlflow-model"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "--env-manager",
                "local",
                "-w",
                "1",
            ],
            {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
            f"http://127.0.0.1:{port}/ping",
        )
        servers.append(mlflow_server)
        mlflow_url = f"http://127.0.0.1:{port}/invocations"
        mlflow_single = [json.dumps({"inputs": t[None].tolist()}) for t in tensors]
        mlflow_batch = [json.dumps({"inputs": tensors.tolist()})]
        c8["mlflow"] = bench(
            "mlflow", mlflow_server, mlflow_url, mlflow_single, mlflow_batch, args.requests
        )
        memory["mlflow"] = steady(mlflow_server)
        mlflow_server.stop()

        print("memory of the whole process tree, 1 worker each (PSS: shared pages once):")
        print(
            f"  {'server':7s} {'processes':>9s} {'with TF':>7s} {'peak RSS':>10s} "
            f"{'peak PSS':>10s} {'steady RSS':>10s} {'steady PSS':>10s}"
        )
        for name, m in memory.items():
            print(
                f"  {name:7s} {m['processes']:>9d} {m['tensorflow']:>7d} "
                f"{mib(m['peak_rss']):>10s} {mib(m['peak_pss']):>10s} "
                f"{mib(m['rss']):>10s} {mib(m['pss']):>10s}"
            )
        print(
            f"peak RSS: seldon {mib(memory['seldon']['peak_rss'])}, "
            f"mlflow {mib(memory['mlflow']['peak_rss'])}; "
            f"peak PSS: seldon {mib(memory['seldon']['peak_pss'])}, "
            f"mlflow {mib(memory['mlflow']['peak_pss'])}"
        )
        ratio = c8["seldon"]["rps"] / c8["mlflow"]["rps"]
        print(f"throughput ratio seldon/mlflow at c=8: {ratio:.2f}x")
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
