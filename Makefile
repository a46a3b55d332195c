# alphapulse — every set-up step lives here or under deploy/, so a fresh clone needs nothing else.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export REDIS_URL ?= redis://127.0.0.1:6379/0
export DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: install lint typecheck test unit services provision run bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,run]'
	touch $(STAMP)

services:  ## make sure Redis and PostgreSQL are reachable (start or apt-install local ones)
	bash deploy/local-services.sh

lint: install
	$(BIN)/ruff check common ingest detectors signals sink tests
	$(BIN)/ruff format --check common ingest detectors signals sink tests
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit -q

provision:  ## TimescaleDB for the tests in a Debian trixie chroot, unless TIMESCALE_URL is given
	@if [ -z "$${TIMESCALE_URL:-}" ]; then bash deploy/timescale-chroot.sh up >/dev/null; fi

test: install services provision lint
	TIMESCALE_URL=$${TIMESCALE_URL:-$$(bash deploy/timescale-chroot.sh url)} $(BIN)/pytest -q

run: install services
	$(BIN)/honcho start -f Procfile

bench: install services
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
