# Tally: `make run` brings the hub up with demo channels; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
TEST_DATABASE_URL ?= postgres://postgres:postgres@127.0.0.1:5432/tally
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=

.PHONY: venv run test services lint bench clean-var

$(BIN)/.installed: requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	@touch $@

venv: $(BIN)/.installed

services:
	@bash scripts/ensure_services.sh

run: venv
	@bash scripts/run.sh

test: venv services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .

bench: venv services
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python bench/contention.py

clean-var:
	rm -rf var
