# Perennial: one command for the demo, one for the tests. `make` installs uv when it is missing.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
# Each target syncs what it needs first (`runtime` or `install`); running must not sync again
# (a plain `uv run` would sync the default: no XGBoost extra).
RUN := $(UV) run --frozen --no-sync
# The XGBoost build: cpu (6 MB) by default; `make demo XGBOOST=gpu` for the CUDA build (about
# 700 MB more on Linux), which `training.device: cuda` in a dataset YAML needs.
XGBOOST ?= cpu
SYNC := $(UV) sync --frozen --extra $(XGBOOST)
# The uv versions the project supports: one place, pyproject.toml's [tool.uv] required-version.
UV_RANGE := $(shell python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["tool"]["uv"]["required-version"])')

# Local state (data, MLflow, Optuna, Prefect's own database) lives in one folder.
export PERENNIAL_HOME ?= $(CURDIR)/.perennial
export PREFECT_HOME ?= $(PERENNIAL_HOME)/prefect
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: uv runtime install browser promtool demo test test-fast lint format docs infra-check infra-workpool up down status bench clean

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv$(UV_RANGE)"

# The project's own modules are compiled too (an editable install is not compiled by uv): under
# PYTHONDONTWRITEBYTECODE every command recompiled them, 0.6 s of each command here.
define compile_project
	$(RUN) python -m compileall -q flows tasks
	@mkdir -p "$(PREFECT_HOME)"  # Prefect makes only the last folder of its home
endef

# The demo's runtime is not compiled at install: all of it is 290 MB of bytecode (1.12 GB in all
# instead of 0.84), and the demo printed its first month sooner without (127 s from `git clone` at
# load 5, against 136 s at load 2 compiled: benchmarks/install.py), Python compiling only what it
# imports (about 100 MB). The CLI's local Prefect server waits 300 s for its start, not the 20 s
# of the ephemeral one that a cold first start once outlasted.
runtime: uv  ## the runtime only (what the demo runs): no test or lint tools
	$(SYNC) --no-dev
	$(compile_project)

# Compiled at install: the tests start hundreds of processes, and with PYTHONDONTWRITEBYTECODE set
# each would compile its imports again.
install: uv  ## the runtime and the developer tools (tests, lint, docs, Terraform checks)
	$(SYNC) --compile-bytecode --group dev --group docs
	$(compile_project)

demo: runtime  ## replay 2013 month by month: gate, score, retrain, promote
	$(RUN) perennial demo

browser:  ## Debian's Chromium for the UI test (as root with apt; elsewhere that test is skipped)
	@[ -x /usr/bin/chromium ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "no /usr/bin/chromium: the browser test will be skipped"

# promtool checks and unit-tests the alert rules in infra/monitoring (tests/unit/test_monitoring.py);
# only Debian's `prometheus` package ships it (about 96 MB, 20 s; its service is not started here).
promtool:  ## Debian's promtool for the alert-rule tests (as root with apt; elsewhere they are skipped)
	@command -v promtool >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends prometheus >/dev/null; } \
		|| echo "no promtool: the alert-rule tests will be skipped"

test: install lint docs browser promtool  ## everything: lint, docs, unit, integration, e2e (browser too), infrastructure checks
	@# Two workers, each test file on one worker (module-scoped scenarios run in order): the
	@# served and CLI tests spend much of their time waiting on servers and polls: with two
	@# workers the suite took 9:36 on 2 cores, against 26:44 on one for the suite before it.
	$(RUN) pytest -n 2 --dist loadfile --ignore=tests/e2e/test_ui.py
	@# The browser test runs in its own session (it drives Chromium). Its UI submit can meet
	@# Prefect's SQLite "database is locked" (a 503 the UI does not retry): the test submits again.
	$(RUN) pytest tests/e2e/test_ui.py
	bash infra/check.sh

test-fast: install  ## unit tests only
	$(RUN) pytest -m "not slow and not integration and not e2e"

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy flows tasks

# The site (docs/, mkdocs.yml) into site/. Strict: a broken link or reference fails the build,
# and `make test` builds it too. MkDocs 1.6 prints a notice about MkDocs 2 unless this is set.
docs: install  ## the documentation site, built strictly into site/
	NO_MKDOCS_2_WARNING=1 $(RUN) mkdocs build --strict --site-dir site

format: install
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

infra-check: install  ## terraform fmt + test, checkov, structural HCL tests (offline)
	$(RUN) pytest tests/unit/test_infra*.py -q
	bash infra/check.sh

up: install  ## served mode: Prefect server + UI, worker, MLflow server, deployments
	$(RUN) python -m flows.supervision.served_stack up

down:  ## stop exactly what `make up` started, and the CLI's shared local Prefect server
	$(RUN) python -m flows.supervision.served_stack down
	$(RUN) perennial server stop

status:
	$(RUN) python -m flows.supervision.served_stack status

infra-workpool: install  ## create/update the prod ECS work pool from Terraform outputs, then deploy
	@outputs=$$(mktemp) && trap 'rm -f "$$outputs"' EXIT && \
	  (cd infra && terraform output -json) > "$$outputs" && \
	  $(RUN) python infra/workpool.py "$$outputs"
	$(RUN) prefect --no-prompt deploy --all --prefect-file infra/prefect-prod.yaml

bench: install
	@ls benchmarks/*.py >/dev/null 2>&1 && for script in benchmarks/*.py; do $(RUN) python "$$script"; done || echo "no benchmarks yet"

clean:  ## remove local state (raw data included): asks first
	@read -p "delete $(PERENNIAL_HOME)? [y/N] " answer && [ "$$answer" = y ] && rm -rf "$(PERENNIAL_HOME)"
