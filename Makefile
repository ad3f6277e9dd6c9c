# Clearsight: `make run` sets everything up and runs the main job on the embedded
# stack; `make test` sets up and runs the whole test-suite. Every step is
# idempotent: re-running skips what is already done.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
STATE       := .state
DATA_DIR    := data/digits
DEPS_STAMP  := $(VENV)/.deps-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
ZENML_PORT  ?= 8237
MLFLOW_PORT ?= 5001
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.deps-$(shell sha256sum stack/airflow/constraints.txt | cut -c1-12)
UI_PORT     ?= 8501

export ZENML_CONFIG_PATH ?= $(CURDIR)/$(STATE)/zenml
export ZENML_ANALYTICS_OPT_IN := false
export ZENML_AUTO_OPEN_DASHBOARD ?= false
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.PHONY: help setup run test data stack dashboard dashboard-stop mlflow-ui lint format bench bench-serving bench-decoding bench-near-duplicates bench-monitor bench-stacks prometheus alerting postgresql chromium ui airflow-venv services services-status services-stop serve-stop clean distclean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-22s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo ""
	@echo "  By hand: source .venv/bin/activate && zenml stack set embedded && python run.py --help"

$(PY):
	@PYTHON312="$$(scripts/find-python312.sh)" && echo "Creating $(VENV) with $$PYTHON312" && "$$PYTHON312" -m venv $(VENV)

$(DEPS_STAMP): $(PY) pyproject.toml constraints.txt
	@echo "Installing pinned dependencies into $(VENV) (first time: ~2 minutes, 2.8 GB)"
	@$(PY) -m pip install --quiet --upgrade pip > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@$(PY) -m pip install -c constraints.txt -e '.[dev]' >> $(VENV)/install.log 2>&1 || \
	  (tail -40 $(VENV)/install.log; echo "pip install failed; full log: $(VENV)/install.log"; exit 1)
	@rm -f $(VENV)/.deps-* && touch $@
	@grep -q "scripts/activate-env.sh" $(VENV)/bin/activate || \
	  printf '\n# Clearsight project environment\nsource "%s/scripts/activate-env.sh"\n' "$(CURDIR)" >> $(VENV)/bin/activate

$(STATE)/.zenml-ready: $(DEPS_STAMP) stack/register.py
	@mkdir -p $(STATE)
	@[ -d .zen ] || $(VENV)/bin/zenml init >/dev/null 2>&1  # source root = this folder
	@$(PY) -m stack.register
	@touch $@

# The stamp alone is not enough: the active stack can be gone (another ZenML store's stack
# id in .zen/config.yaml, a deleted stack) or lack what run.py needs. Checking costs about
# what registering does (the ZenML import) but leaves a working active stack as it is.
setup: $(DEPS_STAMP) $(STATE)/.zenml-ready data ## Create the venv, install, init ZenML, register the embedded stack, write the sample data
	@[ -d .zen ] || $(VENV)/bin/zenml init >/dev/null 2>&1
	@$(PY) -c 'import sys; from zenml.client import Client; c = Client().active_stack_model.components; sys.exit(0 if all(c.get(t) for t in ("experiment_tracker", "data_validator", "model_deployer")) else 1)' >/dev/null 2>&1 || { \
	  echo "The active ZenML stack is missing or cannot run python run.py: registering the embedded stack"; \
	  $(PY) -m stack.register; }

data: $(DEPS_STAMP) ## Write the bundled sample dataset (UCI digits as PNG) to data/digits
	@$(PY) -m clearsight.sample_data $(DATA_DIR)

stack: $(DEPS_STAMP) ## (Re-)register and activate the embedded stack
	@[ -d .zen ] || $(VENV)/bin/zenml init >/dev/null 2>&1
	@$(PY) -m stack.register

run: setup ## Set up, then python run.py: ingest the sample data, train, gate, promote, deploy
	@$(PY) run.py $(ARGS)

prometheus: ## Install Debian's prometheus package if missing (the endpoint tests start it)
	@command -v prometheus >/dev/null 2>&1 || { \
	  echo "Installing Debian's prometheus package (used by the endpoint tests)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq >/dev/null && \
	  $$SUDO apt-get install -y -qq prometheus >/dev/null 2>&1; }

alerting: ## Install Debian's prometheus-alertmanager and prometheus-pushgateway if missing (make services and the alerting tests start them)
	@{ command -v prometheus-alertmanager && command -v amtool && command -v prometheus-pushgateway; } >/dev/null 2>&1 || { \
	  echo "Installing Debian's prometheus-alertmanager and prometheus-pushgateway (make services, alerting tests)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq >/dev/null && \
	  $$SUDO apt-get install -y -qq prometheus-alertmanager prometheus-pushgateway >/dev/null 2>&1; }

postgresql: ## Install Debian's postgresql package if missing (the catalog test starts a throw-away server)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "Installing Debian's postgresql package (used by the PostgreSQL catalog test)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq >/dev/null && \
	  $$SUDO apt-get install -y -qq postgresql >/dev/null 2>&1; }

chromium: ## Install Debian's chromium and chromium-driver if missing (the UI browser test uses them)
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium and chromium-driver (used by the UI browser test)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq >/dev/null && \
	  $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; }

