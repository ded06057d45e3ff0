# One command runs the demo, one runs the tests; both build .venv from requirements.lock first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
LOCK   := requirements.lock

.PHONY: demo test test-all lint bench lab status clean venv lock

venv: $(STAMP)

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
	$(BIN)/ruff format --check lib tests bench run_pipeline.py
	$(BIN)/ruff check lib tests bench run_pipeline.py
	$(BIN)/lint-imports --config pyproject.toml
	$(BIN)/mypy

test: lint  ## the test suite CI runs (real PostgreSQL, real HTTP); the long kill loop is in test-all
	$(BIN)/python -m pytest -m "not slow" --nbval-lax tests notebooks

test-all: lint  ## every test, including the long kill loop
	$(BIN)/python -m pytest --nbval-lax tests notebooks

bench: $(STAMP)  ## records/second per stage and end to end (1M events by default)
	$(BIN)/python bench/run.py --events $${EVENTS:-1000000}

lab: $(STAMP)  ## open the notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/

status: $(STAMP)
	$(BIN)/python run_pipeline.py status

clean:
	rm -rf reports runs data .pytest_cache
