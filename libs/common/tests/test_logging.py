import enum
import io
import json
import logging
import os
import re
import select
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from chassis import get_logger
from chassis import logging as chassis_logging
from chassis.config import LoggingSection
from chassis.logging import REDACTED, CachedLogger, configure_logging, use_colors
from chassis.testing import capture_logs

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
ANSI = "\x1b["
LEADING = ["timestamp", "level", "logger", "message", "service"]


def configure(**section: Any) -> None:
    configure_logging("svc", LoggingSection(**section))


def json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def only_line(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    lines = json_lines(capsys)
    assert len(lines) == 1, lines
    return lines[0]


def test_a_structlog_event_is_one_json_line_with_the_design_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure()

    get_logger("tests.logging").info("hello", user_id=7, tags=["a"])

    line = only_line(capsys)
    assert list(line)[:5] == LEADING
    assert line["level"] == "info"
    assert line["logger"] == "tests.logging"
    assert line["message"] == "hello"
    assert line["service"] == "svc"
    assert line["user_id"] == 7
    assert line["tags"] == ["a"]
    assert "trace_id" not in line
    assert "span_id" not in line
    assert "event" not in line


def test_the_timestamp_is_rfc3339_utc(capsys: pytest.CaptureFixture[str]) -> None:
    configure()

    get_logger("tests.logging").info("now")

    stamp = only_line(capsys)["timestamp"]
    assert RFC3339_UTC.match(stamp), stamp
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - parsed) < timedelta(seconds=30)


def test_trace_and_span_ids_are_added_inside_a_span(capsys: pytest.CaptureFixture[str]) -> None:
    configure()
    tracer = TracerProvider().get_tracer("tests")
    log = get_logger("tests.logging")

    with tracer.start_as_current_span("work") as span:
        log.info("inside")
        logging.getLogger("tests.stdlib").info("inside too")
    log.info("outside")

    inside, stdlib_inside, outside = json_lines(capsys)
    context = span.get_span_context()
    for line in (inside, stdlib_inside):
        assert line["trace_id"] == format(context.trace_id, "032x")
        assert line["span_id"] == format(context.span_id, "016x")
    assert list(inside)[:7] == [*LEADING, "trace_id", "span_id"]
    assert "trace_id" not in outside
    assert "span_id" not in outside


def test_stdlib_records_render_like_structlog_events(capsys: pytest.CaptureFixture[str]) -> None:
    configure()

    logging.getLogger("tests.stdlib").warning("hello %s", "there", extra={"order_id": "o-1"})

    line = only_line(capsys)
    assert list(line)[:5] == LEADING
    assert line["level"] == "warning"
    assert line["logger"] == "tests.stdlib"
    assert line["message"] == "hello there"
    assert line["service"] == "svc"
    assert line["order_id"] == "o-1"
    assert RFC3339_UTC.match(line["timestamp"])
    assert not {"_record", "_from_structlog", "color_message"} & set(line)


def test_exceptions_carry_their_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    configure()

    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("tests.stdlib").exception("stdlib failed")
        get_logger("tests.logging").exception("structlog failed")

    stdlib_line, structlog_line = json_lines(capsys)
    for line in (stdlib_line, structlog_line):
        assert line["level"] == "error"
        assert "Traceback (most recent call last)" in line["exception"]
        assert "ValueError: broken" in line["exception"]


def test_secrets_inside_exception_messages_are_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure()

    try:
        raise RuntimeError("login failed for password=hunter2 with token: abc123")
    except RuntimeError:
        get_logger("tests.logging").exception("failed")

    line = only_line(capsys)
    assert "hunter2" not in json.dumps(line)
    assert "abc123" not in json.dumps(line)
    assert f"password={REDACTED}" in line["exception"]


def test_level_filters_structlog_and_stdlib(capsys: pytest.CaptureFixture[str]) -> None:
    configure(level="WARNING")

    get_logger("tests.logging").info("hidden")
    logging.getLogger("tests.stdlib").info("hidden")
    get_logger("tests.logging").warning("shown")
    logging.getLogger("tests.stdlib").error("shown")

    assert [line["message"] for line in json_lines(capsys)] == ["shown", "shown"]


