# tradingbot: the two commands of the README, and a few helpers.
#   make demo   set everything up, replay real history through the whole stack
#   make test   set everything up, run ruff, mypy and the whole test suite
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
KAFKA := deploy/local/kafka/kafka.sh
TIMESCALEDB := deploy/local/timescaledb/timescaledb.sh
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help setup demo test lint unit integration soak bench stop clean compose-test

help:
	@echo "make demo    replay 245 days of 143 real symbols through Kafka, agents and the portfolio manager"
	@echo "make test    ruff, mypy and the whole test suite (unit, integration, e2e) on a real Kafka"
	@echo "make soak    the fault trials at full size: kill -9, broker restart, hostile input (tests/faults)"
	@echo "make bench   benchmark tables: the lockstep replay (benchmarks/run.py), the envs (benchmarks/envs.py)"
	@echo "make stop    stop the local Kafka left running by 'make demo DEMO_ARGS=--keep-running'"
	@echo "make compose-test  docker compose up on a real Docker Engine (offline image set), checked end to end"

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.11 (or set PYTHON=/path/to/python3.11)" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "error: $(PYTHON) is not Python 3.11" >&2; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the project and its pinned dependencies into $(VENV) ..."
	@$(VENV)/bin/python -m pip install -q --upgrade pip || { echo "error: pip cannot reach its package index" >&2; exit 1; }
	@$(VENV)/bin/python -m pip install -q -c constraints.txt -e '.[dev]' || { echo "error: pip install failed (is the package index reachable?)" >&2; exit 1; }
	@touch $(STAMP)

PROMETHEUS := deploy/local/prometheus/prometheus.sh
ALERTMANAGER := deploy/local/alertmanager/alertmanager.sh

setup: $(STAMP)
	@bash $(KAFKA) fetch
	@bash $(PROMETHEUS) install
	@bash $(ALERTMANAGER) install
	@bash $(TIMESCALEDB) fetch

demo: setup
	@$(VENV)/bin/tradingbot demo $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: setup lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

integration: setup
	$(VENV)/bin/pytest tests/integration tests/e2e tests/faults $(PYTEST_ARGS)

# The fault trials at the sizes of issue 10 (make test runs a small sample of each kind).
soak: setup
	TRADINGBOT_FAULT_SOAK=1 $(VENV)/bin/pytest tests/faults $(PYTEST_ARGS)

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	@echo "installing the benchmark-only competitors (gym-anytrading, FinRL 0.3.7 without its dependencies) ..."
	@$(VENV)/bin/python -m pip install -q -c constraints.txt -e '.[dev,bench]'
	@$(VENV)/bin/python -m pip install -q --no-deps finrl==0.3.7
	@touch $(BENCH_STAMP)

bench: setup $(BENCH_STAMP)
	$(VENV)/bin/python -m benchmarks.run $(BENCH_ARGS)
	$(VENV)/bin/python -m benchmarks.recovery
	$(VENV)/bin/python -m benchmarks.detector
	$(VENV)/bin/python -m benchmarks.synthetic
	$(VENV)/bin/python -m benchmarks.envs $(BENCH_ENV_ARGS)
	$(VENV)/bin/python -m benchmarks.sac $(BENCH_SAC_ARGS)
	$(VENV)/bin/python -m benchmarks.timescale_sink $(BENCH_DB_ARGS)

# docker compose on a real Docker Engine: a private one (deploy/local/docker/docker.sh) when
# none answers, the offline image set (deploy/offline/build.sh), tests/compose.
compose-test: setup
	@bash deploy/local/docker/docker.sh install
	$(VENV)/bin/pytest tests/compose -s $(PYTEST_ARGS)

stop:
	@for pid in runs/*/collapse-detector.pid runs/*/timescale-sink.pid; do [ -f "$$pid" ] && kill "$$(cat "$$pid")" 2>/dev/null; rm -f "$$pid"; done; true
	@bash $(PROMETHEUS) stop
	@bash $(ALERTMANAGER) stop
	@bash $(TIMESCALEDB) stop
	@bash $(KAFKA) stop

clean: stop
	rm -rf $(VENV) .cache runs .mypy_cache .ruff_cache .pytest_cache
