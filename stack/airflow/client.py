"""A small client for Airflow 3's REST API (``/api/v2``), standard library only.

Used by ``run.py`` to follow a pipeline's DAG run, by ``python run.py
trigger`` to start a scheduled DAG with overrides, and by the tests.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class AirflowError(RuntimeError):
    """Airflow is unreachable or answered with an error."""


class AirflowClient:
    """Talk to an Airflow API server with the simple auth manager's login."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 10.0) -> None:
        """Remember where Airflow is and how to log in."""
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self._token: str | None = None

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        request.add_header("Accept", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            raise AirflowError(f"Airflow {method} {path}: HTTP {error.code} {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            raise AirflowError(f"Airflow is not reachable at {self.url}: {error}") from None
        return json.loads(raw) if raw else None

    def token(self) -> str:
        """A JWT for the API (fetched once)."""
        if self._token is None:
            answer = self._request(
                "POST",
                "/auth/token",
                {"username": self.username, "password": self.password},
                auth=False,
            )
            self._token = answer["access_token"]
        return self._token

    def health(self) -> dict[str, Any]:
        """The health of the metadata database, scheduler and DAG processor."""
        return self._request("GET", "/api/v2/monitor/health", auth=False)

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG, or None while Airflow has not parsed it yet."""
        try:
            return self._request("GET", f"/api/v2/dags/{urllib.parse.quote(dag_id)}")
        except AirflowError as error:
            if "HTTP 404" in str(error):
                return None
            raise

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """The DAG's runs, newest first (by ``run_after``: a manual run has no logical date)."""
        answer = self._request(
            "GET", f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns?order_by=-run_after"
        )
        return answer.get("dag_runs", [])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        """One run of the DAG, or None when Airflow does not know it."""
        path = f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns/{urllib.parse.quote(run_id)}"
        try:
            return self._request("GET", path)
        except AirflowError as error:
            if "HTTP 404" in str(error):
                return None
            raise

    def set_dag_run_state(self, dag_id: str, run_id: str, state: str) -> dict[str, Any]:
        """Mark a DAG run ``success``, ``failed`` or ``queued`` (as the UI's buttons do)."""
        path = f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns/{urllib.parse.quote(run_id)}"
        return self._request("PATCH", path, {"state": state})

    def set_paused(self, dag_id: str, paused: bool) -> dict[str, Any]:
        """Pause or unpause a DAG."""
        return self._request(
            "PATCH", f"/api/v2/dags/{urllib.parse.quote(dag_id)}", {"is_paused": paused}
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The task instances of one DAG run."""
        path = (
            f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns/"
            f"{urllib.parse.quote(run_id)}/taskInstances"
        )
        return self._request("GET", path).get("task_instances", [])

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The log of one try of a task instance, as text (one line per event)."""
        path = (
            f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns/{urllib.parse.quote(run_id)}"
            f"/taskInstances/{urllib.parse.quote(task_id)}/logs/{try_number}?full_content=true"
        )
        answer = self._request("GET", path)
        content = answer.get("content") if isinstance(answer, dict) else answer
        if isinstance(content, list):
            return "\n".join(c if isinstance(c, str) else json.dumps(c) for c in content)
        return str(content or "")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start a DAG run now, with ``conf`` handed to the steps."""
        body = {"logical_date": None, "conf": conf or {}}
        return self._request("POST", f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns", body)

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until Airflow has parsed the DAG file ZenML wrote."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dag = self.dag(dag_id)
            if dag is not None:
                return dag
            time.sleep(1)
        raise AirflowError(
            f"Airflow did not load DAG {dag_id} within {timeout:.0f} s: is its DAG processor "
            "running and reading the folder the orchestrator writes to? "
            "Check: python -m stack.services status"
        )
