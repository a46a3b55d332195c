"""``make run``'s FEED setting: what ``ingest.runenv`` resolves, and the Makefile around it.

The Makefile tests run ``make -n run`` (prints, starts nothing) and then the exact
``alphapulse run-env`` command it printed, sourced by bash as the recipe sources it.
"""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from common.contracts import Tick
from common.errors import ConfigError
from common.procfile import procfile_names
from ingest.exchanges import EXCHANGES, get_adapter
from ingest.runenv import SIMULATOR, live_exchanges, plan, shell_lines
from ingest.settings import IngestSettings
from ingest.sources import write_trades_csv

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = (ROOT / "Procfile").read_text()
LIVE = (
    "binance:BTCUSDT,ETHUSDT;coinbase:BTC-USD,ETH-USD;kraken:BTC/USD,ETH/USD;"
    "bybit:BTCUSDT,ETHUSDT;okx:BTC-USDT,ETH-USDT"
)
# The exchanges' public trade endpoints (their API documentation).
REAL_ENDPOINTS = {
    "binance": "wss://stream.binance.com:9443/stream",
    "coinbase": "wss://advanced-trade-ws.coinbase.com",
    "kraken": "wss://ws.kraken.com/v2",
    "bybit": "wss://stream.bybit.com/v5/public/spot",
    "okx": "wss://ws.okx.com:8443/ws/v5/public",
}


def _write_csv(path: Path, exchange: str, natives: list[str]) -> Path:
    """One trade per native symbol of ``exchange`` as a normalized trades CSV."""
    ts = 1_723_075_200_000_000_000  # 2024-08-08
    rows = [
        Tick(exchange, "", native, str(i), 100.0 + i, 0.5, "buy", ts + i, ts + i)
        for i, native in enumerate(natives, start=1)
    ]
    out = io.StringIO()
    write_trades_csv(rows, out)
    path.write_text(out.getvalue())
    return path


@pytest.fixture
def ticks_csv(tmp_path: Path) -> Path:
    """Binance trades of ETHUSDT and BTCUSDT."""
    return _write_csv(tmp_path / "ticks.csv", "binance", ["ETHUSDT", "BTCUSDT", "ETHUSDT"])


def test_procfile_names_are_the_processes_in_file_order() -> None:
    text = "# comment\nsimulator: run sim\n\ningest: python -m ingest\ntail: x:y\n"
    assert procfile_names(text) == ("simulator", "ingest", "tail")
    assert procfile_names(PROCFILE)[0] == SIMULATOR


def test_sim_points_ingest_at_the_simulator_for_the_files_symbols(ticks_csv: Path) -> None:
    run = plan("sim", procfile=PROCFILE, ticks=str(ticks_csv), sim_port=9999)
    assert dict(run.exports) == {
        "EXCHANGES": "binance:BTCUSDT,ETHUSDT",
        "INGEST_URL_BINANCE": "ws://127.0.0.1:9999/binance/stream",
    }
    assert run.unset == ()
    assert run.processes == procfile_names(PROCFILE)  # the simulator and everything else


def test_sim_as_another_exchange_uses_its_spelling_and_path(tmp_path: Path) -> None:
    kraken = _write_csv(tmp_path / "kraken.csv", "kraken", ["XRP/USD", "BTC/USD"])
    run = plan("sim", procfile=PROCFILE, ticks=str(kraken), exchange="kraken")
    assert dict(run.exports) == {
        "EXCHANGES": "kraken:BTC/USD,XRP/USD",
        "INGEST_URL_KRAKEN": "ws://127.0.0.1:8765/kraken/v2",
    }


def test_sim_file_with_no_trade_of_that_exchange_names_ticks(ticks_csv: Path) -> None:
    # the simulator reads the file as EXCHANGE's trades too: it would serve nothing
    with pytest.raises(ConfigError, match="no trades") as err:
        plan("sim", procfile=PROCFILE, ticks=str(ticks_csv), exchange="kraken")
    assert err.value.variable == "TICKS"


def test_live_has_no_simulator_no_url_override_and_btc_eth_on_five_exchanges() -> None:
    run = plan("live", procfile=PROCFILE)
    assert live_exchanges() == LIVE
    assert dict(run.exports) == {"EXCHANGES": LIVE}
    assert set(run.unset) == {"INGEST_URL_" + x.upper().replace("-", "_") for x in EXCHANGES}
    assert SIMULATOR not in run.processes
    assert run.processes == tuple(n for n in procfile_names(PROCFILE) if n != SIMULATOR)
    assert "ingest" in run.processes and "tail" in run.processes


def test_live_exchanges_override_is_checked_and_spelled_natively() -> None:
    run = plan("live", procfile=PROCFILE, exchanges="kraken:btc-usd ; okx:SOL-USDT,sol-usdt")
    assert dict(run.exports) == {"EXCHANGES": "kraken:BTC/USD;okx:SOL-USDT"}


