# Set-up and the two everyday commands. `make demo` and `make test` each create
# the virtual environment on first use (torch 2.13.0 CPU build, then canet with
# its test extras), so on a fresh machine either one is all it takes.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: setup
	$(VENV)/bin/canet demo

lint: setup
	$(VENV)/bin/ruff check canet tests benchmarks

test: lint
	$(PY) -m pytest -q
