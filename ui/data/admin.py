"""Admin actions (deploy, promote through the gate, roll back) as ``run.py`` subprocesses.

The app holds no deployment logic of its own: it runs the same commands a
person would, with the project's Python, passes ``--actor`` so ZenML and
MLflow record who asked, and writes every attempt to the audit log.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

from ui.config import UIConfig
from ui.data.reviews import review_store
from ui.users import User

ACTIONS = {"deploy", "rollback", "promote"}


@dataclass
class ActionResult:
    """What an admin command did."""

    action: str
    ok: bool
    returncode: int
    seconds: float
    output: str
    command: list[str]


def run_action(
    config: UIConfig, user: User, action: str, *args: str, target: str = ""
) -> ActionResult:
    """Run ``python run.py <action> ... --actor <user>`` and audit it.

    Raises:
        PermissionError: When the user is not an admin.
    """
    if not user.is_admin:
        raise PermissionError(f"{user.name} is a {user.role}: only admins may {action}.")
    if action not in ACTIONS:
        raise ValueError(f"Unknown action {action!r}")
    command = [
        config.python,
        str(config.root / "run.py"),
        "--train-config",
        str(config.train_config),
        "--deploy-config",
        str(config.deploy_config),
        action,
        *args,
        "--actor",
        user.name,
    ]
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            cwd=config.root,
            capture_output=True,
            text=True,
            timeout=config.admin_timeout,
        )
        returncode, output = done.returncode, (done.stdout + done.stderr)
    except subprocess.TimeoutExpired as error:
        returncode = -1
        output = f"timed out after {config.admin_timeout} s\n{error.stdout or ''}"
    seconds = time.perf_counter() - start
    result = ActionResult(action, returncode == 0, returncode, seconds, output, command)
    review_store(config.catalog_url).record_action(
        actor=user.name,
        role=user.role,
        action=action,
        target=target or " ".join(args),
        outcome="ok" if result.ok else "failed",
        details={
            "command": " ".join(command[1:]),
            "returncode": returncode,
            "seconds": round(seconds, 1),
            "output_tail": _tail(output),
        },
    )
    return result


def _tail(output: str, lines: int = 25) -> str:
    """The end of a command's output, where run.py prints its summary or error."""
    kept = [line for line in output.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
