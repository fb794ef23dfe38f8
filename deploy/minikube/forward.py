"""Port-forwards that stay up: what `make k8s-up` leaves running in the background.

One process per forward (`kubectl port-forward service/<name> <local>:<remote>` for k8s-up),
checked every few seconds by an HTTP request through it, and started again when it ends or
stops answering: kubectl keeps listening after the pod it forwards to is replaced (a rollout,
an eviction), failing every connection instead of exiting. Restarts back off, so a Service that
is gone does not spin.
"""

from __future__ import annotations

import http.client
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

HOST = "127.0.0.1"
CHECK_SECONDS = 5.0
CHECK_TIMEOUT_SECONDS = 2.0
FAILURES_BEFORE_RESTART = 3
# A forward that has not answered yet is given this long to start (kubectl takes a second or
# two, more on a busy machine) before its failed checks count.
STARTUP_GRACE_SECONDS = 15.0
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
STOP_SECONDS = 10.0


@dataclass(frozen=True)
class Forward:
    """127.0.0.1:<local> to port <remote> of Service <service>; ``probe`` is a path it answers
    without credentials (any HTTP status counts: the forward works)."""

    service: str
    local: int
    remote: int
    probe: str


def answers(port: int, path: str, timeout: float = CHECK_TIMEOUT_SECONDS) -> bool:
    """Whether an HTTP request through 127.0.0.1:<port> gets any response."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        connection.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return True


class Forwarder:
    """Keeps a process per Forward running and answering, until ``stop()``."""

    def __init__(
        self,
        forwards: Sequence[Forward],
        command: Callable[[Forward], list[str]],
        *,
        log: Callable[[str], None] = print,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self._forwards = list(forwards)
        self._command = command
        self._log = log
        self._check_seconds = check_seconds
        self._stopping = threading.Event()
        self._processes: dict[Forward, subprocess.Popen[bytes]] = {}
        self._failures = dict.fromkeys(self._forwards, 0)
        self._backoff = dict.fromkeys(self._forwards, FIRST_BACKOFF_SECONDS)
        self._not_before = dict.fromkeys(self._forwards, 0.0)
        self._started = dict.fromkeys(self._forwards, 0.0)
        # whether each forward's current process has answered a check yet, and restarts so far
        self.answered = dict.fromkeys(self._forwards, False)
        self.restarts = dict.fromkeys(self._forwards, 0)

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                for forward in self._forwards:
                    self._keep(forward)
                self._stopping.wait(self._check_seconds)
        finally:
            self._end_all()

    def _keep(self, forward: Forward) -> None:
        process = self._processes.get(forward)
        if process is not None and process.poll() is None:
            if answers(forward.local, forward.probe):
                self._failures[forward] = 0
                self._backoff[forward] = FIRST_BACKOFF_SECONDS
                self.answered[forward] = True
                return
            starting = time.monotonic() - self._started[forward] < STARTUP_GRACE_SECONDS
            if not self.answered[forward] and starting:
                return
            self._failures[forward] += 1
            if self._failures[forward] < FAILURES_BEFORE_RESTART:
                return
            self._log(f"forward :{forward.local} -> {forward.service} stopped answering")
            self._end(process)
        now = time.monotonic()
        if now < self._not_before[forward]:
            return
        if process is not None:
            self._log(f"forward :{forward.local} -> {forward.service}: starting it again")
            self.restarts[forward] += 1
            self._not_before[forward] = now + self._backoff[forward]
            self._backoff[forward] = min(self._backoff[forward] * 2, MAX_BACKOFF_SECONDS)
        self._failures[forward] = 0
        self._started[forward], self.answered[forward] = now, False
        self._processes[forward] = subprocess.Popen(self._command(forward))  # noqa: S603

    def _end(self, process: subprocess.Popen[bytes]) -> None:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _end_all(self) -> None:
        for process in self._processes.values():
            if process.poll() is None:
                self._end(process)
