"""The one way Lua scripts are loaded: each multi-step atomic Redis operation is a ``.lua``
file beside the module that runs it, read as package data (``pyproject.toml`` ships
``*.lua`` with every package), never a Python string.

How a script is *called* is up to its module: ``redis.register_script`` (EVALSHA, reloaded on
NOSCRIPT) where the client allows it, or ``SCRIPT LOAD`` and ``EVALSHA`` by hand inside the
ingest writer's cluster pipeline (``ingest.writer``).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def lua_script(package: str, name: str) -> str:
    """The text of ``<package>/<name>.lua``; ``FileNotFoundError`` when there is none."""
    return files(package).joinpath(f"{name}.lua").read_text(encoding="utf-8")
