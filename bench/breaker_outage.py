"""shop's POST /orders during a books outage: circuit breaker enabled vs disabled, in one run.

    uv run python bench/breaker_outage.py [--requests 200] [--seconds 10] [--slow-senders 10]

Two scenarios, each with two ``shop serve`` processes (SQLite in a temp dir, migrated): one with
the books breaker on the design §7 defaults (window 20, minimum 10 calls, 50% failures, open 10 s)
and one with ``DEPENDENCIES__BOOKS__BREAKER__ENABLED=false`` (timeouts and retries only). Every
other setting is the design default too (connect 0.5 s, read 2 s, deadline 5 s, 3 attempts).

    black hole   books' port accepts connections and never answers: every call waits for its
                 timeout, which is what a breaker saves
    refused      nothing listens on books' port (books simply stopped)

Per scenario: a warm-up that trips the enabled breaker (and warms the disabled shop), then POST
/orders sent one after another, up to --requests per mode and at most --seconds per mode. Under
the black hole a breaker-disabled request waits out the 5 s deadline, so that mode is sent by
--slow-senders concurrent senders (each one sequential) to get a sample within the time box; the
latency of a request that only waits on a socket does not depend on its neighbours. The table
shows status codes and p50/p99/max latency per mode and the p99 ratio disabled/enabled.

Bounded in time: about 40 s with the defaults (the total is printed); a mode never sends past
its --seconds, so one run takes at most the start-up (60 s cap), two warm-ups (30 s cap each) and
four modes of --seconds plus one 5 s deadline each. Everything listens on 127.0.0.1; every process
started is stopped at the end, also on Ctrl-C or SIGTERM. Figures, never a pass/fail gate: the
exit status is 0 unless the run itself failed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from chassis import migrations

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent
SHOP_MIGRATIONS = Path(__file__).resolve().parents[1] / "services/shop/src/shop/migrations"
ORDER = json.dumps({"items": [{"book_id": 1, "quantity": 1}]}).encode()
START_TIMEOUT = 60.0
WARM_UP_TIMEOUT = 30.0
EXPECTED_OPEN_P99_MS = 10.0
MACHINE_PREFIXES = ("OTEL_", "DATABASE_URL", "ENVIRONMENT")
BLACK_HOLE, REFUSED = "black hole", "refused"
MODES: dict[str, dict[str, str]] = {
    "enabled": {},
    "disabled": {"DEPENDENCIES__BOOKS__BREAKER__ENABLED": "false"},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class BlackHole:
    """Accepts every connection and never answers (nor closes) until :meth:`close`."""

    def __init__(self) -> None:
        self._listener = socket.create_server((HOST, 0), backlog=512)
        self.port = int(self._listener.getsockname()[1])
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="black-hole", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for connection in self._held:
            with contextlib.suppress(OSError):
                connection.close()


@dataclass
class Shop:
    label: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def breaker(self) -> str:
        _, body = self.get("/health/ready")
        return str(json.loads(body)["checks"]["books"].get("breaker", "?"))

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with {self.process.returncode}: {self.tail()}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.get("/health/ready")[0] == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.label} did not become ready: {self.tail()}")

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclass
class Measurement:
    scenario: str
    mode: str
    senders: int
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    details: dict[str, str] = field(default_factory=dict)  # one problem detail per status

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] * 1000 if ordered else 0.0


class Sender:
    """One keep-alive connection sending POST /orders one after another."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection: http.client.HTTPConnection | None = None

    def post_order(self) -> tuple[str, float, str]:
        started = time.perf_counter()
        detail = ""
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
            self.connection.request(
                "POST", "/orders", body=ORDER, headers={"content-type": "application/json"}
            )
            response = self.connection.getresponse()
            body = response.read()
            status = str(response.status)
            with contextlib.suppress(ValueError, AttributeError):
                detail = str(json.loads(body).get("detail", ""))
            if response.getheader("connection", "").lower() == "close":
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            status = type(exc).__name__
        return status, time.perf_counter() - started, detail

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def start_shop(label: str, books_port: int, chat_port: int, workdir: Path, **env: str) -> Shop:
    database = workdir / f"{label}.db"
    migrations.upgrade(SHOP_MIGRATIONS, f"sqlite:///{database}")
    variables = {
        name: value
        for name, value in os.environ.items()
        if "__" not in name and not name.startswith(MACHINE_PREFIXES)
    }
    variables.update(
        DATABASE_URL=f"sqlite:///{database}",
        DEPENDENCIES__BOOKS__BASE_URL=f"http://{HOST}:{books_port}",
        DEPENDENCIES__CHAT__BASE_URL=f"http://{HOST}:{chat_port}",
        OTEL_TRACES_EXPORTER="none",
        LOGGING__ACCESS_LOG="false",
        SHUTDOWN__GRACE_SECONDS="2",
        **env,
    )
    port = free_port()
    log = workdir / f"{label}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [BIN / "shop", "serve", "--host", HOST, "--port", str(port)],
            env=variables,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return Shop(label, port, process, log)


