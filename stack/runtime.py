"""Process-level settings shared by run.py, stack registration and the tests."""

from __future__ import annotations

import warnings


def quiet_shutdown() -> None:
    """Keep interpreter exit free of a spurious OpenTelemetry traceback.

    ZenML's OpenTelemetry log handler flushes from a new thread when logging
    shuts down at exit, which Python 3.12 refuses ("can't create new thread
    at interpreter shutdown"). Its log provider flushes by itself at exit, so
    the handler's own flush-on-close is switched off.
    """
    try:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
    except ImportError:  # pragma: no cover - optional dependency of ZenML
        return
    LoggingHandler.flushOnClose = False


def quiet_warnings() -> None:
    """Silence a known-harmless warning that would bury the useful output.

    Evidently computes feature correlations with ``numpy.corrcoef``, which
    warns on constant columns (all images the same width, say); the result is
    simply NaN for that pair.
    """
    warnings.filterwarnings(
        "ignore",
        message="invalid value encountered in divide",
        category=RuntimeWarning,
        module="numpy.lib.function_base",
    )
