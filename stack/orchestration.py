"""Run a pipeline on whichever stack is active and come back when it has finished.

On the embedded stack the local orchestrator runs the steps in this process.
On the production stack ZenML's Airflow orchestrator only writes a DAG file;
Airflow's scheduler runs it. :func:`execute` makes both look the same to
``run.py``: it adds the settings the Airflow stack needs, keeps the DAG file
private (it holds no ZenML credential: the tasks authenticate with the API key
of a service account, see :mod:`stack.zenml_server`), and waits for the run to
finish, printing each step as it ends; a run whose tasks the ZenML server
refused says so, with the fix.
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


def _orchestrator_configuration() -> dict[str, Any]:
    component = Client().active_stack_model.components["orchestrator"][0]
    return component.configuration or {}


def uses_bash_operator() -> bool:
    """Whether the active Airflow orchestrator runs steps with our BashOperator generator.

    ``CLEARSIGHT_AIRFLOW_OPERATOR=docker`` or ``kubernetes_pod`` at registration
    keeps ZenML's own generator, which needs an image built for the steps.
    """
    from stack.register import BASH_OPERATOR, DAG_GENERATOR

    config = _orchestrator_configuration()
    return (
        config.get("operator") == BASH_OPERATOR
        and config.get("custom_dag_generator") == DAG_GENERATOR
    )


def _airflow_settings() -> dict[str, Any]:
    """Settings of a run on the Airflow stack (none but ZenML's own for a container operator)."""
    if not uses_bash_operator():
        return {}
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
    """Create files readable by this user only (the DAG config: its tasks' environment)."""
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
        try:
            return pipeline()
        except RuntimeError as error:
            if "Pipeline run has failed" not in str(error):
                raise
            raise PipelineRunError(
                f"{error}. The step's error is logged above and in the ZenML dashboard."
            ) from None
    submitted = time.time()
    with private_files():
        run = pipeline.with_options(settings=_airflow_settings())()
    dag_id = _written_dag(run.pipeline.name if run.pipeline else "", submitted)
    echo(f"  submitted to Airflow as DAG {dag_id}; waiting for its run ...")
    return wait_for_run(run.id, echo=echo, timeout=timeout, dag_id=dag_id)


def _written_dag(pipeline_name: str, since: float) -> str | None:
    """The id of the DAG file the orchestrator has just written for this pipeline."""
    from stack.settings import load_settings

    dags = load_settings().airflow_dags
    written = [
        path for path in dags.glob(f"{pipeline_name}*.zip") if path.stat().st_mtime >= since - 1
    ]
    return max(written, key=lambda p: p.stat().st_mtime).stem if written else None


def _airflow_failure(dag_id: str, run_id: str | None = None) -> str | None:
    """A description of the DAG run's failure, if Airflow says that run failed.

    Only the run we follow counts (``run_id``; without one, the DAG's newest
    run): a schedule's DAG keeps its earlier runs, and an old failed one says
    nothing about the run that is going on now.
    """
    from stack.airflow.client import AirflowClient, AirflowError
    from stack.settings import load_settings

    settings = load_settings()
    client = AirflowClient(settings.airflow_url, settings.airflow_user, settings.airflow_password)
    try:
        if run_id is None:
            runs = client.dag_runs(dag_id)
            dag_run = runs[0] if runs else None
        else:
            dag_run = client.dag_run(dag_id, run_id)
        if dag_run is None or dag_run.get("state") != "failed":
            return None
        run_id = dag_run["dag_run_id"]
        tasks = client.task_instances(dag_id, run_id)
    except AirflowError:
        return None
    names = [t["task_id"] for t in tasks if t.get("state") in ("failed", "upstream_failed")]
    refused = ""
    if _zenml_refused_tasks(client, dag_id, run_id, tasks):
        from stack.zenml_server import SERVICE_ACCOUNT, rotate_hint

        refused = (
            ": the ZenML server refused the API key its tasks authenticate with (service "
            f"account {SERVICE_ACCOUNT}: deactivated, deleted or rotated). {rotate_hint()}"
        )
    return (
        f"Airflow run {run_id} of DAG {dag_id} failed"
        + (f" in task(s) {', '.join(names)}" if names else "")
        + refused
        + f"; its logs: {settings.airflow_url}/dags/{dag_id}"
    )


def _zenml_refused_tasks(client: Any, dag_id: str, run_id: str, tasks: list[dict]) -> bool:
    """Whether a failed task's log shows the ZenML server refusing its credentials."""
    from stack.airflow.client import AirflowError
    from stack.zenml_server import refused_in_log

    for task in tasks:
        if task.get("state") != "failed":
            continue
        try:
            log = client.task_log(dag_id, run_id, task["task_id"], task.get("try_number") or 1)
        except AirflowError:
            continue
        if refused_in_log(log):
            return True
    return False


def wait_for_run(
    run_id: Any,
    echo: Callable[[str], None] = print,
    timeout: float = DEFAULT_TIMEOUT,
    dag_id: str | None = None,
    airflow_run_id: str | None = None,
) -> Any:
    """Poll the ZenML run until it has finished; print each step as it ends.

    When the DAG run fails before ZenML could record anything (a task that
    cannot even start the step), the ZenML run would wait forever: Airflow's
    own state of that DAG run is checked too: ``airflow_run_id``, else the
    DAG's newest run (the DAG that :func:`execute` writes has just the one).
    """
    client = Client()
    deadline = time.monotonic() + timeout
    reported: set[str] = set()
    airflow_failed_at: float | None = None
    polls = 0
    while True:
        polls += 1
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
        if dag_id and polls % 3 == 0:
            failure = _airflow_failure(dag_id, airflow_run_id)
            if failure and airflow_failed_at is None:
                airflow_failed_at = time.monotonic()
            # Give ZenML a moment to record the failure itself.
            if failure and time.monotonic() - airflow_failed_at > 20:
                raise PipelineRunError(f"Run {run.name} did not finish: {failure}.")
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


def _schedules_file() -> Any:
    from stack.settings import load_settings

    return load_settings().airflow_home / "schedules.json"


def registered_schedules() -> dict[str, dict[str, Any]]:
    """The schedules this project created: name -> DAG id, cron, ZenML schedule id."""
    import json

    path = _schedules_file()
    return json.loads(path.read_text()) if path.exists() else {}


def _save_schedules(schedules: dict[str, dict[str, Any]]) -> None:
    import json

    path = _schedules_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schedules, indent=2, sort_keys=True))


