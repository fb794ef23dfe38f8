"""How many orders a second the bookshop takes on this machine: the knee of POST /orders.

    uv run --all-packages python bench/order_capacity.py [--rates 10,20,...] [--seconds 15]

books, shop and chat, one `<service> serve` process each (as `make dev` runs them), each with
its own database on a throwaway PostgreSQL server (Debian's binaries, as the tests use: it needs
the postgresql package, which `.ci/run` installs), JSON access logs on, every span exported to a
local OTLP receiver in a process of its own (--no-traces: none). One well-stocked book; every
order is one copy of it with its own Idempotency-Key: shop prices and reserves it at books,
confirms it and posts a notice to chat, which checks the book at books.

An open-model generator (asyncio and httpx, in this process) sends POST /orders at a constant
rate per step, whatever the answers: each request's latency is measured from its *scheduled*
start, so a queue building up shows as latency, not as a lower rate. Per step: p50, p95 and p99,
errors (anything but 201), and CPU per order of each part from /proc: books, shop, chat,
PostgreSQL's server processes, the span receiver ("sink") and the generator itself. The knee is
the highest rate with p95 at most 100 ms and no errors. The steps stop after the first one past
the knee.

Figures, never a pass/fail gate: the exit status is 0 unless the run itself failed. Everything
listens on 127.0.0.1 and stops at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy"))
sys.path.insert(0, str(ROOT / "bench"))
import service_registry  # noqa: E402 - deploy/ holds no package
from results import record  # noqa: E402 - bench/ holds no package

from chassis.dev_issuer import DevIssuer  # noqa: E402
from chassis.testing.postgres import LocalPostgresServer  # noqa: E402
from chassis.testing.processes import (  # noqa: E402
    ServiceProcess,
    clean_environment,
    console_script,
    free_port,
)

SERVICES = ("books", "shop", "chat")
DEFAULT_RATES = (10, 20, 30, 40, 50, 60, 70, 80, 100, 120, 150)
P95_LIMIT_MS = 100.0
REQUEST_TIMEOUT = 10.0
STOCK = 1_000_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Step:
    rate: int
    sent: int
    latencies_ms: list[float]
    errors: int
    cpu_ms_per_order: dict[str, float]

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def healthy(self) -> bool:
        return self.errors == 0 and self.percentile(0.95) <= P95_LIMIT_MS


def cpu_ticks(pid: int, *, reaped_children: bool = False) -> int:
    """utime + stime of ``pid`` (0 once it is gone), plus with ``reaped_children`` what its
    children that ended and were waited for used (cutime + cstime): a backend that exits during
    a step is counted in the postmaster then."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return sum(int(value) for value in fields[11 : 15 if reaped_children else 13])


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (PostgreSQL's backends)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


class CpuMeter:
    """CPU seconds of each part, read from /proc before and after a step: a server with the
    processes below it (PostgreSQL's backends), the generator alone (the servers are its
    children)."""

    def __init__(self, trees: Mapping[str, int], alone: Mapping[str, int]) -> None:
        self.trees, self.alone = dict(trees), dict(alone)

    def read(self) -> dict[str, float]:
        ticks = {
            name: sum(cpu_ticks(pid, reaped_children=True) for pid in descendants(root))
            for name, root in self.trees.items()
        }
        ticks |= {name: cpu_ticks(pid) for name, pid in self.alone.items()}
        return {name: value / CLOCK_TICKS for name, value in ticks.items()}


async def open_model(
    url: str, book: int, rate: int, seconds: float
) -> tuple[list[float], int, int]:
    """POST /orders at ``rate`` per second for ``seconds``; latencies from each scheduled start."""
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    body = {"items": [{"book_id": book, "quantity": 1}]}
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT, limits=limits) as client:

        async def one(scheduled: float) -> None:
            nonlocal errors
            try:
                response = await client.post(
                    "/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
                )
                ok = response.status_code == 201
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - scheduled) * 1000)
            errors += not ok

        started = time.perf_counter()
        tasks = []
        for index in range(total):
            scheduled = started + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
    return latencies, errors, total


