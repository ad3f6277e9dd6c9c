"""The ZenML client, with this repository as the source root.

The app runs under ``streamlit run``, whose main module is not in the
repository, so ZenML could not load the project's own flavors (the local
Seldon model deployer) without being told where the sources are.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ui.config import ROOT, apply_environment


@cache
def _configure() -> None:
    apply_environment()
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(ROOT))


def client() -> Any:
    """Return a ZenML ``Client`` on the project's store."""
    _configure()
    from zenml.client import Client

    return Client()
