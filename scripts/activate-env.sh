# Clearsight: keep ZenML's state inside the project and telemetry off.
# Sourced by .venv/bin/activate (added by `make setup`) and by the Makefile.
CLEARSIGHT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export ZENML_CONFIG_PATH="${ZENML_CONFIG_PATH:-$CLEARSIGHT_ROOT/.state/zenml}"
export ZENML_ANALYTICS_OPT_IN=false
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