class SpanSink:
    """bench/otlp_sink.py in a process of its own, so that receiving spans costs the generator
    nothing; ``received`` is what it said when it stopped."""

    def __init__(self) -> None:
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.received = ""
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "otlp_sink.py"), str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not self._listening(port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the OTLP sink did not start")
            time.sleep(0.05)

    @staticmethod
    def _listening(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.received = (self.process.communicate(timeout=10)[0] or "").strip()
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


@contextmanager
def bookshop(
    workdir: Path, postgres: LocalPostgresServer, sink: SpanSink, *, traces: bool
) -> Iterator[dict[str, ServiceProcess]]:
    registry = service_registry.python_services()
    issuer = DevIssuer.generate()
    ports = {name: free_port() for name in SERVICES}
    common = clean_environment(
        LOGGING__FORMAT="json",
        OTEL_TRACES_EXPORTER="otlp" if traces else "none",
        OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint,
        OTEL_TRACES_SAMPLER="always_on",
        AUTH__PUBLIC_KEY=issuer.public_pem(),
    )
    processes: dict[str, ServiceProcess] = {}
    stack = ExitStack()
    for name in SERVICES:
        env = {**common, "DATABASE_URL": postgres.create_database(f"{name}_capacity")}
        for dependency in registry[name].dependencies:
            key = f"DEPENDENCIES__{service_registry.env_name(dependency)}"
            env[f"{key}__BASE_URL"] = f"http://127.0.0.1:{ports[dependency]}"
            scopes = registry[name].credentials.get(dependency)
            if scopes:
                env[f"{key}__TOKEN"] = issuer.mint(audience=dependency, scopes=scopes, subject=name)
        with (workdir / f"{name}.log").open("ab") as log:
            for command in ("migrate", "seed"):
                subprocess.run(
                    [console_script(name), command], env=env, stdout=log, stderr=subprocess.STDOUT,
                    check=True, timeout=120,
                )  # fmt: skip
        processes[name] = ServiceProcess(
            name, port=ports[name], env=env, log_path=workdir / f"{name}.log", new_session=True
        )
    with stack:
        for process in processes.values():
            process.start(wait=False)
            stack.callback(process.terminate)  # each one stops, whichever fails
        for process in processes.values():
            process.wait_until_ready()
        processes["books"].env["BENCH_TOKEN"] = issuer.mint(
            audience="books", scopes=("catalog:write",)
        )
        yield processes


def well_stocked_book(books_url: str, token: str) -> int:
    response = httpx.post(
        f"{books_url}/books",
        json={
            "isbn": "9790000000017",
            "title": "Capacity",
            "author": "Bench",
            "price": "9.99",
            "stock": STOCK,
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=REQUEST_TIMEOUT,
    )
    response.raise_for_status()
    return int(response.json()["id"])


def run(rates: list[int], seconds: float, *, traces: bool = True) -> list[Step]:
    steps: list[Step] = []
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="capacity-")))
        sink = SpanSink()
        stack.callback(sink.stop)
        # Debian's binaries, not a container: its server processes are counted from /proc.
        postgres = stack.enter_context(LocalPostgresServer.launch())
        processes = stack.enter_context(bookshop(workdir, postgres, sink, traces=traces))
        book = well_stocked_book(processes["books"].url, processes["books"].env["BENCH_TOKEN"])
        parts = {name: process.pid for name, process in processes.items()}
        parts["postgres"] = postgres_pid(postgres)
        meter = CpuMeter(parts, {"sink": sink.process.pid, "generator": os.getpid()})
        asyncio.run(open_model(processes["shop"].url, book, 5, 2.0))  # warm-up: caches, pools
        print(
            f"order capacity: {seconds:g} s per step, rates {rates}, spans "
            f"{'exported' if traces else 'not exported'}, CPUs: {os.cpu_count()}",
            flush=True,
        )
        for rate in rates:
            before = meter.read()
            latencies, errors, sent = asyncio.run(
                open_model(processes["shop"].url, book, rate, seconds)
            )
            after = meter.read()
            cpu = {name: 1000 * (after[name] - before[name]) / max(1, sent) for name in after}
            step = Step(rate, sent, latencies, errors, cpu)
            steps.append(step)
            print(format_step(step), flush=True)
            if not step.healthy:
                break
    print(f"span receiver: {sink.received or 'no report'}", flush=True)
    return steps


def postgres_pid(postgres: LocalPostgresServer) -> int:
    """The postmaster's pid: the first line of postmaster.pid in the cluster's data directory."""
    return int((postgres.data_dir / "postmaster.pid").read_text().split()[0])


def format_step(step: Step) -> str:
    cpu = " ".join(f"{name} {value:5.1f}" for name, value in step.cpu_ms_per_order.items())
    return (
        f"  {step.rate:>4}/s  p50 {step.percentile(0.5):7.1f}  p95 {step.percentile(0.95):7.1f}  "
        f"p99 {step.percentile(0.99):7.1f} ms  errors {step.errors:>4}/{step.sent}  "
        f"CPU ms/order: {cpu}"
    )


def server_cpu_ms(step: Step) -> float:
    """CPU per order in books, shop, chat and PostgreSQL: the generator and the span receiver
    are not the shop's (a real collector runs elsewhere)."""
    return sum(
        value for name, value in step.cpu_ms_per_order.items() if name not in {"generator", "sink"}
    )


def report(steps: list[Step], *, traces: bool = True) -> None:
    healthy = [step for step in steps if step.healthy]
    print(f"load average {os.getloadavg()[0]:.1f}")
    knee = healthy[-1] if healthy else None
    if traces:  # the figure issue 14 tracks: spans exported, as the services run
        written = record(
            {
                "order_knee_per_s": knee.rate if knee else None,
                "order_cpu_ms_at_knee": round(server_cpu_ms(knee), 1) if knee else None,
            }
        )
        print(f"figures: {written.relative_to(ROOT)}")
    if knee is None:
        print(f"knee: below {steps[0].rate} orders/s (p95 <= {P95_LIMIT_MS:g} ms, no errors)")
        return
    typical = statistics.median(server_cpu_ms(step) for step in healthy)
    print(
        f"knee: {knee.rate} orders/s (the highest rate with p95 <= {P95_LIMIT_MS:g} ms and no "
        f"errors); CPU per order in books, shop, chat and PostgreSQL: {server_cpu_ms(knee):.1f} "
        f"ms at the knee, {typical:.1f} ms median of the healthy steps"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)))
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--no-traces", action="store_true", help="OTEL_TRACES_EXPORTER=none (default: export all)"
    )
    arguments = parser.parse_args()
    try:
        rates = sorted({int(rate) for rate in arguments.rates.split(",") if rate.strip()})
    except ValueError:
        parser.error(f"--rates: whole numbers separated by commas, not {arguments.rates!r}")
    if not rates or rates[0] <= 0:
        parser.error("--rates: at least one rate, each above 0")
    if arguments.seconds <= 0:
        parser.error("--seconds: above 0")
    # SIGTERM unwinds like Ctrl-C: the ExitStacks stop the services, PostgreSQL and the sink.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    traces = not arguments.no_traces
    report(run(rates, arguments.seconds, traces=traces), traces=traces)
    return 0


if __name__ == "__main__":
    sys.exit(main())
