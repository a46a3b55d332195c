"""What the docs tests read: the README and its fenced code blocks (shared by the unit check
that the README shows the example files and the integration test that runs them)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced code block of a markdown text."""
    return re.findall(r"^```(\w*)\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def readme_block(first_line: str, text: str = README) -> list[str]:
    """The lines of the README's (or ``text``'s) code block that starts with ``first_line``."""
    for _, body in fenced_blocks(text):
        if body.startswith(first_line):
            return body.splitlines()
    raise AssertionError(f"no README block starts with {first_line!r}")
