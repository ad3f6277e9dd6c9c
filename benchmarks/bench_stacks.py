"""Wall time of the same `python run.py` on the embedded and the production stack.

Starts the production services (moto S3, MLflow server, ZenML server, Airflow)
on free loopback ports with all state in a throw-away folder, registers both
stacks there, and times a cold `python run.py --no-cache` (ingest, train, gate,
promote, deploy, smoke test) on each. Your own ZenML state is untouched:

    python benchmarks/bench_stacks.py        # or: make bench-stacks

Needs `make airflow-venv`. Prints one line per stack and the ratio. The
throw-away folder is removed at the end; set CLEARSIGHT_BENCH_KEEP=1 to keep it
(its path is printed) for a look at the services' logs.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return elapsed, result.stdout


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="clearsight-bench-stacks-"))
    (work / "no-repository").mkdir()
    log_port = free_port()
    env = {
        **os.environ,
        "ZENML_CONFIG_PATH": str(work / "zenml"),
        "ZENML_REPOSITORY_PATH": str(work / "no-repository"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_AUTO_OPEN_DASHBOARD": "false",
        "CLEARSIGHT_STATE_DIR": str(work),
        "CLEARSIGHT_CATALOG_URL": f"sqlite:///{work / 'catalog.db'}",
        "CLEARSIGHT_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "CLEARSIGHT_MLFLOW_URI": f"http://127.0.0.1:{free_port()}",
        "CLEARSIGHT_ZENML_URL": f"http://127.0.0.1:{free_port()}",
        "CLEARSIGHT_AIRFLOW_URL": f"http://127.0.0.1:{free_port()}",
        "CLEARSIGHT_AIRFLOW_LOG_PORT": str(log_port),
    }
    env.pop("ZENML_ACTIVE_STACK_ID", None)
    env.pop("ZENML_STORE_URL", None)
    data = work / "digits"
    figures: dict[str, float] = {}
    try:
        run(["-m", "clearsight.sample_data", str(data)], env)
        for stack in ("embedded", "production"):
            if stack == "production":  # the embedded run goes first, with no server at all
                started, _ = run(["-m", "stack.services", "start"], env)
                print(f"services started in {started:.1f} s")
            run(["-m", "stack.register", stack], env)
            elapsed, output = run(["run.py", "--data-dir", str(data), "--no-cache"], env)
            accuracy = re.search(r"accuracy ([0-9.]+)", output)
            figures[stack] = elapsed
            print(
                f"{stack:10} python run.py --no-cache (cold): {elapsed:6.1f} s"
                f"  test accuracy {accuracy.group(1) if accuracy else '?'}"
            )
            run(["-m", "stack.serve_stop"], env)
    finally:
        for module in ("stack.serve_stop", "stack.services"):  # a failed run may leave them up
            args = [module] if module == "stack.serve_stop" else [module, "stop"]
            subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, check=False)
        if os.environ.get("CLEARSIGHT_BENCH_KEEP"):
            print(f"kept {work} (CLEARSIGHT_BENCH_KEEP is set)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"production / embedded: {figures['production'] / figures['embedded']:.2f}x "
        f"on {platform.machine()}, {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
