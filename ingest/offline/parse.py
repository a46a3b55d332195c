"""``alphapulse parse``: raw exchange frames in, one JSON object per trade out.

Reads frames one per line from FILE (gzip when it ends in ``.gz``) or stdin. A line may
start with an integer receive timestamp and a space — the recording format of
``shared/data`` — which is taken as the receive time. Each trade prints as
``{"exchange","symbol","trade_id","price","qty","side","ts"}`` (``ts``: exchange trade time,
integer ns). Control and other-channel frames print nothing; a malformed frame is reported
on stderr with its line number and the bad-input reason, and parsing goes on. The exit
status is 0 unless the input cannot be read.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, cast

import orjson

from common.cli import add_command
from common.errors import BadInput
from ingest.venues import EXCHANGES, get_adapter
from ingest.venues.base import DEFAULT_MAX_FRAME_BYTES

_FLUSH_EVERY = 512


def register_parse(subparsers: Any) -> None:
    """Entry point of the ``alphapulse.commands`` group: adds ``parse``."""
    p = add_command(
        subparsers,
        "parse",
        help="parse raw exchange frames into normalized trades (JSON lines)",
        doc=__doc__,
    )
    p.add_argument("--exchange", required=True, choices=EXCHANGES)
    p.add_argument("file", nargs="?", default="-", metavar="FILE",
                   help="frames, one per line (.gz is decompressed); default stdin")  # fmt: skip
    p.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME_BYTES,
                   help="frames above this size are reported as frame_too_large")  # fmt: skip
    p.set_defaults(func=run_parse)


def split_recorded(line: bytes) -> tuple[int, bytes]:
    """``b"<int ns> <frame>"`` → (ns, frame); a line without the prefix → (0, line)."""
    head, sep, rest = line.partition(b" ")
    if sep and head.isdigit() and len(head) <= 20:
        return int(head), rest
    return 0, line


@contextmanager
def _open(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdin.buffer
    elif path.endswith(".gz"):
        with gzip.open(path, "rb") as gz:
            yield cast(IO[bytes], gz)
    else:
        with open(path, "rb") as fh:
            yield fh


def run_parse(args: argparse.Namespace) -> int:
    adapter = type(get_adapter(args.exchange))(max_frame_bytes=args.max_frame_bytes)
    out = sys.stdout.buffer
    err = sys.stderr
    pending: list[bytes] = []
    lineno = 0
    try:
        with _open(args.file) as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.rstrip(b"\r\n")
                if not line.strip():
                    continue
                recv, frame = split_recorded(line)
                try:
                    result = adapter.parse(frame, recv)
                except BadInput as e:
                    err.write(f"line {lineno}: {e.reason}: {e.detail[:200]}\n")
                    continue
                for t in result.ticks:
                    pending.append(
                        orjson.dumps(
                            {
                                "exchange": t.exchange,
                                "symbol": t.symbol,
                                "trade_id": t.trade_id,
                                "price": t.price,
                                "qty": t.qty,
                                "side": t.side,
                                "ts": t.ts,
                            }
                        )
                    )
                if len(pending) >= _FLUSH_EVERY:
                    _flush(out, pending)
        _flush(out, pending)
        out.flush()
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, BrokenPipeError):
            return 0  # the reader went away (e.g. `| head`): nothing left to do
        _flush(out, pending)
        where = f" after line {lineno}" if lineno else ""
        err.write(f"alphapulse parse: cannot read {args.file}{where}: {e}\n")
        return 1
    return 0


def _flush(out: IO[bytes], pending: list[bytes]) -> None:
    if pending:
        out.write(b"\n".join(pending) + b"\n")
        pending.clear()
