# One command runs the demo, one runs the tests; both build .venv from requirements.lock first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
LOCK   := requirements.lock

# Jupyter refuses to start as root (a container's usual user) without --allow-root
USER_ID := $(shell id -u)

AIRFLOW_VENV  := .airflow-venv
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed-stamp
AIRFLOW_LOCK  := requirements-airflow.lock

.PHONY: demo test test-all test-airflow-engine test-clock lint bench bench-airflow lab status clean venv lock airflow airflow-lock

venv: $(STAMP)

airflow: $(AIRFLOW_STAMP)  ## Airflow 3 in its own venv, from its hashed pin list (never shares the project's .venv)

$(AIRFLOW_STAMP): $(AIRFLOW_LOCK)
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip --disable-pip-version-check -q install --require-hashes --no-deps \
		-r $(AIRFLOW_LOCK)
	touch $(AIRFLOW_STAMP)

airflow-lock: $(STAMP)  ## re-resolve requirements-airflow.in into requirements-airflow.lock
	$(BIN)/uv pip compile requirements-airflow.in --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -o $(AIRFLOW_LOCK)

# Every package, transitive ones included, at the version and hash in the lock file; then the
# project itself, editable, without resolving anything again.
$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --require-hashes --no-deps -r $(LOCK)
	$(PIP) install --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name eventpipe --display-name "eventpipe (Python 3)"
	touch $(STAMP)

lock: $(STAMP)  ## re-resolve pyproject.toml's pins and every transitive package into requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -o $(LOCK)

demo: $(STAMP)  ## run the whole pipeline on the bundled demo API into data/eventpipe.sqlite
	$(BIN)/python run_pipeline.py run --demo

lint: $(STAMP)  ## formatting, lint, import layers and types (part of make test)
	$(BIN)/ruff format --check lib tests bench dags run_pipeline.py
	$(BIN)/ruff check lib tests bench dags run_pipeline.py
	$(BIN)/lint-imports --config pyproject.toml
	$(BIN)/mypy

# both cores: each test file runs on one of two workers (pytest-xdist). The notebooks run on their own,
# in order and in one kernel each, as nbval expects (xdist may tear a notebook's kernel down between cells).
XDIST := -n 2 --dist loadfile

test: lint $(AIRFLOW_STAMP)  ## the suite CI runs (PostgreSQL, HTTP, Airflow dag.test); kill loop, Airflow engine: test-all
	$(BIN)/python -m pytest $(XDIST) -m "not slow and not airflow_engine" tests
	$(BIN)/python -m pytest --nbval-lax notebooks

test-airflow-engine: $(STAMP) $(AIRFLOW_STAMP)  ## Airflow's scheduler and dag-processor, LocalExecutor, two Celery workers
	$(BIN)/python -m pytest -m airflow_engine tests

# the end-to-end tests whose data and windows hang on "now"; they must pass alike at any hour
CLOCK_TESTS = $(addprefix tests/e2e/test_,window_locks.py scheduler.py concurrency.py incremental.py \
	end_to_end.py backfill.py faults.py sources.py)

# datefudge shifts only the wall clock (and every child inherits the same shift); libfaketime 0.9.10 shifts
# CLOCK_MONOTONIC too, and Python 3.11's timed waits (threading.Event.wait, time.sleep) then hang or fail
test-clock: $(STAMP)  ## the clock-dependent e2e tests at 00:30, 11:59 and 23:59 UTC today (installs datefudge)
	command -v datefudge >/dev/null || { apt-get update -qq && apt-get install -y -qq datefudge >/dev/null; }
	for t in 00:30 11:59 23:59; do \
		echo "== $$(date -u +%F) $$t UTC"; \
		datefudge "$$(date -u +%F) $$t:00 UTC" $(BIN)/python -m pytest -q $(CLOCK_TESTS) || exit 1; \
	done

test-all: lint $(AIRFLOW_STAMP)  ## every test, including the long kill loop and the Airflow engine tier
	$(BIN)/python -m pytest $(XDIST) tests
	$(BIN)/python -m pytest --nbval-lax notebooks

bench: $(STAMP)  ## records/second per stage and end to end (1M events by default)
	$(BIN)/python bench/run.py --events $${EVENTS:-1000000}

bench-airflow: $(STAMP) $(AIRFLOW_STAMP)  ## CLI backfill --workers 2 vs Airflow max_active_runs 2, same 4 days
	$(BIN)/python bench/airflow_compare.py

lab: $(STAMP)  ## open the notebooks in JupyterLab
	$(BIN)/jupyter lab $(if $(filter 0,$(USER_ID)),--allow-root) notebooks/

status: $(STAMP)
	$(BIN)/python run_pipeline.py status

clean:
	rm -rf reports runs data .pytest_cache
