"""Every relative link of README.md, docs/*.md and deploy/README.md points at a file that
exists, and every ``#anchor`` at a heading of the file it names (GitHub's heading ids), so
moving a section out of the README cannot leave a dead link behind (issue 16)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "deploy" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


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
