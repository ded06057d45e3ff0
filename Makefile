# One command runs the demo, one runs the tests; both build .venv (pinned dependencies) first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test test-all bench lab status clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## run the whole pipeline on the bundled demo API into data/eventpipe.sqlite
	$(BIN)/python run_pipeline.py run --demo

test: $(STAMP)  ## the test suite CI runs (real PostgreSQL, real HTTP); the long kill loop is in test-all
	$(BIN)/python -m pytest -m "not slow" --nbval-lax tests notebooks

test-all: $(STAMP)  ## every test, including the long kill loop
	$(BIN)/python -m pytest --nbval-lax tests notebooks

bench: $(STAMP)  ## records/second per stage and end to end (1M events by default)
	$(BIN)/python bench/run.py --events $${EVENTS:-1000000}

lab: $(STAMP)  ## open the notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/

status: $(STAMP)
	$(BIN)/python run_pipeline.py status

clean:
	rm -rf reports runs data .pytest_cache
