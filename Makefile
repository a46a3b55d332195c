# alphapulse — every set-up step lives here or under deploy/, so a fresh clone needs nothing else.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export REDIS_URL ?= redis://127.0.0.1:6379/0
export DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: install lint typecheck test unit services browser provision run run-plan status tail bench clean deploy-check report-docs

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt package.json package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,run]'
	npm ci --no-audit --no-fund --loglevel=error  # the console's front-end packages (package-lock.json)
	touch $(STAMP)

browser:  ## Debian's chromium + chromium-driver for the console's browser tests (apt if missing)
	bash deploy/browser.sh >/dev/null

services:  ## make sure Redis and PostgreSQL are reachable (start or apt-install local ones)
	@bash deploy/local-services.sh

lint: install
	$(BIN)/ruff check common ingest detectors signals sink tests docs/examples
	$(BIN)/ruff format --check common ingest detectors signals sink tests docs/examples
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit -q

provision:  ## TimescaleDB for the tests in a Debian trixie chroot, unless TIMESCALE_URL is given
	@if [ -z "$${TIMESCALE_URL:-}" ]; then bash deploy/timescale-chroot.sh up >/dev/null; fi

# The suite runs in TEST_WORKERS processes (pytest-xdist), each test file on one of them: most
# of its time is waiting on real servers and worker processes, so 3 on 2 cores take about half
# the serial time (docs/design.md, How it is tested). TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 3
test: install services browser provision lint
	TIMESCALE_URL=$${TIMESCALE_URL:-$$(bash deploy/timescale-chroot.sh url)} $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

