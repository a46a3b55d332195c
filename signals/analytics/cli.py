"""``alphapulse stats``, ``alphapulse calibrate`` and ``alphapulse report``.

* ``stats DIR`` — the pattern table (or ``--regime``, ``--cooccurrence``, ``--deciles``) from
  a ``replay --out`` directory (its ``stats.json`` when present, else computed from
  ``outcomes.jsonl`` + ``bars.jsonl``); ``stats --db`` from the database (``DATABASE_URL``,
  the SQL views of sink migration 0005). Filters, ``--json``.
* ``calibrate DIR --horizon H --out MODEL.json [--plot PNG]`` — fits the calibrated model
  (:mod:`.calibration`) and prints the out-of-sample scores of the three models.
* ``report DIR --out OUTDIR`` — ``OUTDIR/index.html`` (:mod:`.report`).

A missing input is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from common.errors import ConfigError
from signals.analytics.regimes import REGIMES
from signals.analytics.stats import DEFAULT_MIN_N, PVALUE_METHOD, StatsOptions
from signals.analytics.table import Filters, filtered, format_table


def _cost_from_env() -> float:
    from common.settings import env_float  # noqa: PLC0415

    return env_float(os.environ, "OUTCOME_COST_BPS", 0.0, lo=0.0, hi=10_000.0) / 1e4


def _need(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what}")


def load_stats(directory: str, opts: StatsOptions) -> dict[str, Any]:
    """``DIR/stats.json`` if it was computed with the same options, else computed now."""
    from signals.analytics.files import stats_of_dir  # noqa: PLC0415

    d = Path(directory)
    _need(d, "directory")
    cached = d / "stats.json"
    if cached.exists():
        doc: dict[str, Any] = orjson.loads(cached.read_bytes())
        p = doc.get("params", {})
        same = (opts.min_n, opts.cost, list(opts.by), PVALUE_METHOD)
        if (p.get("min_n"), p.get("cost"), p.get("by"), p.get("pvalue_method")) == same:
            return doc
    _need(d / "outcomes.jsonl", "file (run replay --out first)")
    _need(d / "bars.jsonl", "file")
    return stats_of_dir(d, opts)


def _filters(args: argparse.Namespace) -> Filters:
    return Filters(
        args.pattern, args.direction, args.timeframe, args.horizon, args.exchange, args.symbol
    )


def run_stats(args: argparse.Namespace) -> int:
    try:
        opts = StatsOptions(
            min_n=args.min_n, cost=_cost_from_env(), by=tuple(args.by.split(",")) if args.by else ()
        )
        f = _filters(args)
        if args.db:
            from signals.analytics.db import pattern_table_sync  # noqa: PLC0415

            rows = pattern_table_sync(
                os.environ.get("DATABASE_URL", ""),
                f,
                opts,
                fresh=args.fresh,
                refreshed=args.refresh,
            )
            doc: dict[str, Any] = {"patterns": rows}
        else:
            if not args.dir:
                raise ConfigError("DIR", "give a replay --out directory or --db")
            doc = load_stats(args.dir, opts)
    except (FileNotFoundError, ConfigError) as e:
        print(f"alphapulse stats: {e}", file=sys.stderr)
        return 2
    if args.regime:
        rows = filtered(doc["regimes"][args.regime], f)
        extra = ["value"]
    elif args.cooccurrence:
        rows = doc["cooccurrence"]
        extra = []
    elif args.deciles:
        rows = doc["signal_deciles"]
        extra = []
    else:
        rows = filtered(doc["patterns"], f)
        extra = list(opts.by)
    if args.top:
        rows = rows[: args.top]
    if args.json:
        from signals.analytics.files import dumps  # noqa: PLC0415

        sys.stdout.buffer.write(dumps({"rows": rows}) + b"\n")
    elif args.cooccurrence or args.deciles:
        for r in rows:
            print(orjson.dumps(r).decode())
    else:
        print(format_table(rows, extra))
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from signals.analytics.calibration import calibrate  # noqa: PLC0415
    from signals.analytics.frames import bars_frame, read_jsonl  # noqa: PLC0415
    from signals.analytics.verdict import calibration_verdict  # noqa: PLC0415
    from signals.model import MODEL_FILE_VAR, load_model  # noqa: PLC0415

    d = Path(args.dir)
    try:
        _need(d / "patterns.jsonl", "file (run replay --out first)")
        _need(d / "bars.jsonl", "file")
        hand = load_model(os.environ.get(MODEL_FILE_VAR))
        result = calibrate(
            read_jsonl(d / "patterns.jsonl"),
            bars_frame(read_jsonl(d / "bars.jsonl")),
            args.horizon,
            hand,
            train_frac=args.train,
            prior_strength=args.prior,
            threshold=args.threshold,
        )
    except (FileNotFoundError, ConfigError, ValueError) as e:
        print(f"alphapulse calibrate: {e}", file=sys.stderr)
        return 2
    Path(args.out).write_bytes(orjson.dumps(result.doc, option=orjson.OPT_INDENT_2) + b"\n")
    rep = result.report
    if args.report:
        Path(args.report).write_bytes(orjson.dumps(rep, option=orjson.OPT_INDENT_2) + b"\n")
    if args.plot and rep.get("models"):
        from signals.analytics.plots import reliability_diagram  # noqa: PLC0415

        Path(args.plot).write_bytes(
            reliability_diagram(rep["models"], f"reliability, h={args.horizon} (out of sample)")
        )
    print(f"model -> {args.out} (threshold {rep['threshold']:.4f})")
    print(f"train {rep['train']['n']} candidates, test {rep['test']['n']}")
    for name, m in (rep.get("models") or {}).items():
        print(
            f"  {name:11s} Brier {m['brier']:.4f}  log loss {m['log_loss']:.4f}  ECE {m['ece']:.4f}"
        )
    print(calibration_verdict(rep))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from signals.analytics.calibration import calibrate  # noqa: PLC0415
    from signals.analytics.files import write_stats  # noqa: PLC0415
    from signals.analytics.frames import bars_frame, read_jsonl  # noqa: PLC0415
    from signals.analytics.report import render  # noqa: PLC0415

    d = Path(args.dir)
    try:
        opts = StatsOptions(min_n=args.min_n, cost=_cost_from_env())
        stats = load_stats(args.dir, opts)
        events = read_jsonl(d / "patterns.jsonl")
        bars = bars_frame(read_jsonl(d / "bars.jsonl"))
    except (FileNotFoundError, ConfigError) as e:
        print(f"alphapulse report: {e}", file=sys.stderr)
        return 2
    cals = []
    for h in [int(x) for x in args.horizons.split(",")]:
        try:
            cals.append(calibrate(events, bars, h).report)
        except ValueError as e:
            print(f"alphapulse report: calibration h={h} skipped: {e}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    page = render(stats, cals, args.title, args.source or f"data: {d}")
    (out / "index.html").write_text(page, encoding="utf-8")
    write_stats(out / "stats.json", stats)
    (out / "calibration.json").write_bytes(orjson.dumps(cals, option=orjson.OPT_INDENT_2))
    print(f"report -> {out / 'index.html'}")
    return 0


def _filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pattern", help="e.g. CDLHAMMER or hammer")
    p.add_argument("--direction", choices=["long", "short"])
    p.add_argument("--timeframe")
    p.add_argument("--horizon", type=int)
    p.add_argument("--exchange")
    p.add_argument("--symbol")


def register_stats(sub: Any) -> None:
    """Entry point of ``alphapulse stats``."""
    p = sub.add_parser("stats", help="pattern statistics against a random-entry baseline")
    p.add_argument("dir", nargs="?", help="a replay --out directory")
    p.add_argument("--db", action="store_true", help="from the database (DATABASE_URL)")
    p.add_argument("--refresh", action="store_true", help="--db: refresh the aggregates first")
    p.add_argument("--fresh", action="store_true", help="--db: group outcome_rows now (slow)")
    _filter_args(p)
    p.add_argument("--min-n", type=int, default=DEFAULT_MIN_N, help="rank only groups this big")
    p.add_argument("--by", help="extra dimensions: exchange,symbol")
    p.add_argument("--regime", choices=REGIMES, help="the breakdown by one regime")
    p.add_argument("--cooccurrence", action="store_true", help="pattern pairs on one bar")
    p.add_argument("--deciles", action="store_true", help="signals per score decile")
    p.add_argument("--top", type=int, default=0, help="only the first N rows")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_stats)


def register_calibrate(sub: Any) -> None:
    """Entry point of ``alphapulse calibrate``."""
    p = sub.add_parser("calibrate", help="fit a calibrated scoring model (SIGNALS_MODEL_FILE)")
    p.add_argument("dir", help="a replay --out directory")
    p.add_argument("--horizon", type=int, default=5, help="bars ahead (default 5)")
    p.add_argument("--out", required=True, help="model file to write (JSON)")
    p.add_argument("--plot", help="reliability diagram PNG")
    p.add_argument("--report", help="evaluation as JSON")
    p.add_argument("--train", type=float, default=0.6, help="share fitted on (default 0.6)")
    p.add_argument("--prior", type=float, default=50.0, help="shrinkage pseudo-count")
    p.add_argument("--threshold", type=float, help="emit at this probability (default: see docs)")
    p.set_defaults(func=run_calibrate)


def register_report(sub: Any) -> None:
    """Entry point of ``alphapulse report``."""
    p = sub.add_parser("report", help="a self-contained HTML report")
    p.add_argument("dir", help="a replay --out directory")
    p.add_argument("--out", required=True, help="output directory (index.html)")
    p.add_argument("--horizons", default="1,5", help="calibration horizons (default 1,5)")
    p.add_argument("--min-n", type=int, default=DEFAULT_MIN_N)
    p.add_argument("--title", default="alphapulse pattern report")
    p.add_argument("--source", help="a sentence on where the data comes from")
    p.set_defaults(func=run_report)
