"""The partition table and detector settings (pure)."""

from __future__ import annotations

import asyncio
import math

import pytest

from common.errors import ConfigError
from detectors.ownership import assign
from detectors.service import DetectorService
from detectors.settings import DetectorSettings


@pytest.mark.parametrize("partitions", [1, 4, 16, 64])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_assignment_is_balanced_complete_and_deterministic(partitions: int, n: int) -> None:
    members = [f"detector-{i}" for i in range(n)]
    table = assign(members, partitions)
    owned = sorted(p for ps in table.values() for p in ps)
    assert owned == list(range(partitions))
    sizes = [len(ps) for ps in table.values()]
    assert max(sizes) - min(sizes) <= max(1, -(-partitions // n) - partitions // n)
    assert max(sizes) == -(-partitions // n)
    assert assign(list(reversed(members)), partitions) == table


def test_a_joining_member_moves_only_part_of_the_table() -> None:
    members = [f"d{i}" for i in range(3)]
    before = assign(members, 64)
    after = assign([*members, "d3"], 64)
    kept = sum(len(set(before[m]) & set(after[m])) for m in members)
    assert len(after["d3"]) == 16
    assert kept >= 64 - 16 - 8  # mostly stable: rendezvous ranking, not round-robin


def test_settings_name_the_variable() -> None:
    s = DetectorSettings.from_env({"TIMEFRAMES": "1m,1h", "PATTERNS": "cdlhammer,CDLDOJI"})
    assert [t.name for t in s.engine.timeframes] == ["1m", "1h"]
    assert s.engine.patterns == ("CDLHAMMER", "CDLDOJI")
    assert s.heartbeat_ms == s.lease_ttl_ms // 3
    assert s.work_slice_ms == 50
    for env, var in [
        ({"TIMEFRAMES": "2m,3m"}, "TIMEFRAMES"),
        ({"PATTERNS": "CDLNOPE"}, "PATTERNS"),
        ({"LEASE_TTL_MS": "10"}, "LEASE_TTL_MS"),
        ({"ALLOWED_LATENESS_MS": "-1"}, "ALLOWED_LATENESS_MS"),
        ({"LEASE_TTL_MS": "1000", "HEARTBEAT_MS": "1000"}, "HEARTBEAT_MS"),
        ({"WORK_SLICE_MS": "0"}, "WORK_SLICE_MS"),
        ({"HEARTBEAT_MS": "200", "WORK_SLICE_MS": "201"}, "WORK_SLICE_MS"),
    ]:
        with pytest.raises(ConfigError) as err:
            DetectorSettings.from_env(env)
        assert err.value.variable == var


async def test_runners_wait_for_a_due_renewal_round_and_only_then() -> None:
    """``yield_to_renewal`` (called between work slices) parks a runner while a heartbeat and
    renewal round is due, until the round has run; otherwise it returns at once."""
    service = DetectorService(DetectorSettings.from_env({"DETECTOR_ID": "solo"}))
    await asyncio.wait_for(service.yield_to_renewal(), 1)  # no round scheduled yet
    service._end_round(0.0)  # the next round is due now
    waiting = asyncio.create_task(service.yield_to_renewal())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    service._end_round(60.0)  # the round ran; the next one is a minute away
    await asyncio.wait_for(waiting, 1)
    await asyncio.wait_for(service.yield_to_renewal(), 1)
    service._end_round(0.0)
    service._end_round(math.inf)  # the service stopped: nobody waits for a round again
    await asyncio.wait_for(service.yield_to_renewal(), 1)
