"""`make dev` as a person runs it: in a terminal (a pseudo-terminal here), read as it prints,
stopped with Ctrl-C."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import subprocess
import termios
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from chassis.testing import load_script

ROOT = Path(__file__).resolve().parents[2]
READY_BANNER = re.compile(r"make dev: ready in (\d+(?:\.\d+)?) s")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class DevStack:
    """``make dev`` in its own session with a pseudo-terminal as its controlling terminal, so
    that writing Ctrl-C (``\\x03``) to the terminal sends SIGINT to make and everything in its
    foreground process group, exactly as a keyboard would."""

    def __init__(self, env: Mapping[str, str], repository: Path = ROOT) -> None:
        self.env = dict(env)
        self._master, slave = pty.openpty()
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "dev"],
            cwd=repository,
            env=dict(env),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_take_terminal,  # before any thread of the child exists
        )
        os.close(slave)
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def output(self) -> str:
        with self._lock:
            text = b"".join(self._chunks).decode(errors="replace")
        return ANSI.sub("", text).replace("\r\n", "\n")

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = pattern.search(self.output)
            if found:
                return found
            if self.process.poll() is not None:
                time.sleep(0.2)  # the last lines
                found = pattern.search(self.output)
                if found:
                    return found
                raise AssertionError(f"make dev exited ({self.process.returncode}):\n{self.tail()}")
            time.sleep(0.1)
        raise AssertionError(f"no {pattern.pattern!r} within {timeout} s:\n{self.tail()}")

    def press_ctrl_c(self) -> None:
        os.write(self._master, b"\x03")

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._reader.join(5)

    def stop(self) -> None:
        """Whatever happened: nothing of this stack survives the test."""
        if self.process.poll() is None:
            self.press_ctrl_c()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._reader.join(5)
        os.close(self._master)

    def tail(self, characters: int = 4000) -> str:
        return self.output[-characters:]

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: every process holding the terminal has gone
                return
            if not chunk:
                return
            with self._lock:
                self._chunks.append(chunk)


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def stack_environment(dev_dir: Path, **ports: int) -> dict[str, str]:
    """The caller's environment for `make dev`, with its data in ``dev_dir``, no trace export
    and the given ``<NAME>_PORT`` overrides (``gift_cards=`` for gift-cards' GIFT_CARDS_PORT)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "OTEL_", "FAULTS__", "LOGGING__", "PYTEST_"))
        and not key.endswith("_PORT")
    }
    env.update(
        DEV_DIR=str(dev_dir),
        OTEL_TRACES_EXPORTER="none",
        TERM="xterm",
        **{f"{_dev_runner().variable(name)}_PORT": str(port) for name, port in ports.items()},
    )
    return env


def port_free(port: int) -> bool:
    """Free as `make dev` itself judges it (deploy/dev/run.py's own check)."""
    return not _dev_runner().port_in_use(port)


def _dev_runner() -> ModuleType:
    return load_script(ROOT / "deploy" / "dev" / "run.py", "bookshop_dev_run")
