"""The step entrypoint Airflow tasks run: ZenML's, from the project folder.

ZenML's ``StepEntrypointConfiguration`` changes into ``/app`` (the working
directory of its Docker images) before running a step; on a machine without
Docker that folder does not exist and an ordinary user may not create it.
Here the step runs from the project folder in the project's virtualenv, which
is where the code is: the stack's Docker settings disable code download.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from zenml.entrypoints.step_entrypoint_configuration import StepEntrypointConfiguration

PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


class ProjectStepEntrypointConfiguration(StepEntrypointConfiguration):
    """Run a ZenML step from the project folder instead of ``/app``."""

    def prepare_code_environment(self) -> None:
        """Make the project folder the working directory and importable."""
        os.chdir(PROJECT_ROOT)
        if PROJECT_ROOT not in sys.path:
            sys.path.insert(0, PROJECT_ROOT)
