"""The README and docs/ stay true (issue 16): every relative link of README.md, docs/*.md and
deploy/README.md points at a file that exists, and every ``#anchor`` at a heading of the file
it names (GitHub's heading ids), so moving a section cannot leave a dead link behind; every
``python``/``js`` block of the README is one of the example files of docs/examples, byte for
byte (tests/integration/test_readme_examples.py runs them against a pipeline); and the block
``make run`` prints, in the README and in docs/running.md, is what ``where_to_look`` prints
for the Procfile."""

from __future__ import annotations

import re
from pathlib import Path

from common.procfile import read_procfile, where_to_look
from tests.docs_support import README, fenced_blocks, readme_block

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "deploy" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
EXAMPLES = ROOT / "docs" / "examples"
PROCFILE = (ROOT / "Procfile").read_text()


def anchors(page: Path) -> set[str]:
    """GitHub's ids of the headings of ``page`` (lower case, punctuation dropped, spaces to
    ``-``), plus explicit ``<a id=...>`` / ``<a name=...>`` anchors."""
    text = page.read_text()
    text_outside_code = re.sub(r"^```.*?^```$", "", text, flags=re.MULTILINE | re.DOTALL)
    ids = set(re.findall(r"<a (?:id|name)=\"([^\"]+)\"", text))
    for heading in re.findall(r"^#+ (.+)$", text_outside_code, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        ids.add(slug)
    return ids


def links(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```$", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_relative_links_and_anchors_resolve() -> None:
    dead = []
    for page in PAGES:
        for target in links(page):
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                dead.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                dead.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not dead, "\n".join(dead)


def test_the_readme_keeps_the_ci_test_command() -> None:
    """``.ci/run`` runs exactly the README's test command."""
    readme = (ROOT / "README.md").read_text()
    assert "make test   # " in readme
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("exec make test")


def test_the_readme_shows_the_example_files_and_the_printed_block_exactly() -> None:
    code = [(lang, body) for lang, body in fenced_blocks(README) if lang in ("python", "js")]
    files = {
        "python": (EXAMPLES / "signals_client.py").read_text(),
        "js": (EXAMPLES / "signals_client.mjs").read_text(),
    }
    assert sorted(code) == sorted(files.items())
    for name in ("signals_client.py", "signals_client.mjs", "signals_redis.py"):
        assert f"(docs/examples/{name})" in README  # linked, so a reader finds the file

    ticks = "var/run/binance-btcusdt-ethusdt.rec.gz"  # make run's default recording
    summary = f"{ticks} as binance at 10x (looped, simulator on ws://127.0.0.1:8765/binance/stream)"
    for text in (README, (ROOT / "docs" / "running.md").read_text()):
        shown = readme_block("alphapulse run: ", text)
        env = {"CONSOLE_PASSWORD": shown[1].rsplit(" ", 1)[1]}  # a fresh random one each run
        want = where_to_look(read_procfile(PROCFILE), summary=summary, namespace="run:", env=env)
        assert shown == want
    assert "namespace `run:`" in README and "make status" in README and "make tail" in README
