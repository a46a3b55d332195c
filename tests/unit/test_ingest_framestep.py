"""The per-frame ingest step (``ingest.framestep.FrameStep``) without a socket or Redis:
frames in; accepted trades (to a recording sink), dead letters and counts out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from common.contracts import Tick
from common.plausibility import PlausibilityLimits
from ingest.framestep import FrameStep, column_tick, take_columns
from ingest.metrics import IngestMetrics
from ingest.sequence import TradeDeduper
from ingest.venues import get_adapter
from ingest.venues.batch import TradeColumns

S = 1_000_000_000
T0_MS = 1_723_161_255_342
#: Received just after the sample trades' time (a trade ahead of its receipt is implausible).
RECV = (T0_MS + 60) * 1_000_000
LIMITS = PlausibilityLimits(max_ahead_s=60.0, max_id_jump=1000, max_ids_per_s=100.0)


def _trade(tid: int, t_ms: int = T0_MS, native: str = "BTCUSDT") -> str:
    return (
        f'{{"stream":"{native.lower()}@trade","data":{{"e":"trade","E":1,"s":"{native}",'
        f'"t":{tid},"p":"61837.63000000","q":"0.02000000","T":{t_ms},"m":true,"M":true}}}}'
    )


class DeadLetters:
    """Records what the step dead-letters: (reason, frame)."""

    def __init__(self) -> None:
        self.letters: list[tuple[str, bytes]] = []

    def add(self, exchange: str, reason: str, detail: str, frame: str | bytes) -> None:
        self.letters.append((reason, frame.encode() if isinstance(frame, str) else frame))


class Sink:
    """Records what the step hands on: trade ids, and whether they came in columns."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.kinds: list[str] = []

    def offer(self, ticks: Iterable[Tick]) -> bool:
        got = [t.trade_id for t in ticks]
        if got:
            self.ids += got
            self.kinds.append("ticks")
        return True

    def offer_columns(self, cols: TradeColumns) -> bool:
        self.ids += cols.trade_ids
        self.kinds.append("columns")
        return True


def _step(filler: Any = None) -> tuple[FrameStep, IngestMetrics, DeadLetters]:
    metrics = IngestMetrics(CollectorRegistry())
    dlq = DeadLetters()
    a = get_adapter("binance")
    deduper = TradeDeduper(window=64, sequential_key=a.trade_id_key, limits=LIMITS)
    step = FrameStep(a, deduper, metrics=metrics, dead_letters=dlq, filler=filler, limits=LIMITS)
    return step, metrics, dlq


def _counts(m: IngestMetrics) -> dict[str, float]:
    ex = {"exchange": "binance"}
    ahead = "alphapulse_ingest_implausible_ticks_total"
    return {
        "trade_frames": m.value("alphapulse_ingest_frames_total", kind="trade", **ex),
        "control_frames": m.value("alphapulse_ingest_frames_total", kind="control", **ex),
        "ticks": m.value("alphapulse_ingest_ticks_total", **ex),
        "duplicates": m.value("alphapulse_ingest_duplicates_total", **ex),
        "gaps": m.value("alphapulse_ingest_gaps_total", **ex),
        "missing": m.value("alphapulse_ingest_missing_trades_total", **ex),
        "bad": m.value("alphapulse_ingest_bad_frames_total", reason="invalid_json", **ex),
        "time_ahead": m.value(ahead, reason="time_ahead", **ex),
    }


def test_a_frame_is_parsed_deduped_counted_and_dead_lettered() -> None:
    step, m, dlq = _step()
    got = [step.frame(f, RECV) for f in (_trade(1), _trade(2), _trade(2), _trade(5))]
    assert [[t.trade_id for t in ticks] for ticks in got] == [["1"], ["2"], [], ["5"]]
    assert step.frame('{"result":null,"id":1}', RECV) == []
    assert step.frame("{broken", RECV) == []
    assert dlq.letters == [("invalid_json", b"{broken")]
    assert set(_counts(m).values()) == {0}  # counted in plain ints until published
    step.publish_metrics()
    assert _counts(m) == {"trade_frames": 4, "control_frames": 1, "ticks": 3, "duplicates": 1,
                          "gaps": 1, "missing": 2, "bad": 1, "time_ahead": 0}  # fmt: skip
    step.publish_metrics()  # published once: the counts start over
    assert _counts(m)["ticks"] == 3


