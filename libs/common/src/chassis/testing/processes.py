"""Services as real child processes, for tests that need the real thing: signals, crashes,
restarts on the same port, what operators see.

    books = ServiceProcess("books", env=clean_environment(DATABASE_URL=url), log_path=log)
    books.start()                      # books serve --host 127.0.0.1 --port N, until ready
    httpx.get(f"{books.url}/books/1")
    books.signal(signal.SIGTERM)
    assert books.wait_exit() == 0, books.log_tail()

``ServiceProcesses`` starts as many as a test asks for and kills them all afterwards.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal as signals
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Self

import httpx

# Variables that would configure a service from the machine rather than from the test: the
# profile, the database, telemetry, the commit; and any nested settings key (A__B).
MACHINE_PREFIXES = ("OTEL_", "DATABASE_URL", "ENVIRONMENT", "GIT_COMMIT")
NESTING = "__"
EXIT_TIMEOUT = 15.0
READY_TIMEOUT = 60.0
READY_POLL_SECONDS = 0.05


def free_port() -> int:
    """A local port nothing listens on (until someone binds it): connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def console_script(name: str) -> Path:
    """The console script ``name`` installed next to this interpreter (what ``uv run`` runs)."""
    return Path(sys.executable).parent / name


def load_script(path: Path, name: str) -> ModuleType:
    """The module of a script that belongs to no package (deploy/dev/run.py, say), loaded once
    by path under ``name``."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


def is_machine_variable(name: str) -> bool:
    """Whether ``name`` would let the machine, not the test, configure a service."""
    return name.startswith(MACHINE_PREFIXES) or NESTING in name.strip("_")


def clean_environment(**overrides: str) -> dict[str, str]:
    """This process's environment without machine variables, span export off, then
    ``overrides``: the environment of a hermetic child process."""
    kept = {name: value for name, value in os.environ.items() if not is_machine_variable(name)}
    return {**kept, "OTEL_TRACES_EXPORTER": "none", **overrides}


class ServiceProcess:
    """``<name> serve`` as a child process on a fixed port (restartable on that port); its
    stdout and stderr append to ``log_path``."""

    def __init__(
        self,
        name: str,
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        command: Sequence[str | Path] | None = None,
        ready_timeout: float = READY_TIMEOUT,
        new_session: bool = False,
    ) -> None:
        """``env`` defaults to ``clean_environment()``, ``port`` to a free one, ``command`` to
        the console script ``name`` (``serve --host --port`` is appended); ``new_session``
        keeps the terminal's signals (Ctrl-C) away from the child."""
        self.name = name
        self.log_path = log_path
        self.env = dict(clean_environment() if env is None else env)
        self.port = free_port() if port is None else port
        self.host = host
        self.url = f"http://{host}:{self.port}"
        self.command = [str(part) for part in (command or [console_script(name)])]
        self.ready_timeout = ready_timeout
        self.new_session = new_session
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "not running"
        return f"<ServiceProcess {self.name} {self.url} {state}>"

    @property
    def running(self) -> bool:
        """Started and not exited (yet)."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        """The process id of the last start."""
        return self._started().pid

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: the signal that ended it); None while running."""
        return None if self.process is None else self.process.poll()

    def start(self, *, wait: bool = True) -> None:
        """Starts the process unless it is running; ``wait`` waits until it is ready."""
        if self.running:
            return
        arguments = [*self.command, "serve", "--host", self.host, "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - the test's own command line
                arguments,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.new_session,
            )
        if wait:
            self.wait_until_ready()

    def wait_until_ready(self, timeout: float | None = None) -> None:
        """Until ``/health/ready`` answers 200; fails with the log tail if the process exits
        or ``timeout`` (default ``ready_timeout``) passes first."""
        process = self._started()
        deadline = time.monotonic() + (self.ready_timeout if timeout is None else timeout)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited early with {process.returncode}{self._tail_note()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            time.sleep(READY_POLL_SECONDS)
        raise AssertionError(f"{self.name} did not become ready{self._tail_note()}")

    def signal(self, number: signals.Signals) -> None:
        """Sends signal ``number`` (nothing if the process has exited already)."""
        self._started().send_signal(number)

    def terminate(self, timeout: float = EXIT_TIMEOUT) -> int | None:
        """SIGTERM, then the exit code; SIGKILL if it has not exited within ``timeout``.
        None if it was never started."""
        if self.process is None:
            return None
        self.signal(signals.SIGTERM)
        try:
            return self.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        """SIGKILL (no drain: like a crash or an OOM kill), then the exit code; None if it
        was never started."""
        if self.process is None:
            return None
        self.signal(signals.SIGKILL)
        return self.wait_exit(EXIT_TIMEOUT)

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        """The exit code, once it has exited; ``subprocess.TimeoutExpired`` after ``timeout``."""
        return self._started().wait(timeout)

    def log_text(self) -> str:
        """Everything logged so far ("" before the first start)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_lines(self) -> list[dict[str, Any]]:
        """Every JSON object line of the log (other lines are skipped). Lines end at "\\n" only:
        JSON may hold U+2028 and its kin unescaped, which ``str.splitlines`` would cut at."""
        records = []
        for raw in self.log_text().split("\n"):
            with contextlib.suppress(ValueError):
                record = json.loads(raw)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def _started(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.process

    def _tail_note(self) -> str:
        return f"\n--- last lines of {self.log_path} ---\n{self.log_tail()}"


class ServiceProcesses:
    """``<name> serve`` processes started on demand, each on a free port with its own log
    (``<name>-1.log``, ...) in ``folder``; ``kill_all()`` (or leaving ``with``) ends them."""

    def __init__(self, name: str, folder: Path, **options: Any) -> None:
        """``options`` go to every ``ServiceProcess`` (``ready_timeout``, ``host``, ...)."""
        self.name = name
        self.folder = folder
        self.options = options
        self.started: list[ServiceProcess] = []

    def start(self, env: Mapping[str, str] | None = None, *, wait: bool = True) -> ServiceProcess:
        """A new process with ``env``; ``wait=False`` returns at once (``wait_until_ready``)."""
        log_path = self.folder / f"{self.name}-{len(self.started) + 1}.log"
        process = ServiceProcess(self.name, log_path=log_path, env=env, **self.options)
        self.started.append(process)
        process.start(wait=wait)
        return process

    def kill_all(self) -> None:
        """SIGKILLs every process still running and waits for each to exit."""
        for process in self.started:
            process.kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill_all()
