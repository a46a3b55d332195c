"""``common.secrets`` and the logging pipeline: registered secrets and URL passwords never
reach a rendered line, whatever carries them (nested values, tuple reprs, exception messages,
tracebacks, the standard ``logging`` module); tracebacks keep their frames but not locals."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import dataclass

import orjson
import structlog

from common.logging import configure_logging, get_logger
from common.secrets import MASK, redact_url, register_secret, register_url_secret, scrub
from common.settings import CommonSettings

SECRET = "unit-Secret-4411"


def test_scrub_masks_registered_secrets_their_decoded_form_and_url_passwords() -> None:
    register_secret(SECRET, "p%40ss-word-77")
    assert scrub(f"auth_args=('u', '{SECRET}')") == f"auth_args=('u', '{MASK}')"
    assert "p@ss-word-77" not in scrub("client sent p@ss-word-77")
    assert scrub("postgresql://a:never-registered@db:5432/x") == "postgresql://a:***@db:5432/x"
    # Textual: a URL a parser refuses (port out of range) is masked all the same.
    assert redact_url("redis://u:pw-9@h:70000/0") == "redis://u:***@h:70000/0"


def test_short_secrets_are_masked_only_as_url_passwords() -> None:
    register_url_secret("redis://u:p@h:6379/0")
    assert scrub("ping pong") == "ping pong"
    assert scrub("redis://u:p@h:6379/0") == "redis://u:***@h:6379/0"


def test_settings_register_their_secrets_when_built() -> None:
    CommonSettings(redis_url="redis://u:from-the-url-31@h:1/0", redis_password="from-env-pw-52")
    assert scrub("from-the-url-31 / from-env-pw-52") == f"{MASK} / {MASK}"


@dataclass
class _Holder:
    password: str


def _json_events(emit: object) -> tuple[bytes, list[dict[str, object]]]:
    out = io.BytesIO()
    configure_logging(level="INFO", fmt="json", stream=out)
    try:
        emit()  # type: ignore[operator]
    finally:
        structlog.reset_defaults()
    raw = out.getvalue()
    return raw, [orjson.loads(line) for line in raw.splitlines()]


def test_no_value_anywhere_in_an_event_shows_a_secret() -> None:
    register_secret(SECRET)

    def emit() -> None:
        get_logger("t").info(
            "nested",
            args=("user", SECRET),
            deep={"a": [{"b": f"x{SECRET}y"}]},
            holder=_Holder(SECRET),
            obj=object(),
        )

    raw, (event,) = _json_events(emit)
    assert SECRET.encode() not in raw
    assert event["args"] == ["user", MASK] and event["deep"] == {"a": [{"b": f"x{MASK}y"}]}
    assert event["holder"] == {"password": MASK}


def test_tracebacks_keep_frames_and_drop_locals_and_secret_messages() -> None:
    register_secret(SECRET)

    def connect(auth_args: tuple[str, str]) -> None:
        raise ConnectionError(f"refused for {auth_args[1]}")

    def emit() -> None:
        try:
            connect(("user", SECRET))
        except ConnectionError as e:
            get_logger("t").error("failed", exc_info=e)

    raw, (event,) = _json_events(emit)
    assert SECRET.encode() not in raw and b'"locals"' not in raw
    (exc,) = event["exception"]  # type: ignore[misc]
    assert exc["exc_value"] == f"refused for {MASK}"
    assert [f["name"] for f in exc["frames"]][-1] == "connect"
    assert all("lineno" in f and "filename" in f for f in exc["frames"])


def test_console_form_prints_a_plain_traceback_without_secrets() -> None:
    register_secret(SECRET)
    out = io.StringIO()
    configure_logging(level="INFO", fmt="console", stream=out)
    try:
        try:
            auth_args = ("user", SECRET)
            raise ValueError(f"bad {auth_args[1]}")
        except ValueError as e:
            get_logger("t").error("failed", exc_info=e, args=auth_args)
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    assert "Traceback" in text and "ValueError: bad ***" in text and SECRET not in text


def test_standard_logging_records_are_scrubbed() -> None:
    """In a process of its own: pytest puts its own handlers on the root logger."""
    program = (
        "import logging; from common.logging import configure_logging;"
        "from common.settings import CommonSettings;"
        f"CommonSettings(redis_password={SECRET!r}); configure_logging();"
        f"logging.getLogger('some.library').warning('could not connect with %s', {SECRET!r})"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stderr == "could not connect with ***\n"
