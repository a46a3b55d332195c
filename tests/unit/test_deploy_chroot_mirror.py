"""``deploy/timescale-chroot.sh``'s ``debian_mirror``: the Debian archive the machine's apt
already uses, read from sources.list / sources.list.d in both formats. The script is sourced
(which runs nothing) and the function called on a made-up apt directory."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "timescale-chroot.sh"

DEB822_HOST = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.org/debian-security
Suites: bookworm-security
Components: main
"""

THIRD_PARTY = """\
Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main

Types: deb deb-src
Enabled: no
URIs: http://disabled.example.org/debian
Suites: trixie
Components: main
"""


def debian_mirror(apt: Path) -> str:
    out = subprocess.run(
        ["bash", "-c", 'source "$1" && debian_mirror "$2"', "bash", str(SCRIPT), str(apt)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert out.stderr == ""
    return out.stdout


def apt_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "mirror"),
    [
        ({"sources.list.d/debian.sources": DEB822_HOST}, "http://mirror.example.org/debian"),
        # apt's order: a third-party or disabled stanza first is passed over
        ({"sources.list.d/a.sources": THIRD_PARTY, "sources.list.d/debian.sources": DEB822_HOST},
         "http://mirror.example.org/debian"),
        # one-line form, with options, after a deb-src and a security line
        ({"sources.list": "deb-src http://src.example.org/debian trixie main\n"
                          "deb http://sec.example.org/debian-security bookworm-security main\n"
                          "# deb http://commented.example.org/debian bookworm main\n"
                          "deb [arch=amd64 signed-by=/k.gpg] https://one.example.org/debian/ "
                          "trixie main contrib\n"},
         "https://one.example.org/debian"),
        # sources.list comes before sources.list.d
        ({"sources.list": "deb http://first.example.org/debian sid main\n",
          "sources.list.d/debian.sources": DEB822_HOST}, "http://first.example.org/debian"),
        # a continuation line carries the suite
        ({"sources.list.d/x.sources": "Types: deb\nURIs: http://c.example.org/debian\n"
                                      "Suites: nodistro\n trixie\nComponents: main\n"},
         "http://c.example.org/debian"),
    ],
)  # fmt: skip
def test_the_debian_archive_of_the_apt_sources(
    tmp_path: Path, files: dict[str, str], mirror: str
) -> None:
    assert debian_mirror(apt_dir(tmp_path, files)) == mirror + "\n"


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"sources.list.d/a.sources": THIRD_PARTY},
        {"sources.list": "deb http://sec.example.org/debian-security trixie-security main\n"},
        {"sources.list.d/cloud.list": "deb https://packages.cloud.google.com/apt "
                                      "cloud-sdk-bookworm main\n"},
        {"sources.list.d/debian.sources.disabled-by-farm": DEB822_HOST},  # not a sources file
        {"sources.list": "deb mirror+file:/etc/apt/mirrors.txt bookworm main\n"},
    ],
)  # fmt: skip
def test_no_debian_archive_prints_nothing(tmp_path: Path, files: dict[str, str]) -> None:
    """Then the script lets debootstrap use its own default mirror for the suite."""
    assert debian_mirror(apt_dir(tmp_path, files)) == ""


def test_sourcing_the_script_runs_none_of_its_commands() -> None:
    out = subprocess.run(
        ["bash", "-c", 'source "$1" up && echo "sourced, $(type -t main)"', "bash", str(SCRIPT)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert (out.stdout, out.stderr) == ("sourced, function\n", "")