@pytest.mark.parametrize("batched", [False, True])
def test_a_trade_ahead_of_its_receipt_is_dead_lettered(batched: bool) -> None:
    step, m, dlq = _step()
    recv = T0_MS * 1_000_000 + S
    frames = [_trade(1), _trade(2, T0_MS + 120_000), _trade(2), _trade(3)]
    if batched:
        sink = Sink()
        step.frames(frames, recv, sink)
        kept = sink.ids
    else:
        kept = [t.trade_id for f in frames for t in step.frame(f, recv)]
    assert kept == ["1", "2", "3"]  # the real trade 2 was not taken for a duplicate
    step.publish_metrics()
    assert _counts(m)["time_ahead"] == 1 and _counts(m)["duplicates"] == 0
    ((reason, frame),) = dlq.letters
    assert reason == "time_ahead" and b'"trade_id":"2"' in frame


def test_a_columnar_batch_with_rejects_stays_in_columns_and_matches_the_per_frame_path() -> None:
    frames = [_trade(i) for i in (1, 2, 3)]
    frames += [_trade(3), _trade(4), _trade(7), _trade(8), _trade(1, native="ETHUSDT")]
    one, m1, _ = _step()
    per_frame = [t.trade_id for f in frames for t in one.frame(f, RECV)]
    many, m2, _ = _step()
    sink = Sink()
    assert many.frames(frames[:3], RECV, sink)  # the first batch only sets the baseline
    assert many.frames(frames[3:], RECV, sink)  # a duplicate and a gap: judged per trade
    assert sink.ids == per_frame == ["1", "2", "3", "4", "7", "8", "1"]
    assert sink.kinds == ["columns", "columns"]  # no Tick built for the accepted trades
    one.publish_metrics()
    many.publish_metrics()
    assert _counts(m2) == _counts(m1)
    assert (_counts(m2)["duplicates"], _counts(m2)["gaps"], _counts(m2)["missing"]) == (1, 1, 2)


def test_an_in_order_batch_is_accepted_at_once() -> None:
    step, m, _ = _step()
    sink = Sink()
    step.frames([_trade(1), _trade(1, native="ETHUSDT")], RECV, sink)
    frames = [_trade(i, native=n) for i in range(2, 40) for n in ("BTCUSDT", "ETHUSDT")]
    step.frames(frames, RECV, sink)
    assert sink.ids == ["1", "1", *(str(i) for i in range(2, 40) for _ in range(2))]
    assert step.deduper.stats("binance", "BTC-USDT").accepted == 39
    step.publish_metrics()
    assert _counts(m)["ticks"] == 78 and _counts(m)["trade_frames"] == 78


def test_a_batch_with_a_bad_frame_goes_frame_by_frame() -> None:
    step, m, dlq = _step()
    sink = Sink()
    step.frames([_trade(1), "{broken", '{"result":null,"id":1}', _trade(2)], RECV, sink)
    assert sink.ids == ["1", "2"] and sink.kinds == ["ticks", "ticks"]
    assert [reason for reason, _ in dlq.letters] == ["invalid_json"]
    step.publish_metrics()
    counts = _counts(m)
    assert (counts["trade_frames"], counts["control_frames"], counts["bad"]) == (2, 1, 1)


class Filler:
    """A gap filler that holds every gap's trades (``ingest.backfill.GapFiller``'s calls)."""

    def __init__(self) -> None:
        self.gaps: dict[str, list[str]] = {}

    def open_gap(self, tick: Tick, missing: int) -> bool:
        self.gaps[tick.symbol] = [tick.trade_id]
        return True

    def hold(self, tick: Tick) -> None:
        self.gaps[tick.symbol].append(tick.trade_id)


def test_a_symbol_being_backfilled_is_held_and_the_others_go_on_in_columns() -> None:
    filler = Filler()
    step, m, _ = _step(filler)
    sink = Sink()
    step.frames([_trade(1), _trade(1, native="ETHUSDT")], RECV, sink)
    step.frames([_trade(5), _trade(2, native="ETHUSDT"), _trade(6)], RECV, sink)
    assert filler.gaps == {"BTC-USDT": ["5", "6"]}  # the trade after the gap, then the next
    step.frames([_trade(3, native="ETHUSDT"), _trade(7)], RECV, sink)
    assert filler.gaps == {"BTC-USDT": ["5", "6", "7"]}
    assert sink.ids == ["1", "1", "2", "3"] and set(sink.kinds) == {"columns"}
    step.publish_metrics()
    assert (_counts(m)["gaps"], _counts(m)["missing"], _counts(m)["ticks"]) == (1, 3, 7)


def test_column_helpers_agree_with_the_ticks() -> None:
    frames = [_trade(i, native=n) for i in range(1, 6) for n in ("BTCUSDT", "ETHUSDT")]
    cols = get_adapter("binance").parse_many(frames, RECV).columns
    assert cols is not None
    ticks = cols.ticks()
    assert [column_tick(cols, i) for i in range(cols.size)] == ticks
    assert take_columns(cols, [1, 4, 9]).ticks() == [ticks[1], ticks[4], ticks[9]]
