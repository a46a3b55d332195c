"""The partition table and detector settings (pure)."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from detectors.ownership import assign
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
    for env, var in [
        ({"TIMEFRAMES": "2m,3m"}, "TIMEFRAMES"),
        ({"PATTERNS": "CDLNOPE"}, "PATTERNS"),
        ({"LEASE_TTL_MS": "10"}, "LEASE_TTL_MS"),
        ({"ALLOWED_LATENESS_MS": "-1"}, "ALLOWED_LATENESS_MS"),
        ({"LEASE_TTL_MS": "1000", "HEARTBEAT_MS": "1000"}, "HEARTBEAT_MS"),
    ]:
        with pytest.raises(ConfigError) as err:
            DetectorSettings.from_env(env)
        assert err.value.variable == var
