"""Lua scripts live in ``.lua`` files loaded one way (``common.lua``), never in Python strings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.lua import lua_script

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "ingest", "detectors", "signals", "sink")


def test_every_script_of_the_packages_loads_by_package_and_name() -> None:
    scripts = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).glob("*.lua"))
    assert len(scripts) >= 8  # ingest, signals, config, the five of the detectors' ownership
    for path in scripts:
        text = lua_script(path.parent.name, path.stem)
        assert text == path.read_text() and "redis.call(" in text
    with pytest.raises(FileNotFoundError):
        lua_script("detectors", "no_such_script")


def test_no_python_module_holds_a_lua_script() -> None:
    inline = [
        str(p.relative_to(ROOT))
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if re.search(r"redis\.(p?call)\(", p.read_text())
    ]
    assert inline == []
