"""``make run``'s FEED setting: what ``ingest.offline.runenv`` resolves, and the Makefile around it.

The Makefile tests run ``make -n run`` (prints, starts nothing) and then the exact
``alphapulse run-env`` command it printed, sourced by bash as the recipe sources it.
"""

from __future__ import annotations

import gzip
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
from ingest.offline.runenv import SIMULATOR, live_exchanges, plan, shell_lines
from ingest.offline.ticks import write_trades_csv
from ingest.settings import IngestSettings
from ingest.venues import EXCHANGES, get_adapter
from tests.ingest_samples import BINANCE_TRADE_SELL

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
        "INGEST_REST_URL_BINANCE": "http://127.0.0.1:9999/binance",  # the gap backfill's
    }
    assert run.unset == ()
    assert run.processes == procfile_names(PROCFILE)  # the simulator and everything else


def test_sim_as_another_exchange_uses_its_spelling_and_path(tmp_path: Path) -> None:
    kraken = _write_csv(tmp_path / "kraken.csv", "kraken", ["XRP/USD", "BTC/USD"])
    run = plan("sim", procfile=PROCFILE, ticks=str(kraken), exchange="kraken")
    assert dict(run.exports) == {
        "EXCHANGES": "kraken:BTC/USD,XRP/USD",
        "INGEST_URL_KRAKEN": "ws://127.0.0.1:8765/kraken/v2",
        "INGEST_REST_URL_KRAKEN": "http://127.0.0.1:8765/kraken",
    }


def test_a_recording_of_another_exchange_blames_exchange_and_names_the_right_one(
    tmp_path: Path,
) -> None:
    # The simulator parses a recording with EXCHANGE's adapter: as kraken it would serve
    # nothing; the binance adapter parses it.
    recording = tmp_path / "binance.rec"
    recording.write_text(f"1723161255343000000 {BINANCE_TRADE_SELL}\n")
    with pytest.raises(ConfigError) as err:
        plan("sim", procfile=PROCFILE, ticks=str(recording), exchange="kraken")
    assert err.value.variable == "EXCHANGE"
    assert err.value.problem == (
        f"the kraken adapter parses no trade in {recording}; its frames are binance's: "
        "EXCHANGE=binance"
    )


def test_live_has_no_simulator_no_url_override_and_btc_eth_on_five_exchanges() -> None:
    run = plan("live", procfile=PROCFILE)
    assert live_exchanges() == LIVE
    assert dict(run.exports) == {"EXCHANGES": LIVE}
    assert set(run.unset) == {
        f"INGEST_{kind}URL_" + x.upper().replace("-", "_")
        for x in EXCHANGES
        for kind in ("", "REST_")
    }
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


# --- every bad input of `make run` is one line naming it, exit code 2 (issue 16) ----------------
def _refused(*assignments: str) -> str:
    """The one stderr line of the ``run-env`` that ``make run <assignments>`` runs first."""
    made = _make_n(*assignments)
    assert made.returncode == 0, made.stderr  # make itself accepts it; run-env judges
    done = subprocess.run(
        ["bash", "-c", _run_env_command(made.stdout)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_make_run_speed_that_is_no_number(ticks_csv: Path) -> None:
    assert _refused(f"TICKS={ticks_csv}", "SPEED=fast") == (
        "alphapulse: invalid setting SPEED: expected a number 0..1000000, got 'fast'"
    )


def test_make_run_sim_port_that_is_no_port(ticks_csv: Path) -> None:
    assert _refused(f"TICKS={ticks_csv}", "SIM_PORT=abc") == (
        "alphapulse: invalid setting SIM_PORT: expected an integer 1..65535, got 'abc'"
    )


def test_make_run_ticks_that_does_not_exist() -> None:
    assert _refused("TICKS=nope.rec.gz") == (
        "alphapulse: invalid setting TICKS: expected an existing recording (.rec[.gz]) or "
        "trades CSV, got 'nope.rec.gz'"
    )


def test_make_run_ticks_that_cannot_be_read(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rec.gz"
    broken.write_bytes(gzip.compress(b"1723161255343000000 {}\n" * 100)[:30])  # cut short
    line = _refused(f"TICKS={broken}")
    assert line.startswith(
        f"alphapulse: invalid setting TICKS: expected a readable recording or CSV, {broken}: "
    )


def test_make_run_ticks_with_no_trade_of_any_exchange(tmp_path: Path) -> None:
    quiet = tmp_path / "acks.rec"
    quiet.write_text('1723161255343000000 {"result":null,"id":1}\n')
    assert _refused(f"TICKS={quiet}") == (
        f"alphapulse: invalid setting TICKS: expected trades of some exchange, found none in "
        f"{quiet}"
    )


def test_make_run_exchange_that_parses_nothing_suggests_the_one_that_does(
    tmp_path: Path,
) -> None:
    recording = tmp_path / "binance.rec"
    recording.write_text(f"1723161255343000000 {BINANCE_TRADE_SELL}\n")
    line = _refused(f"TICKS={recording}", "EXCHANGE=kraken")
    assert line.startswith("alphapulse: invalid setting EXCHANGE: the kraken adapter parses ")
    assert line.endswith("EXCHANGE=binance")


def test_make_run_timeframes_that_do_not_nest(ticks_csv: Path) -> None:
    assert _refused(f"TICKS={ticks_csv}", "RUN_TIMEFRAMES=1m,7s") == (
        "alphapulse: invalid setting RUN_TIMEFRAMES: 1m is not a whole multiple of 7s "
        "(they must nest)"
    )


def test_make_run_live_exchanges_that_do_not_parse() -> None:
    line = _refused("FEED=live", "EXCHANGES=ftx:BTC-USD")
    assert line.startswith("alphapulse: invalid setting EXCHANGES: expected exchange:SYM,SYM;")
    assert line.endswith("got 'ftx:BTC-USD'")