@pytest.mark.parametrize(
    ("feed", "kwargs", "variable"),
    [
        ("simulator", {}, "FEED"),
        ("", {}, "FEED"),
        ("Live", {}, "FEED"),
        ("live", {"exchanges": "ftx:BTC-USD"}, "EXCHANGES"),
        ("live", {"exchanges": "okx:"}, "EXCHANGES"),
        ("sim", {"ticks": "/nonexistent/ticks.rec.gz"}, "TICKS"),
        ("sim", {"exchange": "ftx"}, "EXCHANGE"),
    ],
)
def test_bad_settings_name_the_variable(
    feed: str, kwargs: dict[str, str], variable: str, ticks_csv: Path
) -> None:
    with pytest.raises(ConfigError) as err:
        plan(feed, procfile=PROCFILE, **{"ticks": str(ticks_csv), **kwargs})
    assert err.value.variable == variable


def test_shell_lines_quote_values() -> None:
    lines = shell_lines(plan("live", procfile=PROCFILE)).splitlines()
    assert lines[0] == f"export EXCHANGES='{LIVE}'"  # ';' and '/' stay inside the quotes
    assert lines[1].startswith("unset INGEST_URL_BINANCE ")
    assert shlex.split(lines[2]) == [
        "RUN_PROCESSES=" + " ".join(plan("live", procfile=PROCFILE).processes)
    ]


# --- the Makefile ---------------------------------------------------------------------


def _make_n(*assignments: str) -> subprocess.CompletedProcess[str]:
    # Run as a top-level make even under `make test` (CI): a sub-make inherits MAKELEVEL and
    # prints "make[1]: Entering directory" on stdout.
    outer = {"FEED", "EXCHANGES", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}
    env = {k: v for k, v in os.environ.items() if k not in outer}
    return subprocess.run(
        ["make", "--no-print-directory", "-n", "run", *assignments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _run_env_command(printed: str) -> str:
    """The ``alphapulse run-env ...`` command ``make -n run`` printed (without redirection)."""
    [line] = [ln for ln in printed.splitlines() if "alphapulse run-env" in ln]
    return line.split("&& ", 1)[1].rsplit(" >", 1)[0]


def _resolve(
    *assignments: str, inherited: dict[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """Environment and processes of ``make run <assignments>`` as the recipe sources them."""
    made = _make_n(*assignments)
    assert made.returncode == 0, made.stderr
    command = _run_env_command(made.stdout)
    script = f'plan=$({command}) || exit 3; eval "$plan"; echo "$RUN_PROCESSES"; env -0'
    env = {**os.environ, **(inherited or {})}
    done = subprocess.run(
        ["bash", "-c", script],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    processes, _, rest = done.stdout.partition("\n")
    resolved = dict(item.split("=", 1) for item in rest.split("\0") if "=" in item)
    return resolved, processes.split()


def test_make_run_sim_gives_the_simulator_urls_and_the_files_symbols(ticks_csv: Path) -> None:
    env, processes = _resolve(f"TICKS={ticks_csv}", "SIM_PORT=8799")
    assert env["EXCHANGES"] == "binance:BTCUSDT,ETHUSDT"
    assert env["INGEST_URL_BINANCE"] == "ws://127.0.0.1:8799/binance/stream"
    assert processes == list(procfile_names(PROCFILE))


def test_make_run_live_has_no_overrides_the_live_set_and_no_simulator() -> None:
    made = _make_n("FEED=live")
    assert made.returncode == 0, made.stderr
    assert "sort -m" not in made.stdout  # the simulator's recording is not even built
    stale = {"INGEST_URL_BINANCE": "ws://127.0.0.1:8765/binance/stream", "INGEST_URL_OKX": "ws://x"}
    env, processes = _resolve("FEED=live", inherited=stale)
    assert env["EXCHANGES"] == LIVE
    assert not [k for k in env if k.startswith("INGEST_URL_")]  # even ones left in the shell
    assert SIMULATOR not in processes
    assert processes == [n for n in procfile_names(PROCFILE) if n != SIMULATOR]


def test_make_run_live_exchanges_from_the_command_line() -> None:
    env, _ = _resolve("FEED=live", "EXCHANGES=coinbase:SOL-USD;bybit:SOLUSDT")
    assert env["EXCHANGES"] == "coinbase:SOL-USD;bybit:SOLUSDT"


@pytest.mark.parametrize("feed", ["bogus", "", "sim live"])
def test_make_run_stops_at_start_on_a_bad_feed_naming_feed(feed: str) -> None:
    made = _make_n(f"FEED={feed}")
    assert made.returncode != 0
    assert f"FEED: expected sim or live, got '{feed}'" in made.stderr
    assert made.stdout == ""  # nothing installed, started or printed first


def test_run_env_command_exits_2_naming_the_variable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "common.cli", "run-env", "--feed", "bogus"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert (
        done.stderr.strip() == "alphapulse: invalid setting FEED: expected sim or live, got 'bogus'"
    )


def test_live_settings_resolve_to_the_real_wss_endpoints() -> None:
    env, _ = _resolve("FEED=live", inherited={"INGEST_URL_KRAKEN": "ws://127.0.0.1:1/v2"})
    settings = IngestSettings.from_env(env)
    assert settings.urls == ()
    dialled = {
        name: get_adapter(name).connect_url(symbols, settings.url(name))
        for name, symbols in settings.exchanges
    }
    assert dialled == REAL_ENDPOINTS