def remove_schedule(name: str) -> bool:
    """Delete a schedule's DAG file and its ZenML schedule; False if there was none."""
    from stack.settings import load_settings

    schedules = registered_schedules()
    entry = schedules.pop(name, None)
    if entry is None:
        return False
    (load_settings().airflow_dags / f"{entry['dag_id']}.zip").unlink(missing_ok=True)
    with contextlib.suppress(KeyError):
        Client().delete_schedule(entry["schedule_id"])
    _save_schedules(schedules)
    return True


def schedule(pipeline: Any, name: str, cron: str) -> str:
    """Create or update a cron schedule of a configured pipeline; idempotent.

    Returns:
        ``created``, ``updated`` or ``unchanged``.

    Raises:
        PipelineRunError: The active stack's orchestrator cannot run schedules.
    """
    from zenml.config.schedule import Schedule
    from zenml.utils.time_utils import utc_now

    check_active_stack()
    if not is_airflow_stack():
        stack = Client().active_stack_model.name
        raise PipelineRunError(
            f"The active stack '{stack}' runs pipelines in this process and cannot keep "
            "a schedule. Fix: make services && zenml stack set production"
        )
    from stack.settings import load_settings

    existing = registered_schedules().get(name)
    dags = load_settings().airflow_dags
    if existing and existing["cron"] == cron and (dags / f"{existing['dag_id']}.zip").exists():
        return "unchanged"
    outcome = "updated" if existing else "created"
    remove_schedule(name)
    submitted = time.time()
    with private_files():
        pipeline.with_options(
            schedule=Schedule(name=name, cron_expression=cron, start_time=utc_now()),
            settings=_airflow_settings(),
        )()
    dag_id = _written_dag(pipeline.name, submitted)
    if dag_id is None:
        raise PipelineRunError(f"No DAG file was written for schedule {name} in {dags}.")
    zenml_schedule = Client().list_schedules(name=name, sort_by="desc:created", size=1).items
    schedules = registered_schedules()
    schedules[name] = {
        "dag_id": dag_id,
        "cron": cron,
        "pipeline": pipeline.name,
        "schedule_id": str(zenml_schedule[0].id) if zenml_schedule else None,
    }
    _save_schedules(schedules)
    return outcome


def trigger(
    name: str,
    conf: dict[str, Any] | None = None,
    echo: Callable[[str], None] = print,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """Run a scheduled DAG now with ``conf`` overrides; wait and return the ZenML run."""
    from stack.airflow.client import AirflowClient
    from stack.settings import load_settings

    check_active_stack()
    entry = registered_schedules().get(name)
    if entry is None:
        raise PipelineRunError(
            f"No schedule named {name!r}. Fix: python run.py schedule "
            f"(known: {', '.join(registered_schedules()) or 'none'})"
        )
    settings = load_settings()
    airflow = AirflowClient(settings.airflow_url, settings.airflow_user, settings.airflow_password)
    airflow.wait_for_dag(entry["dag_id"])
    dag_run = airflow.trigger(entry["dag_id"], conf)
    run_id = dag_run["dag_run_id"]
    echo(f"  triggered Airflow run {run_id} of DAG {entry['dag_id']} with conf {conf or {}}")
    client = Client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = client.list_pipeline_runs(orchestrator_run_id=run_id, size=1).items
        if runs:
            return wait_for_run(
                runs[0].id,
                echo=echo,
                timeout=timeout,
                dag_id=entry["dag_id"],
                airflow_run_id=run_id,
            )
        state = (airflow.dag_run(entry["dag_id"], run_id) or {}).get("state")
        if state == "failed":
            failure = _airflow_failure(entry["dag_id"], run_id)
            raise PipelineRunError(failure or f"Airflow run {run_id} failed.")
        time.sleep(2)
    raise PipelineRunError(f"Airflow run {run_id} did not start a ZenML run in {timeout:.0f} s.")
