"""Run every stage's benchmark, or those named: ``python -m tests.bench [ingest detectors ...]``.

Each stage runs in a process of its own, so its figures do not depend on what the stages
before it left in the process (a large heap made the garbage collector's full passes slow
whatever allocated next: a full run once measured ``score_event`` at 27 µs an event after
the end-to-end stage, 6 µs alone). The run fails if any stage fails.
"""

from __future__ import annotations

import os
import pkgutil
import platform
import subprocess
import sys

import tests.bench as package


def main(argv: list[str]) -> int:
    names = sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("bench_")
    )
    wanted = {f"bench_{a}" for a in argv}
    machine = f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"# alphapulse bench — {machine}")
    failed = []
    for name in names:
        if wanted and name not in wanted:
            continue
        print(f"\n## {name.removeprefix('bench_')}", flush=True)
        if subprocess.run([sys.executable, "-m", f"tests.bench.{name}"], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
