"""Run a pipeline on whichever stack is active and come back when it has finished.

On the embedded stack the local orchestrator runs the steps in this process.
On the production stack ZenML's Airflow orchestrator only writes a DAG file;
Airflow's scheduler runs it. :func:`execute` makes both look the same to
``run.py``: it adds the settings the Airflow stack needs, keeps the DAG file
(which holds a ZenML API token) private, and waits for the run to finish,
printing each step as it ends.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from zenml.client import Client
from zenml.config import DockerSettings
from zenml.enums import ExecutionStatus

from stack.preflight import check_active_stack

LOCAL_IMAGE = "clearsight-project-venv"
DEFAULT_TIMEOUT = float(os.environ.get("CLEARSIGHT_RUN_TIMEOUT", 3600))


class PipelineRunError(RuntimeError):
    """The pipeline run failed (or did not finish in time)."""


def is_airflow_stack() -> bool:
    """Whether the active stack's orchestrator is Airflow."""
    return Client().active_stack_model.components["orchestrator"][0].flavor_name == "airflow"


def _airflow_settings() -> dict[str, Any]:
    # The steps run in the project's virtualenv from the project folder: no
    # image to build, no code to download into one.
    return {
        "docker": DockerSettings(
            skip_build=True,
            parent_image=LOCAL_IMAGE,
            allow_download_from_artifact_store=False,
            allow_download_from_code_repository=False,
            allow_including_files_in_images=False,
        )
    }


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """Create files readable by this user only (the DAG config holds an API token)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def execute(
    pipeline: Any, echo: Callable[[str], None] = print, timeout: float = DEFAULT_TIMEOUT
) -> Any:
    """Run a configured pipeline on the active stack and return its finished run.

    Args:
        pipeline: A pipeline, usually ``some_pipeline.with_options(...)``.
        echo: Where progress lines go.
        timeout: Seconds to wait for an orchestrator that runs asynchronously.

    Returns:
        The run (a ``PipelineRunResponse``), finished.

    Raises:
        PipelineRunError: The run failed or did not finish in time.
    """
    check_active_stack()
    if not is_airflow_stack():
        return pipeline()
    with private_files():
        run = pipeline.with_options(settings=_airflow_settings())()
    echo(f"  submitted to Airflow: run {run.name}; waiting for its DAG run ...")
    return wait_for_run(run.id, echo=echo, timeout=timeout)


def wait_for_run(
    run_id: Any, echo: Callable[[str], None] = print, timeout: float = DEFAULT_TIMEOUT
) -> Any:
    """Poll the ZenML run until it has finished; print each step as it ends."""
    client = Client()
    deadline = time.monotonic() + timeout
    reported: set[str] = set()
    while True:
        run = client.get_pipeline_run(run_id)
        for name, step in run.steps.items():
            if step.status.is_finished and name not in reported:
                reported.add(name)
                took = ""
                if step.start_time and step.end_time:
                    took = f" in {(step.end_time - step.start_time).total_seconds():.1f} s"
                echo(f"    step {name}: {step.status.value}{took}")
        if run.status.is_finished:
            break
        if time.monotonic() > deadline:
            raise PipelineRunError(
                f"Run {run.name} has not finished after {timeout:.0f} s (status "
                f"{run.status.value}). Is Airflow's scheduler running? "
                "Check: python -m stack.services status; the Airflow UI shows the DAG."
            )
        time.sleep(2)
    if run.status != ExecutionStatus.COMPLETED:
        failed = [n for n, s in run.steps.items() if s.status == ExecutionStatus.FAILED]
        raise PipelineRunError(
            f"Run {run.name} {run.status.value}"
            + (f" in step(s) {', '.join(failed)}" if failed else "")
            + f" (Airflow run {run.orchestrator_run_id}). The step logs are in the ZenML "
            "dashboard and the Airflow UI."
        )
    return run
