# vecshard — `make run` starts a local cluster with demo data; `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.vecshard-installed

.PHONY: run test install protos lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# run, test, lint and bench install the project with the dev extra (the SDK plus the
# server, offline and bench extras and the test and lint tools; see pyproject.toml).
# Re-installs only when pyproject.toml changes, so repeated `make test` is fast.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip wheel setuptools
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/vecshard up --demo

test: install
	$(PY) -m pytest

protos: install
	$(PY) scripts/gen_protos.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) scripts/check_import_cycles.py
	$(PY) scripts/check_module_size.py
	$(VENV)/bin/mypy

bench: install
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis benchmarks/results .vecshard