# `make run`: the whole pipeline on this machine (the Procfile) in namespace RUN_NAMESPACE.
# FEED picks where the trades come from (ingest.offline.runenv, `alphapulse run-env --help`):
# - FEED=sim (default; this machine has no internet): the simulator replays TICKS (default:
#   the recorded Binance BTC and ETH sessions merged by receive time) as exchange EXCHANGE,
#   SPEED times real time, looped; ingest subscribes to the file's symbols through it.
# - FEED=live: no simulator; ingest dials each exchange's real public endpoint (every
#   INGEST_URL_* unset) for EXCHANGES (default: BTC and ETH on binance, coinbase, kraken,
#   bybit and okx), e.g. `make run FEED=live EXCHANGES='kraken:BTC/USD;okx:SOL-USDT'`.
# Starts fresh (deletes that namespace's Redis keys first) unless KEEP=1. `alphapulse run-procs`
# (common/procrun.py) starts the processes: it first prints where to look (WebSocket URL and
# token, each process's fixed metrics port, the CLI and SQL to use), and Ctrl-C ends with one
# summary line and exit 0. docs/running.md says what the output means.
# The web console serves on CONSOLE_PORT (8790); its login is printed in that block.
FEED ?= sim
RUN_FEEDS := sim live
DATA ?= ../shared/data
RUN_TICKS := var/run/binance-btcusdt-ethusdt.rec.gz
TICKS ?= $(RUN_TICKS)
EXCHANGE ?= binance
EXCHANGES ?=
SPEED ?= 10
SIM_PORT ?= 8765
RUN_NAMESPACE ?= run:
RUN_TIMEFRAMES ?= 1s,5s,1m
# The web console (signals/console): its port and the password of the `dev` admin login that
# `make run` creates (a fresh random one each run unless given; printed with the URL).
CONSOLE_PORT ?= 8790
ifeq ($(origin CONSOLE_PASSWORD),undefined)
CONSOLE_PASSWORD := $(shell head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
endif
# The Procfile's i-th process serves its metrics on METRICS_BASE + 100*i (common/procfile.py).
METRICS_BASE ?= 5000
# A bad FEED stops `make run` before anything is installed or started.
ifneq ($(filter run,$(MAKECMDGOALS)),)
ifneq ($(words $(FEED)) $(filter $(FEED),$(RUN_FEEDS)),1 $(strip $(FEED)))
$(error FEED: expected $(subst $() , or ,$(RUN_FEEDS)), got '$(FEED)')
endif
endif
# Shell lines (exports, unsets, RUN_PROCESSES, RUN_SUMMARY) that the recipe sources; also
# checks EXCHANGES (live), TICKS, EXCHANGE, SPEED and SIM_PORT (sim) and RUN_TIMEFRAMES, so a
# bad one stops the run before migrate.
RUN_PLAN = $(BIN)/alphapulse run-env --feed '$(strip $(FEED))' --procfile Procfile \
  --exchanges '$(EXCHANGES)' --ticks '$(TICKS)' --exchange '$(EXCHANGE)' \
  --sim-port '$(SIM_PORT)' --speed '$(SPEED)' --timeframes '$(RUN_TIMEFRAMES)'

run-plan: install
	@mkdir -p var/run && $(RUN_PLAN) > var/run/plan.sh

$(RUN_TICKS):
	@mkdir -p $(@D)
	@sort -m -s -n -k1,1 <(gzip -dc $(DATA)/binance-spot-btcusdt-20240808.rec.gz) \
	  <(gzip -dc $(DATA)/binance-spot-ethusdt-20240808.rec.gz) | gzip -1 > $@.tmp
	@mv $@.tmp $@

# The plan is made (and every input checked) before services start; only the default
# recording is built here, any other TICKS is checked by run-env (one line naming it).
run: install $(if $(filter sim,$(FEED)),$(filter $(RUN_TICKS),$(TICKS))) run-plan services
	@LOG_FORMAT=console LOG_LEVEL=ERROR $(BIN)/alphapulse migrate >/dev/null  # errors only
	@if [ "$${KEEP:-0}" != 1 ]; then for pat in '$(RUN_NAMESPACE)*' '{$(RUN_NAMESPACE)*'; do \
	  redis-cli -u "$$REDIS_URL" --scan --pattern "$$pat" | xargs -r redis-cli -u "$$REDIS_URL" del >/dev/null; \
	done; fi
	@echo "$(CONSOLE_PASSWORD)" | $(BIN)/alphapulse console-user dev --role admin > var/run/console-users
	@. var/run/plan.sh && \
	workers=$$($(BIN)/python -m common.procfile console-workers -f Procfile --port-base $(METRICS_BASE)) && \
	env -u METRICS_PORT NAMESPACE=$(RUN_NAMESPACE) TIMEFRAMES=$(RUN_TIMEFRAMES) \
	  CONSOLE_PORT=$(CONSOLE_PORT) CONSOLE_PASSWORD=$(CONSOLE_PASSWORD) CONSOLE_WORKERS="$$workers" \
	  TICKS=$(TICKS) EXCHANGE=$(EXCHANGE) SPEED=$(SPEED) SIM_PORT=$(SIM_PORT) \
	  LOG_FORMAT=$${LOG_FORMAT:-console} \
	  $(BIN)/alphapulse run-procs -f Procfile --port-base $(METRICS_BASE) --summary "$$RUN_SUMMARY" $$RUN_PROCESSES

# The CLI against `make run`'s namespace (another terminal, while it runs or after).
status: install
	@NAMESPACE=$(RUN_NAMESPACE) $(BIN)/alphapulse status

tail: install
	@NAMESPACE=$(RUN_NAMESPACE) $(BIN)/alphapulse tail signals --from beginning

bench: install services provision
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,run,bench]'
	TIMESCALE_URL=$${TIMESCALE_URL:-$$(bash deploy/timescale-chroot.sh url)} $(BIN)/python -m tests.bench

# docs/report/index.html: the pattern report on 20 years of S&P 500 daily bars (1999-2018),
# the public history the `arch` package ships (NCSA licence); the data set stays out of git.
REPORT_TMP ?= /tmp/alphapulse-report
report-docs: install
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,run,history]'
	mkdir -p $(REPORT_TMP)
	$(BIN)/python -c "import arch.data.sp500 as d; d.load().to_csv('$(REPORT_TMP)/sp500.csv')"
	$(BIN)/alphapulse replay --bars $(REPORT_TMP)/sp500.csv --symbol SPX --exchange sp500 \
		--out $(REPORT_TMP)/spx
	$(BIN)/alphapulse report $(REPORT_TMP)/spx --out $(REPORT_TMP)/report --horizons 1,5,20 \
		--title "alphapulse patterns on 20 years of S&P 500 daily bars" \
		--source "S&P 500 index, daily OHLCV 1999-01-04..2018-12-31 (5,031 bars), as shipped \
		by the arch package (arch.data.sp500, NCSA licence); alphapulse replay --bars, all 61 \
		TA-Lib patterns, outcome horizons 1, 5, 10, 20 bars, hit = return > 0."
	mkdir -p docs/report && cp $(REPORT_TMP)/report/index.html docs/report/index.html

deploy-check:  ## promtool + systemd-analyze over deploy/ (installs promtool with apt if root)
	bash deploy/check.sh

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
