"""ZenML Airflow DAG generator that runs each step in the project's virtualenv.

ZenML's own generator (``zenml.integrations.airflow.orchestrators.
dag_generator``) makes every step a DockerOperator or a KubernetesPodOperator.
This one keeps the same contract (the classes and constants below are read by
ZenML's orchestrator when it writes the DAG zip) and makes every step a
BashOperator that runs ``<venv>/bin/python -m zenml.entrypoints.entrypoint``:
a machine without Docker runs the same pipelines under a real Airflow.

The stack registration (``stack/register.py``) passes what the task needs in
the orchestrator's ``operator_args`` under the key ``clearsight``:
``python`` (the interpreter), ``cwd`` (the project folder), ``env`` (extra
environment) and ``entrypoint_config_source`` (our step entrypoint, which runs
from the project folder instead of ZenML's ``/app``).

Each DAG run's ``conf`` (``airflow dags trigger --conf '{"epochs": 5}'``) is
handed to the steps as the JSON environment variable ``CLEARSIGHT_RUN_CONF``.

ZenML puts an API token (scoped to the run, or to the schedule with no expiry)
into every task's environment, which ZenML writes into the DAG's
``config.json`` and Airflow copies into its database and logs. The
configuration classes leave every ZenML credential out: the tasks inherit
Airflow's own environment, where ``ZENML_STORE_API_KEY`` is the API key of the
service account ``clearsight-airflow`` (``stack/zenml_server.py``).

This file is executed by Airflow inside the DAG zip: it may import only the
standard library, airflow and pydantic.
"""

import datetime
import os
import shlex
import zipfile
from typing import Any

from pydantic import BaseModel, Field, field_validator

ENV_ZENML_AIRFLOW_RUN_ID = "ZENML_AIRFLOW_RUN_ID"
#: ZenML's credentials: never written into a DAG (the tasks get the API key from Airflow).
CREDENTIAL_VARIABLES = frozenset(
    {"ZENML_STORE_API_TOKEN", "ZENML_STORE_API_KEY", "ZENML_STORE_USERNAME", "ZENML_STORE_PASSWORD"}
)
ENV_RUN_CONF = "CLEARSIGHT_RUN_CONF"
CONFIG_FILENAME = "config.json"
OPTIONS_KEY = "clearsight"


class TaskConfiguration(BaseModel):
    """Airflow task configuration (the fields ZenML's orchestrator fills in)."""

    id: str
    zenml_step_name: str
    upstream_steps: list[str]
    docker_image: str
    command: list[str]
    arguments: list[str]
    environment: dict[str, str] = {}
    operator_source: str
    operator_args: dict[str, Any] = {}

    @field_validator("environment")
    @classmethod
    def _without_credentials(cls, environment: dict[str, str]) -> dict[str, str]:
        """The task's environment without ZenML's credentials (see the module docstring)."""
        return {k: v for k, v in environment.items() if k not in CREDENTIAL_VARIABLES}


class DagConfiguration(BaseModel):
    """Airflow DAG configuration (the fields ZenML's orchestrator fills in)."""

    id: str
    tasks: list[TaskConfiguration]
    local_stores_path: str | None = None
    schedule: datetime.timedelta | str = Field(union_mode="left_to_right")
    start_date: datetime.datetime
    end_date: datetime.datetime | None = None
    catchup: bool = False
    tags: list[str] = []
    dag_args: dict[str, Any] = {}


def bash_task_arguments(task: TaskConfiguration) -> dict[str, Any]:
    """The BashOperator keyword arguments that run one ZenML step."""
    operator_args = dict(task.operator_args)
    options = operator_args.pop(OPTIONS_KEY, {})
    arguments = list(task.arguments)
    source = options.get("entrypoint_config_source")
    if source and "--entrypoint_config_source" in arguments:
        arguments[arguments.index("--entrypoint_config_source") + 1] = source
    command = list(task.command)
    if options.get("python") and command[:1] == ["python"]:
        command[0] = options["python"]
    environment = {
        **task.environment,
        **options.get("env", {}),
        ENV_ZENML_AIRFLOW_RUN_ID: "{{ run_id }}",
        ENV_RUN_CONF: "{{ dag_run.conf | tojson if dag_run and dag_run.conf else '{}' }}",
    }
    return {
        "task_id": task.id,
        "bash_command": shlex.join(command + arguments),
        "env": environment,
        "append_env": True,
        "cwd": options.get("cwd"),
        **operator_args,
    }


try:
    archive = zipfile.ZipFile(os.path.dirname(__file__), "r")
except (IsADirectoryError, NotADirectoryError, FileNotFoundError, PermissionError):
    # Imported by ZenML in the client, not executed by Airflow from a DAG zip.
    pass
else:
    import airflow
    from airflow.providers.standard.operators.bash import BashOperator

    dag_config = DagConfiguration.model_validate_json(archive.read(CONFIG_FILENAME))
    operators: dict[str, Any] = {}
    with airflow.DAG(
        dag_id=dag_config.id,
        is_paused_upon_creation=False,
        tags=dag_config.tags,
        schedule=dag_config.schedule,
        start_date=dag_config.start_date,
        end_date=dag_config.end_date,
        catchup=dag_config.catchup,
        **dag_config.dag_args,
    ) as dag:
        for task in dag_config.tasks:
            operator = BashOperator(**bash_task_arguments(task))
            operators[task.zenml_step_name] = operator
            for upstream in task.upstream_steps:
                operator.set_upstream(operators[upstream])
