"""Benchmark ingestion and training on the bundled digits; prints the figures.

Runs everything in a throw-away ZenML config so your own runs are untouched:

    python benchmarks/bench_pipelines.py            # or: make bench
    python benchmarks/bench_pipelines.py --repeat 3 # ingestion timed 3 times

Prints: ingestion images/s (validation + hashing, and storing by content),
cold and warm `python run.py` wall time (ingest, train, gate, promote),
training step wall time, the test accuracy the default configuration reaches
(target: at least 0.97), the promote pipeline's wall time and the wall time of
`python run.py rollback` (target: under 30 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(tempfile.mkdtemp(prefix="clearsight-bench-"))
os.environ["ZENML_CONFIG_PATH"] = str(WORK / "zenml")
# No ZenML repository: run from the checkout, ZenML would otherwise find its .zen
# and write the bench's active stack (an id of the throw-away store) into
# .zen/config.yaml, leaving your own runs on ZenML's empty default stack.
(WORK / "no-repository").mkdir()
os.environ["ZENML_REPOSITORY_PATH"] = str(WORK / "no-repository")
os.environ["ZENML_ANALYTICS_OPT_IN"] = "false"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
os.environ["CLEARSIGHT_STATE_DIR"] = str(WORK)
os.environ["CLEARSIGHT_CATALOG_URL"] = f"sqlite:///{WORK / 'catalog.db'}"
for variable in ("ZENML_ACTIVE_STACK_ID", "ZENML_STORE_URL"):
    os.environ.pop(variable, None)
sys.path.insert(0, str(ROOT))

from clearsight.dataset import build_manifest  # noqa: E402
from clearsight.sample_data import write_digits  # noqa: E402
from clearsight.storage import ContentStore, LocalFileSystem  # noqa: E402


def timed_run(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return elapsed, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="ingestion repetitions")
    args = parser.parse_args()
    data = WORK / "digits"
    write_digits(data)
    try:
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}"
        )
        scan_times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            manifest, _ = build_manifest(data)
            scan_times.append(time.perf_counter() - start)
        n = len(manifest.records)
        print(
            f"ingest: validate+hash {n} images: {n / min(scan_times):,.0f} images/s "
            f"(best of {args.repeat})"
        )
        store = ContentStore(str(WORK / "store"), LocalFileSystem())
        start = time.perf_counter()
        store.store_manifest(manifest)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        _, uploaded, _ = store.store_manifest(manifest)
        warm = time.perf_counter() - start
        print(
            f"ingest: store by content (local disk): {n / cold:,.0f} images/s; "
            f"re-store {n / warm:,.0f} images/s ({uploaded} uploaded)"
        )

        timed_run("-m", "stack.register")
        cold_s, cold_out = timed_run("run.py", "--data-dir", str(data))
        warm_s, _ = timed_run("run.py", "--data-dir", str(data))
        accuracy = re.search(r"test metrics\s+accuracy ([0-9.]+)", cold_out).group(1)

        from zenml.client import Client

        runs = Client().list_pipeline_runs(pipeline_name="train", sort_by="asc:created", size=10)
        first = runs.items[0]
        step = Client().get_pipeline_run(first.id).steps["train_model"]
        train_s = (step.end_time - step.start_time).total_seconds()
        print(f"train: train_model step wall time {train_s:.1f} s (default config)")
        print(f"train: test accuracy {accuracy} (target >= 0.97)")
        print(f"run.py cold (empty store, ingest+train+promote): {cold_s:.1f} s")
        print(f"run.py warm (nothing changed, cached):     {warm_s:.1f} s")
        promotions = (
            Client()
            .list_pipeline_runs(pipeline_name="promote", sort_by="asc:created", size=10)
            .items
        )
        promote_s = (promotions[0].end_time - promotions[0].start_time).total_seconds()
        print(f"promote pipeline (features, Evidently, gate): {promote_s:.1f} s")
        rollback_s, rollback_out = timed_run("run.py", "rollback")
        rolled = [line for line in rollback_out.splitlines() if line.startswith("Rolled back")]
        print(f"run.py rollback (whole command, incl. redeploy check): {rollback_s:.1f} s")
        print("  " + (rolled[0] if rolled else rollback_out.strip()[-200:]))
    finally:
        from zenml.client import Client

        deployer = Client().active_stack.model_deployer
        if deployer is not None and hasattr(deployer, "servers_for"):
            for service in deployer.servers_for("image-classifier"):
                deployer.delete_model_server(service.uuid, force=True)
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