test: setup airflow-venv lint prometheus alerting postgresql chromium ## Set up, check formatting and lint, then run the whole test-suite
	@$(PY) -m pytest $(PYTEST_ARGS)

ui: setup ## Start the Streamlit review app (http://127.0.0.1:8501; its metrics on :8502)
	@# With `make services` run: MLflow's read-only account (stack/mlflow_auth.py ui-env).
	@eval "$$($(PY) -m stack.mlflow_auth ui-env)" && $(VENV)/bin/streamlit run ui/main.py --server.port $(UI_PORT) --server.address 127.0.0.1 \
	  --server.headless true --browser.gatherUsageStats false --client.toolbarMode minimal

dashboard: setup ## Start the local ZenML server and dashboard (http://127.0.0.1:8237, user default with a password), account form filled in
	@CLEARSIGHT_ZENML_URL="$${CLEARSIGHT_ZENML_URL:-http://127.0.0.1:$(ZENML_PORT)}" $(PY) -m stack.services start zenml
	@$(PY) -m stack.dashboard onboard
	@echo "ZenML dashboard: http://127.0.0.1:$(ZENML_PORT)/projects/default/runs  (user default, password: CLEARSIGHT_ZENML_PASSWORD in .state/services/credentials.env; stop: make dashboard-stop)"

dashboard-stop: ## Stop the local ZenML server
	@[ ! -x $(PY) ] || CLEARSIGHT_ZENML_URL="$${CLEARSIGHT_ZENML_URL:-http://127.0.0.1:$(ZENML_PORT)}" $(PY) -m stack.services stop zenml

mlflow-ui: setup ## Open the MLflow UI on the embedded stack's tracking store (http://127.0.0.1:5001)
	@URI="$$($(PY) -c 'from zenml.client import Client; print(Client().active_stack.experiment_tracker.get_tracking_uri())')" && \
	  echo "MLflow UI on http://127.0.0.1:$(MLFLOW_PORT) for $$URI" && \
	  $(VENV)/bin/mlflow ui --backend-store-uri "$$URI" --host 127.0.0.1 --port $(MLFLOW_PORT)

bench: setup ## Print ingestion, training, promotion, rollback and run.py timings (benchmarks/)
	@$(PY) benchmarks/bench_pipelines.py

bench-serving: setup ## Benchmark the Seldon endpoint against mlflow models serve
	@$(PY) benchmarks/bench_serving.py

bench-decoding: setup ## Old vs new image decoding: images/s, pixel differences, unchanged predictions
	@$(PY) benchmarks/bench_decoding.py

bench-near-duplicates: setup ## Perceptual hashing at ingestion, the near-duplicate index, copy distances
	@$(PY) benchmarks/bench_near_duplicates.py

bench-monitor: setup ## The monitor's core (window, features, accuracy, decisions) and Evidently drift, 10k/100k rows
	@$(PY) benchmarks/bench_monitor.py

bench-stacks: setup airflow-venv ## Time the same cold python run.py on the embedded and production stacks
	@$(PY) benchmarks/bench_stacks.py

lint: $(DEPS_STAMP) ## Check formatting and lint with ruff
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/ruff check .

format: $(DEPS_STAMP) ## Format and auto-fix with ruff
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

$(AIRFLOW_STAMP): stack/airflow/constraints.txt
	@[ -x $(AIRFLOW_VENV)/bin/python ] || { PYTHON312="$$(scripts/find-python312.sh)" && \
	  echo "Creating $(AIRFLOW_VENV) (Airflow lives apart from ZenML, as Airflow advises)" && \
	  "$$PYTHON312" -m venv $(AIRFLOW_VENV); }
	@echo "Installing apache-airflow 3.3.2 into $(AIRFLOW_VENV) (~20 s)"
	@$(AIRFLOW_VENV)/bin/python -m pip install --quiet -c stack/airflow/constraints.txt \
	  apache-airflow > $(AIRFLOW_VENV)/install.log 2>&1 || \
	  (tail -30 $(AIRFLOW_VENV)/install.log; echo "Airflow install failed: $(AIRFLOW_VENV)/install.log"; exit 1)
	@rm -f $(AIRFLOW_VENV)/.deps-* && touch $@

airflow-venv: $(AIRFLOW_STAMP) ## Install Airflow 3.3 into its own virtualenv (.venv-airflow)

services: setup airflow-venv alerting ## Start S3 (moto), MLflow, ZenML server, Airflow, Alertmanager and the Pushgateway on loopback; register the production stack
	@$(PY) -m stack.services start
	@$(PY) -m stack.register production --no-activate
	@echo "Use it: source .venv/bin/activate && zenml stack set production && python run.py"

services-status: ## Show which production-stack services answer
	@$(PY) -m stack.services status

services-stop: ## Stop the production-stack services (moto's S3 keeps its objects in memory only)
	@[ ! -x $(PY) ] || $(PY) -m stack.services stop

serve-stop: ## Stop and delete every local Seldon prediction server of this project
	@[ ! -x $(PY) ] || [ ! -d $(STATE)/zenml ] || $(PY) -m stack.serve_stop

clean: serve-stop services-stop ## Stop the servers, remove ZenML state, catalog and sample data (keeps the venv)
	rm -rf $(STATE) .zen data

distclean: clean ## Also remove the virtualenvs
	rm -rf $(VENV) $(AIRFLOW_VENV)
