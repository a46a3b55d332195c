"""Run every stage's benchmark, or those named: ``python -m tests.bench [ingest detectors ...]``."""

from __future__ import annotations

import importlib
import os
import pkgutil
import platform
import sys

import tests.bench as package


def main(argv: list[str]) -> int:
    names = sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("bench_")
    )
    wanted = {f"bench_{a}" for a in argv}
    machine = f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"# alphapulse bench — {machine}")
    for name in names:
        if wanted and name not in wanted:
            continue
        print(f"\n## {name.removeprefix('bench_')}", flush=True)
        importlib.import_module(f"tests.bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
