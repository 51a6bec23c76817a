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

# The Celery-dependent tests (real workers) on RabbitMQ instead of Redis: the broker is chosen by configuration alone.
RABBITMQ_URL ?= amqp://guest:guest@127.0.0.1:5672//
.PHONY: test-rabbitmq
test-rabbitmq: venv services
	@if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then \
		echo "starting rabbitmq-server"; rabbitmq-server -detached; \
		for i in $$(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 1; done; \
		(exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null || { echo "RabbitMQ did not open port 5672"; exit 1; }; \
	fi
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL=$(RABBITMQ_URL) \
		$(BIN)/pytest tests/e2e tests/broker $(PYTEST_ARGS)
