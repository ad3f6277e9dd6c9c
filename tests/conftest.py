"""Test-wide isolation: a throw-away ZenML config, set before ZenML is imported."""

import os
import secrets
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_STATE = Path(tempfile.mkdtemp(prefix="clearsight-tests-"))

os.environ["ZENML_CONFIG_PATH"] = str(TEST_STATE / "zenml")
# No ZenML repository for the tests: the checkout's .zen (and the stack it has
# active) belongs to the user's own state, not to the throw-away one.
(TEST_STATE / "no-repository").mkdir()
os.environ["ZENML_REPOSITORY_PATH"] = str(TEST_STATE / "no-repository")
os.environ["ZENML_ANALYTICS_OPT_IN"] = "false"
os.environ["ZENML_LOGGING_COLORS_DISABLED"] = "true"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
# A developer's own services must not receive the tests' alerts, pushes or catalog rows.
for variable in (
    "ZENML_ACTIVE_STACK_ID",
    "CLEARSIGHT_CATALOG_URL",
    "ZENML_STORE_URL",
    "CLEARSIGHT_ALERTMANAGER_URL",
    "CLEARSIGHT_PUSHGATEWAY_URL",
):
    os.environ.pop(variable, None)
# Model servers started by tests (and their children) keep no prediction log: with no
# catalog URL it would go to the user's .state/catalog.db. The prediction-log tests
# switch it on with a catalog of their own.
os.environ["CLEARSIGHT_PREDICTION_LOG"] = "off"
# DICOM patients' pseudonyms use a key of the test session, never the user's
# .state/secrets/pseudonym.key (nor a new one written there).
os.environ["CLEARSIGHT_PSEUDONYM_KEY"] = secrets.token_hex(32)

from stack.runtime import quiet_shutdown  # noqa: E402

quiet_shutdown()


def pytest_sessionfinish(session, exitstatus):
    """Remove the throw-away ZenML state unless asked to keep it."""
    if not os.environ.get("CLEARSIGHT_KEEP_TEST_STATE"):
        shutil.rmtree(TEST_STATE, ignore_errors=True)
