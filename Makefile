# The two commands of the contract: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP)

run: $(STAMP)
	$(BIN)/minsheng db upgrade
	$(BIN)/minsheng serve

lint: $(TEST_STAMP)
	$(BIN)/ruff check bot webhook dialogs storage tests bench tools
	$(BIN)/mypy

# Two workers (pytest-xdist): the two cores of CI's machine. A plain `pytest` runs serially.
test: lint
	$(BIN)/pytest -q -n 2

bench: $(TEST_STAMP)
	$(BIN)/python -m bench.webhook

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
