"""Benchmark the Seldon endpoint against `mlflow models serve` of the same model.

Everything runs on loopback with bounded request counts:

    python benchmarks/bench_serving.py                 # or: make bench-serving
    python benchmarks/bench_serving.py --requests 600 --soak 10000   # the same, spelled out

Prints, for each server: single-image latency p50/p99 and requests/s at
concurrency 1, 8 and 32, images/s for batches of 64, and the server's peak
memory (RSS of its whole process tree); then a soak of N requests at
concurrency 16 (5xx count, memory growth). The model is a Clearsight model
trained briefly on the bundled digits (the figures are about serving, not
accuracy). Targets from issue #4: at least 2x MLflow's throughput, p99 under
50 ms at concurrency 8, 10,000 requests at concurrency 16 with zero 5xx and
no memory growth beyond 10%.
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


def tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return 0


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
        self.peak = 0
        self._watch = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self._watch:
            self.peak = max(self.peak, tree_rss(self.process.pid))
            time.sleep(0.2)

    def rss(self) -> int:
        return tree_rss(self.process.pid)

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


def load(url: str, bodies: list[str], concurrency: int, count: int) -> dict[str, float]:
    """Send ``count`` requests from ``concurrency`` threads; failures are counted, not fatal.

    A failure is a 5xx answer or a request that got no answer at all
    (connection refused or reset, timeout): both are counted, and the run goes on.
    """
    latencies: list[float] = []
    errors_5xx = 0
    connection_errors = 0
    lock = threading.Lock()
    session_local = threading.local()

    def one(i: int) -> None:
        nonlocal errors_5xx, connection_errors
        session = getattr(session_local, "s", None) or requests.Session()
        session_local.s = session
        start = time.perf_counter()
        try:
            response = session.post(
                url,
                data=bodies[i % len(bodies)],
                headers={"Content-Type": "application/json"},
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

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))
    wall = time.perf_counter() - start
    ordered = sorted(latencies) or [float("nan")]
    return {
        "rps": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "errors_5xx": errors_5xx,
        "connection_errors": connection_errors,
        "failures": errors_5xx + connection_errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600, help="requests per level")
    parser.add_argument("--soak", type=int, default=10000, help="soak requests at c=16")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from clearsight.dataset import build_manifest
    from clearsight.models import build_model, with_temperature
    from clearsight.preprocess import make_dataset, preprocess_batch
    from clearsight.sample_data import write_digits
    from clearsight.serving import ServingConfig, export_model_dir
    from stack.seldon.service import microservice_command

    work = Path(tempfile.mkdtemp(prefix="clearsight-serving-bench-"))
    servers: list[Server] = []
    try:
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
        images = [Path(r.uri).read_bytes() for r in manifest.split("test")[:64]]
        tensors = preprocess_batch(images, 32)

        import mlflow
        from mlflow.models import infer_signature

        mlflow_dir = work / "mlflow-model"
        mlflow.tensorflow.save_model(
            model,
            str(mlflow_dir),
            signature=infer_signature(tensors[:1], model.predict(tensors[:1], verbose=0)),
        )

        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; model: small CNN, 32x32x3, 10 classes"
        )
        results = {}
        http = free_port()
        env = {**os.environ, "CLEARSIGHT_MODEL_DIR": str(folder), "PYTHONPATH": str(ROOT)}
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

        port = free_port()
        mlflow_server = Server(
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                str(mlflow_dir),
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

        for name, url, single, batch in (
            ("seldon", seldon_url, seldon_single, seldon_batch),
            ("mlflow", mlflow_url, mlflow_single, mlflow_batch),
        ):
            load(url, single, 4, 50)  # warm up
            for concurrency in (1, 8, 32):
                r = load(url, single, concurrency, args.requests)
                results[(name, concurrency)] = r
                print(
                    f"{name:7s} c={concurrency:<3d} {r['rps']:7.1f} req/s"
                    f"  p50 {r['p50_ms']:6.1f} ms"
                    f"  p99 {r['p99_ms']:6.1f} ms  5xx {r['errors_5xx']}"
                    f"  no answer {r['connection_errors']}"
                )
            b = load(url, batch, 1, 50)
            print(f"{name:7s} batch of 64: {64 * b['rps']:7.1f} images/s")
        r = load(seldon_url, seldon_png, 8, args.requests)
        print(
            f"seldon  c=8 PNG binData (decode+preprocess in server): {r['rps']:.1f} req/s, "
            f"p99 {r['p99_ms']:.1f} ms"
        )
        before = seldon.rss()
        soak = load(seldon_url, seldon_png, 16, args.soak)
        after = seldon.rss()
        print(
            f"seldon  soak {args.soak} requests c=16: 5xx {soak['errors_5xx']}, "
            f"no answer {soak['connection_errors']}, "
            f"{soak['rps']:.1f} req/s, RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB "
            f"({100 * (after - before) / before:+.1f}%)"
        )
        print(
            f"peak RSS: seldon {seldon.peak / 2**20:.0f} MiB, "
            f"mlflow {mlflow_server.peak / 2**20:.0f} MiB"
        )
        ratio = results[("seldon", 8)]["rps"] / results[("mlflow", 8)]["rps"]
        print(f"throughput ratio seldon/mlflow at c=8: {ratio:.2f}x")
        del np, tf
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
