"""ServiceProcess and friends against a real child process (fake_service.py), no mocks."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from chassis.testing import (
    ServiceProcess,
    ServiceProcesses,
    clean_environment,
    console_script,
    free_port,
)

FAKE_SERVICE = Path(__file__).with_name("fake_service.py")
COMMAND = [sys.executable, str(FAKE_SERVICE)]
MakeProcess = Callable[..., ServiceProcess]


@pytest.fixture
def make_process(tmp_path: Path) -> Iterator[MakeProcess]:
    """``make_process(**env)``: a fake service (not started yet); killed after the test."""
    made: list[ServiceProcess] = []

    def make(ready_timeout: float = 20, **env: str) -> ServiceProcess:
        process = ServiceProcess(
            "fake",
            log_path=tmp_path / f"fake-{len(made) + 1}.log",
            env=clean_environment(**env),
            command=COMMAND,
            ready_timeout=ready_timeout,
        )
        made.append(process)
        return process

    yield make
    for process in made:
        process.kill()


def test_free_port_can_be_bound_and_refuses_connections() -> None:
    port = free_port()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
    with socket.create_server(("127.0.0.1", port)):
        pass


def test_console_script_is_next_to_the_interpreter() -> None:
    assert console_script("books") == Path(sys.executable).parent / "books"


def test_clean_environment_drops_machine_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_SERVICE_NAME",
        "DATABASE_URL",
        "DATABASE_URL_FILE",
        "ENVIRONMENT",
        "GIT_COMMIT",
        "DEPENDENCIES__BOOKS__BASE_URL",
    ):
        monkeypatch.setenv(name, "from the machine")
    monkeypatch.setenv("KEEP_ME", "1")
    monkeypatch.setenv("__LEADING_UNDERSCORES", "1")

    env = clean_environment(HTTP__PORT="9", KEEP_ME="2")

    machine = {"OTEL_SERVICE_NAME", "DATABASE_URL", "DATABASE_URL_FILE", "ENVIRONMENT"}
    assert not machine & env.keys()
    assert "GIT_COMMIT" not in env
    assert "DEPENDENCIES__BOOKS__BASE_URL" not in env
    assert env["__LEADING_UNDERSCORES"] == "1"
    assert env["OTEL_TRACES_EXPORTER"] == "none"
    assert env["HTTP__PORT"] == "9"
    assert env["KEEP_ME"] == "2"


def test_start_waits_until_ready(make_process: MakeProcess) -> None:
    process = make_process(FAKE_READY_AFTER="0.5")

    process.start()

    assert process.running
    assert process.returncode is None
    assert httpx.get(f"{process.url}/health/ready", timeout=5).status_code == 200
    assert process.url == f"http://127.0.0.1:{process.port}"
    listening = [line for line in process.log_lines() if line["event"] == "listening"]
    assert listening == [{"event": "listening", "port": process.port, "pid": process.pid}]


def test_start_without_waiting_returns_before_ready(make_process: MakeProcess) -> None:
    process = make_process(FAKE_READY_AFTER="60")

    process.start(wait=False)

    assert process.running
    with pytest.raises(AssertionError, match="fake did not become ready"):
        process.wait_until_ready(timeout=0.5)
    assert process.kill() == -signal.SIGKILL
    assert not process.running


def test_an_early_exit_fails_at_once_with_the_log_tail(make_process: MakeProcess) -> None:
    process = make_process(FAKE_EXIT="3", ready_timeout=60)

    with pytest.raises(AssertionError, match="fake exited early with 3") as failure:
        process.start()

    assert "bad configuration" in str(failure.value)
    assert process.returncode == 3
    assert process.wait_exit() == 3


def test_sigterm_and_wait_exit(make_process: MakeProcess) -> None:
    process = make_process()
    process.start()

    process.signal(signal.SIGTERM)

    assert process.wait_exit(10) == 0
    assert process.log_tail(1) == '{"event": "service stopped"}'
    process.signal(signal.SIGTERM)  # an exited process: nothing happens


def test_terminate_kills_what_ignores_sigterm(make_process: MakeProcess) -> None:
    graceful = make_process()
    stubborn = make_process(FAKE_IGNORE_SIGTERM="1")
    graceful.start(wait=False)
    stubborn.start(wait=False)
    graceful.wait_until_ready()
    stubborn.wait_until_ready()

    assert graceful.terminate() == 0
    assert stubborn.terminate(timeout=0.5) == -signal.SIGKILL


def test_kill_then_start_again_on_the_same_port(make_process: MakeProcess) -> None:
    process = make_process()
    process.start()
    first = process.pid
    process.start()  # already running: nothing happens
    assert process.pid == first

    assert process.kill() == -signal.SIGKILL
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{process.url}/health/live", timeout=2)
    process.start()

    assert process.pid != first
    assert httpx.get(f"{process.url}/health/ready", timeout=5).status_code == 200
    assert [line["event"] for line in process.log_lines()].count("listening") == 2


def test_log_helpers_skip_what_is_not_json(make_process: MakeProcess) -> None:
    process = make_process()
    assert process.log_text() == ""
    assert process.log_tail() == ""
    assert process.log_lines() == []
    process.start()

    assert process.log_text().startswith("starting (not JSON)\n")
    assert "starting (not JSON)" in process.log_tail()
    assert all(isinstance(line, dict) for line in process.log_lines())
    assert process.log_tail(1).startswith('{"event": "listening"')


def test_a_process_never_started(make_process: MakeProcess) -> None:
    process = make_process()

    assert not process.running
    assert process.returncode is None
    assert process.kill() is None
    assert process.terminate() is None
    with pytest.raises(RuntimeError, match="never started"):
        process.wait_exit()
    with pytest.raises(RuntimeError, match="never started"):
        _ = process.pid


def test_service_processes_each_get_a_port_and_log_and_all_are_killed(tmp_path: Path) -> None:
    with ServiceProcesses("fake", tmp_path, command=COMMAND, ready_timeout=20) as pool:
        first = pool.start(clean_environment())
        second = pool.start(clean_environment(FAKE_READY_AFTER="0.3"), wait=False)
        second.wait_until_ready()

        assert first.port != second.port
        assert [p.log_path.name for p in pool.started] == ["fake-1.log", "fake-2.log"]
        assert first.running
        assert second.running

    assert not first.running
    assert not second.running
    assert first.returncode == second.returncode == -signal.SIGKILL


def test_log_lines_keep_a_line_that_holds_a_unicode_line_separator(
    make_process: MakeProcess,
) -> None:
    process = make_process()
    # orjson writes U+2028 and U+0085 unescaped; only "\n" ends a log line.
    process.log_path.write_text('{"path": "/a\u2028b"}\n{"path": "/c\u0085d"}\nnot JSON\n')
    assert process.log_lines() == [{"path": "/a\u2028b"}, {"path": "/c\u0085d"}]
