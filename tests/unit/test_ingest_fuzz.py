"""No input crashes a parser: random text, random JSON and mutated real frames either parse
or raise ``BadInput`` with a documented reason — never another exception. The simulator
sessions never raise on any client message."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import BadInput
from ingest.simulator.venues import get_server
from ingest.venues import EXCHANGES, get_adapter
from ingest.venues.base import BAD_INPUT_REASONS, FrameKind
from tests.ingest_samples import CONTROL_FRAMES, TRADE_FRAMES

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["NaN", "inf", "-1", "0", "1e400", "BTCUSDT", "buy", "Sell", "trade"])
)
json_values = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
REAL = {ex: [fr for fr, *_ in TRADE_FRAMES.get(ex, [])] + [fr for fr, *_ in CONTROL_FRAMES.get(
    ex, [])] for ex in EXCHANGES}  # fmt: skip


def _parse_ok_or_bad_input(exchange: str, frame: str | bytes) -> None:
    adapter = get_adapter(exchange)
    try:
        result = adapter.parse(frame, 1)
    except BadInput as e:
        assert e.reason in BAD_INPUT_REASONS
        return
    assert result.kind in set(FrameKind)
    for t in result.ticks:
        assert t.price > 0 and t.qty > 0 and t.side in {"buy", "sell"} and t.exchange == exchange


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@pytest.mark.parametrize("exchange", EXCHANGES)
@FUZZ
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(bytes))
def test_random_text(exchange: str, text: str | bytes) -> None:
    _parse_ok_or_bad_input(exchange, text)


@pytest.mark.parametrize("exchange", EXCHANGES)
@FUZZ
@given(value=json_values)
def test_random_json(exchange: str, value: Any) -> None:
    _parse_ok_or_bad_input(exchange, json.dumps(value))


@pytest.mark.parametrize("exchange", EXCHANGES)
@FUZZ
@given(data=st.data(), value=json_values, delete=st.booleans())
def test_mutated_real_frames(exchange: str, data: st.DataObject, value: Any, delete: bool) -> None:
    frames = [f for f in REAL[exchange] if f.startswith("{")]
    doc = orjson.loads(data.draw(st.sampled_from(frames)))
    paths = [p for p in _paths(doc) if p or not delete]
    path = data.draw(st.sampled_from(paths))
    _parse_ok_or_bad_input(exchange, json.dumps(_mutate(doc, path, value, delete)))


@pytest.mark.parametrize("exchange", EXCHANGES)
@FUZZ
@given(data=st.data(), cut=st.integers(min_value=0, max_value=400), byte=st.integers(0, 255))
def test_truncated_and_corrupted_real_frames(
    exchange: str, data: st.DataObject, cut: int, byte: int
) -> None:
    frame = data.draw(st.sampled_from(REAL[exchange])).encode()
    _parse_ok_or_bad_input(exchange, frame[:cut])
    if frame:
        i = cut % len(frame)
        _parse_ok_or_bad_input(exchange, frame[:i] + bytes([byte]) + frame[i + 1 :])


@pytest.mark.parametrize("exchange", EXCHANGES)
@FUZZ
@given(message=st.text(max_size=100) | json_values.map(json.dumps))
def test_server_sessions_never_raise(exchange: str, message: str) -> None:
    adapter = get_adapter(exchange)
    reply = get_server(adapter.name).session().handle(message)
    assert all(isinstance(f, str) for f in reply.frames)


binance_values = st.one_of(
    json_leaf, st.decimals(min_value=-10, max_value=10**10, places=8).map(str)
)


@FUZZ
@given(
    fields=st.fixed_dictionaries(
        {
            "s": st.sampled_from(["BTCUSDT", "ETHBTC", "XYZ", 5]),
            "t": st.integers(min_value=0, max_value=2**40) | binance_values,
            "p": binance_values,
            "q": binance_values,
            "T": st.integers(min_value=1_262_304_000_000, max_value=4_200_000_000_000)
            | binance_values,
            "m": st.booleans() | binance_values,
        }
    )
)
def test_binance_fast_path_agrees_with_the_strict_path(fields: dict[str, Any]) -> None:
    adapter = get_adapter("binance")
    frame = json.dumps({"stream": "x@trade", "data": {"e": "trade", "E": 1, **fields}})
    try:
        fast: Any = adapter.parse(frame, 1)
    except BadInput as e:
        fast = e.reason
    try:
        data = orjson.loads(frame)["data"]  # as the parser sees it (orjson's number rules)
        strict: Any = adapter._parse_strict(data, "t", 1)  # type: ignore[attr-defined]
    except BadInput as e:
        strict = e.reason
    assert fast == strict