def test_secret_keys_are_redacted_also_in_nested_mappings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure()

    get_logger("tests.logging").info(
        "call",
        password="p4ss",
        access_token="t0k",
        headers={"Authorization": "Basic dXNlcjpwYXNz", "Accept": "application/json"},
        nested={"inner": {"api_key": "k3y", "client_secret": "s3c"}, "keep": 1},
        user="ann",
    )

    line = only_line(capsys)
    assert line["password"] == REDACTED
    assert line["access_token"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert line["nested"] == {"inner": {"api_key": REDACTED, "client_secret": REDACTED}, "keep": 1}
    assert line["user"] == "ann"
    for secret in ("p4ss", "t0k", "dXNlcjpwYXNz", "k3y", "s3c"):
        assert secret not in json.dumps(line)


def test_url_credentials_and_bearer_tokens_are_redacted_in_strings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure()

    get_logger("tests.logging").info(
        "sent Authorization: Bearer abc.def-ghi to http://svc/x",
        url="postgresql+psycopg2://app:pw-s3cret@db:5432/app",
        urls=["https://u:pw-s3cret@host/path", "https://host/path"],
    )
    logging.getLogger("tests.stdlib").info("connecting to redis://cache:pw-s3cret@cache:6379/0")

    structlog_line, stdlib_line = json_lines(capsys)
    assert structlog_line["message"] == f"sent Authorization: Bearer {REDACTED} to http://svc/x"
    assert structlog_line["url"] == f"postgresql+psycopg2://app:{REDACTED}@db:5432/app"
    assert structlog_line["urls"] == [f"https://u:{REDACTED}@host/path", "https://host/path"]
    assert stdlib_line["message"] == f"connecting to redis://cache:{REDACTED}@cache:6379/0"


def test_stdlib_extras_with_secret_keys_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure()

    logging.getLogger("tests.stdlib").info("login", extra={"password": "p4ss"})

    line = only_line(capsys)
    assert line["password"] == REDACTED


def test_console_format_is_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure(format="console")

    get_logger("tests.logging").info("hello console", user_id=7, password="p4ss")
    logging.getLogger("tests.stdlib").info("hello stdlib")

    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 2
    for line in lines:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
    assert "hello console" in lines[0]
    assert "user_id" in lines[0]
    assert "hello stdlib" in lines[1]
    assert "p4ss" not in out


def test_configuring_twice_does_not_duplicate_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    configure()
    configure(level="DEBUG")

    chassis_handlers = [h for h in logging.getLogger().handlers if h.get_name() == "chassis"]
    logging.getLogger("tests.stdlib").debug("once")
    get_logger("tests.logging").debug("once")

    assert len(chassis_handlers) == 1
    assert [line["message"] for line in json_lines(capsys)] == ["once", "once"]


def test_server_loggers_go_through_the_chassis(capsys: pytest.CaptureFixture[str]) -> None:
    stray = logging.StreamHandler()
    logging.getLogger("uvicorn.error").addHandler(stray)
    configure()

    logging.getLogger("uvicorn.error").info("Started", extra={"color_message": "\x1b[1mStarted"})
    logging.getLogger("uvicorn.access").info("GET / 200")  # the chassis writes its own

    line = only_line(capsys)
    assert line["logger"] == "uvicorn.error"
    assert "color_message" not in line
    assert stray not in logging.getLogger("uvicorn.error").handlers


@pytest.mark.parametrize(
    "now_ns",
    [
        1_700_000_000_123_456_789,  # microseconds, and nanoseconds cut (not rounded) off
        1_700_000_000_000_000_999,  # a whole second: isoformat() writes no fraction
        1_700_000_000_999_999_999,
        1_704_067_199_999_999_000,  # the last microsecond of 2023
    ],
)
def test_timestamps_read_as_structlogs_iso_utc_stamper_writes_them(
    monkeypatch: pytest.MonkeyPatch, now_ns: int
) -> None:
    """``add_timestamp`` formats each second once; its text must stay what
    ``TimeStamper(fmt="iso", utc=True)`` gave: ``datetime.now(UTC).isoformat()`` with Z."""
    monkeypatch.setattr(time, "time_ns", lambda: now_ns)
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    expected = (
        datetime.fromtimestamp(seconds, UTC)
        .replace(microsecond=nanos // 1000)
        .isoformat()
        .replace("+00:00", "Z")
    )

    first = chassis_logging.add_timestamp(None, "info", {})["timestamp"]
    again = chassis_logging.add_timestamp(None, "info", {})["timestamp"]  # from the cache

    assert first == again == expected
    assert RFC3339_UTC.match(first)


def test_a_cached_logger_follows_reconfiguration_and_capture(
    capsys: pytest.CaptureFixture[str],
) -> None:
    hot = CachedLogger("tests.hot")
    configure()
    hot.get().info("first", n=1)
    configure_logging("other", LoggingSection())
    hot.get().info("second", n=2)
    with capture_logs() as events:
        hot.get().info("captured", n=3)
    hot.get().info("third", n=4)

    lines = json_lines(capsys)
    assert [(line["message"], line["service"], line["logger"]) for line in lines] == [
        ("first", "svc", "tests.hot"),
        ("second", "other", "tests.hot"),
        ("third", "other", "tests.hot"),
    ]
    assert [(e["event"], e["n"]) for e in events] == [("captured", 3)]


def test_a_cached_logger_writes_what_get_logger_writes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure()
    fields = {"method": "GET", "path": "/x?token=abc", "status": 200, "duration_ms": 1.5}

    get_logger("tests.same").info("request", **fields)
    CachedLogger("tests.same").get().info("request", **fields)

    plain, cached = json_lines(capsys)
    del plain["timestamp"], cached["timestamp"]
    assert list(plain) == list(cached)
    assert plain == cached
    assert cached["path"] == f"/x?token={REDACTED}"


# -- enum members are written as their values -------------------------------------------------


class Breaker(enum.StrEnum):
    OPEN = "open"


def test_an_http_status_is_a_number_in_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure()

    get_logger("tests.logging").info("answered", status=HTTPStatus.SERVICE_UNAVAILABLE)
    logging.getLogger("tests.stdlib").info("answered", extra={"status": HTTPStatus.BAD_GATEWAY})

    structlog_line, stdlib_line = json_lines(capsys)
    assert type(structlog_line["status"]) is int
    assert (structlog_line["status"], stdlib_line["status"]) == (503, 502)


def test_enum_members_read_as_their_values_in_the_console(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(format="console")

    get_logger("tests.logging").info(
        "answered", status=HTTPStatus.SERVICE_UNAVAILABLE, state=Breaker.OPEN
    )
    logging.getLogger("tests.stdlib").info("answered", extra={"status": HTTPStatus.BAD_GATEWAY})

    structlog_line, stdlib_line = capsys.readouterr().out.splitlines()
    assert "status=503" in structlog_line
    assert "state=open" in structlog_line
    assert "status=502" in stdlib_line
    assert "HTTPStatus" not in structlog_line + stdlib_line
    assert "Breaker" not in structlog_line


# -- colours: only on a terminal ---------------------------------------------------------------


@pytest.fixture
def no_colour_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's NO_COLOR/FORCE_COLOR must not decide these tests."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)


def log_both_ways() -> None:
    get_logger("tests.logging").info("structlog line", user_id=7)
    logging.getLogger("tests.stdlib").warning("stdlib line")


@pytest.mark.usefixtures("no_colour_variables")
def test_console_lines_into_a_file_or_pipe_have_no_colour_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(format="console")  # stdout is captured: not a terminal

    log_both_ways()

    out = capsys.readouterr().out
    assert "structlog line" in out
    assert "stdlib line" in out
    assert ANSI not in out


@pytest.mark.usefixtures("no_colour_variables")
def test_force_color_colours_even_without_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    configure(format="console")

    log_both_ways()

    structlog_line, stdlib_line = capsys.readouterr().out.splitlines()
    assert ANSI in structlog_line
    assert ANSI in stdlib_line


class Terminal:
    """A real (pseudo-)terminal: ``stream`` is its screen side, ``shown()`` what it shows."""

    def __init__(self) -> None:
        self.reader, writer = os.openpty()
        self.stream = open(writer, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def shown(self) -> str:
        chunks = []
        while select.select([self.reader], [], [], 0.5)[0]:
            chunks.append(os.read(self.reader, 65536))
        return b"".join(chunks).decode()

    def close(self) -> None:
        self.stream.close()
        os.close(self.reader)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    """Tests point sys.stdout at ``terminal.stream`` themselves (with monkeypatch): pytest puts
    its own capture back into sys.stdout between a fixture's setup and the test."""
    screen = Terminal()
    yield screen
    screen.close()


@pytest.mark.usefixtures("no_colour_variables")
def test_console_lines_on_a_terminal_are_coloured(
    terminal: Terminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdout", terminal.stream)
    configure(format="console")

    log_both_ways()

    lines = [line for line in terminal.shown().splitlines() if line.strip()]
    assert len(lines) == 2
    assert ANSI in lines[0]
    assert ANSI in lines[1]


@pytest.mark.usefixtures("no_colour_variables")
def test_no_color_turns_colours_off_even_on_a_terminal(
    terminal: Terminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdout", terminal.stream)
    monkeypatch.setenv("NO_COLOR", "1")
    configure(format="console")

    log_both_ways()

    out = terminal.shown()
    assert "structlog line" in out
    assert "stdlib line" in out
    assert ANSI not in out


class Stream(io.StringIO):
    def __init__(self, *, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("tty", "environ", "colours"),
    [
        (False, {}, False),
        (True, {}, True),
        (True, {"NO_COLOR": "1"}, False),
        (True, {"NO_COLOR": ""}, True),  # empty is unset
        (False, {"FORCE_COLOR": "1"}, True),
        (False, {"FORCE_COLOR": ""}, False),
        (False, {"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),  # NO_COLOR wins
        (True, {"FORCE_COLOR": "1", "NO_COLOR": "true"}, False),
    ],
)
def test_use_colors(tty: bool, environ: dict[str, str], colours: bool) -> None:
    assert use_colors(Stream(tty=tty), environ) is colours


def test_a_closed_stream_gets_no_colours() -> None:
    stream = io.StringIO()
    stream.close()

    assert use_colors(stream, {}) is False
