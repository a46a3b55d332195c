"""Scoring across configuration versions: which model scores an event, and its name.

Every version of the live configuration (``common.configstore``) carries a scoring model and
``effective_from``, an event time in epoch ms. An event is scored with the version whose
``effective_from`` covers the event's **bar open time**: the newest version with
``effective_from <= open_time`` (versions are written with non-decreasing ``effective_from``,
so that is also the greatest such ``effective_from``). The open time is in every signal
(``open_time_ms``), so anyone can check which version applied; each signal's ``model`` field
names it: ``v<version>:<model fingerprint>``, e.g. ``v3:182570480c42``.

The live worker and ``alphapulse replay --config-history FILE`` both score through
``ModelHistory.score`` (``score_event`` with the version's model and name), so a replay
with the exported history equals the live run across configuration changes. Without a
history (a fresh namespace, or replay without the option) there is one version, ``v1``,
seeded from ``SIGNALS_MODEL_FILE`` with ``effective_from`` 0.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from common.configstore import ConfigVersion
from common.contracts import PatternEvent
from common.errors import ConfigError
from signals.contract import Signal
from signals.model import Model, model_from_mapping
from signals.scoring import scorer_of


@dataclass(frozen=True)
class ModelVersion:
    """The scoring model of one configuration version."""

    version: int
    effective_from: int
    model: Model

    @cached_property
    def name(self) -> str:
        """What each signal scored with this version carries as ``model``."""
        return f"v{self.version}:{self.model.fingerprint}"


class ModelHistory:
    """Every scoring model version, ordered; picks the one covering an event's open time."""

    def __init__(self, versions: Sequence[ModelVersion]) -> None:
        if not versions:
            raise ConfigError("config", "a configuration history needs at least one version")
        ordered = sorted(versions, key=lambda v: v.version)
        for a, b in itertools.pairwise(ordered):
            if b.effective_from < a.effective_from:
                raise ConfigError(
                    "config",
                    f"version {b.version} takes effect before version {a.version} "
                    f"({b.effective_from} < {a.effective_from})",
                )
        self.versions: tuple[ModelVersion, ...] = tuple(ordered)
        self._starts = [v.effective_from for v in ordered]

    @classmethod
    def seed(cls, model: Model) -> ModelHistory:
        """The history of a namespace that never changed its configuration."""
        return cls([ModelVersion(1, 0, model)])

    @classmethod
    def from_config(cls, versions: Iterable[ConfigVersion]) -> ModelHistory:
        """Models of stored (or exported) configuration versions."""
        return cls(
            [
                ModelVersion(
                    v.version, v.effective_from, model_from_mapping(v.doc.get("model", {}), "model")
                )
                for v in versions
            ]
        )

    @classmethod
    def from_export(cls, rows: Any) -> ModelHistory:
        """The JSON list ``alphapulse config history --json`` prints."""
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
            raise ConfigError("--config-history", "expected the JSON list of config history")
        try:
            versions = [ConfigVersion.from_dict(r) for r in rows]
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError("--config-history", f"bad version entry: {e!r}") from e
        return cls.from_config(versions)

    @property
    def newest(self) -> ModelVersion:
        return self.versions[-1]

    def at(self, open_time_ms: int) -> ModelVersion:
        """The version covering a bar that opened at ``open_time_ms`` (the first version
        also covers anything before its own start)."""
        i = bisect.bisect_right(self._starts, open_time_ms) - 1
        return self.versions[max(i, 0)]

    def score(
        self, event: PatternEvent, *, emit_warming: bool = False, emitted_at: str | None = None
    ) -> list[Signal]:
        """``score_event`` with the covering version's model, named after the version (and
        ``emitted_at`` set to the given stamp: ``ModelScorer.score``)."""
        v = self.at(event.bar.open_time)
        return scorer_of(v.model).score(
            event, v.name, emit_warming=emit_warming, emitted_at=emitted_at
        )
