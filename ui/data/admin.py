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
from ui.users import User, UsersError, lookup_user

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

    The user's role is read again from the users file first: the session's
    copy may be older than a removal or a demotion. A refused attempt is
    audited too.

    Raises:
        PermissionError: When the user is not (or no longer) an admin.
    """
    if action not in ACTIONS:
        raise ValueError(f"Unknown action {action!r}")
    try:
        found = lookup_user(config.users_file, user.name)
        why = "" if found else f"{user.name} is no longer a user"
    except UsersError as error:
        found, why = None, f"the users file cannot be read ({error})"
    role = found[0].role if found else "none"
    if found is None or not found[0].is_admin:
        why = why or f"{user.name} is a {role}"
        review_store(config.catalog_url).record_action(
            actor=user.name,
            role=role,
            action=action,
            target=target or " ".join(args),
            outcome="refused",
            details={"reason": why},
        )
        raise PermissionError(f"{why}: only admins may {action}.")
    user = found[0]
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