def warm_up(enabled: Shop, disabled: Shop, scenario: str) -> None:
    """Trips the enabled shop's breaker (10 concurrent failing orders: the design minimum) and
    sends the disabled shop one order, all at once."""
    deadline = time.monotonic() + WARM_UP_TIMEOUT
    with ThreadPoolExecutor(11) as pool:
        while enabled.breaker() != "open":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{scenario}: the breaker did not open during the warm-up")
            jobs = [pool.submit(Sender(enabled.port).post_order) for _ in range(10)]
            jobs.append(pool.submit(Sender(disabled.port).post_order))
            for job in jobs:
                job.result()


def measure(
    shop: Shop, scenario: str, mode: str, *, requests: int, seconds: float, senders: int
) -> Measurement:
    result = Measurement(scenario, mode, senders)
    lock = threading.Lock()
    budget = {"left": requests}
    stop_at = time.monotonic() + seconds

    def send() -> None:
        sender = Sender(shop.port)
        try:
            while time.monotonic() < stop_at:
                with lock:
                    if budget["left"] == 0:
                        return
                    budget["left"] -= 1
                status, elapsed, detail = sender.post_order()
                with lock:
                    result.statuses[status] += 1
                    result.details.setdefault(status, detail)
                    result.latencies.append(elapsed)
        finally:
            sender.close()

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


def table(results: list[Measurement]) -> str:
    header = (
        f"{'scenario':<11} {'breaker':<9} {'n':>4} {'senders':>7}  "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  statuses"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        statuses = " ".join(f"{code}x{count}" for code, count in sorted(r.statuses.items()))
        lines.append(
            f"{r.scenario:<11} {r.mode:<9} {len(r.latencies):>4} {r.senders:>7}  "
            f"{r.percentile(50):>8.1f} {r.percentile(99):>8.1f} {max(r.latencies) * 1000:>8.1f}"
            f"  {statuses}"
        )
    lines.append("")
    for r in results:
        for code, detail in sorted(r.details.items()):
            lines.append(f"{r.scenario:<11} {r.mode:<9} {code}: {detail}")
    return "\n".join(lines)


def run_scenario(
    name: str, enabled: Shop, disabled: Shop, args: argparse.Namespace
) -> list[Measurement]:
    warm_up(enabled, disabled, name)
    results = [
        measure(enabled, name, "enabled", requests=args.requests, seconds=args.seconds, senders=1)
    ]
    if enabled.breaker() != "open":
        print(f"note: {name}: the breaker left 'open' during the measurement", file=sys.stderr)
    senders = args.slow_senders if name == BLACK_HOLE else 1
    results.append(
        measure(
            disabled,
            name,
            "disabled",
            requests=args.requests,
            seconds=args.seconds,
            senders=senders,
        )
    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="at most, per mode")
    parser.add_argument("--seconds", type=float, default=10.0, help="at most, per mode")
    parser.add_argument(
        "--slow-senders", type=int, default=10, help="senders of the black-hole, no-breaker mode"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop the shops
    began = time.monotonic()
    results: list[Measurement] = []
    with contextlib.ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="breaker-outage-"))
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        hole = BlackHole()
        cleanup.callback(hole.close)
        refused_port = free_port()  # nothing listens there
        books_ports = {BLACK_HOLE: hole.port, REFUSED: refused_port}
        started: dict[tuple[str, str], Shop] = {}
        for scenario, books_port in books_ports.items():  # all four start at once
            for mode, env in MODES.items():
                label = f"{scenario.replace(' ', '-')}-{mode}"
                shop = start_shop(label, books_port, refused_port, workdir, **env)
                cleanup.callback(shop.stop)
                started[scenario, mode] = shop
        for shop in started.values():
            shop.wait_ready()
        phases = [f"4 shops migrated and ready in {time.monotonic() - began:.1f} s"]
        for scenario in books_ports:
            enabled, disabled = started[scenario, "enabled"], started[scenario, "disabled"]
            scenario_began = time.monotonic()
            results += run_scenario(scenario, enabled, disabled, args)
            phases.append(f"{scenario} {time.monotonic() - scenario_began:.1f} s")
    print("shop POST /orders while books is unreachable (design §7 defaults, 127.0.0.1)")
    print(table(results))
    print()
    for scenario in (BLACK_HOLE, REFUSED):
        enabled, disabled = (r for r in results if r.scenario == scenario)
        ratio = disabled.percentile(99) / max(enabled.percentile(99), 1e-9)
        verdict = "yes" if enabled.percentile(99) < EXPECTED_OPEN_P99_MS else "NO"
        print(
            f"{scenario:<11} p99 disabled/enabled = {ratio:,.0f}x   "
            f"breaker-open p99 < {EXPECTED_OPEN_P99_MS:.0f} ms: {verdict}"
        )
    print(f"total {time.monotonic() - began:.1f} s ({', '.join(phases)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
