"""``make bench``: books with the whole chassis against connexion 3's FlaskApp and bare Flask.

Each contender is ONE server process on 127.0.0.1 (a free port), serving the same handler
(``books.handlers.get_book`` in a SQLAlchemy session) from one shared SQLite database made with
``books migrate`` + ``books seed``. Each is warmed up, then loaded with
``wrk -t1 -c16 -d${BENCH_SECONDS:-10}s --latency`` on ``GET /books/1``, then stopped; the table
shows requests/s, p50/p99 latency and the ratios. Also printed: the RSS of a books process after
10,000 requests, milliseconds from process start to the first 200 from /health/ready (median of
3 starts), and the spans that reached the in-bench OTLP receiver. ``books-unguarded`` is books
on uvicorn's plain httptools protocol, without the connection guard (chassis.http_guard): the
pair shows what the guard costs.

Prerequisite: ``wrk`` (Debian: ``apt-get install wrk``). Figures, never a pass/fail gate.

Environment: BENCH_SECONDS (measured seconds per contender, default 10), BENCH_WARMUP (default
3), BENCH_ROUNDS (interleaved rounds, the median is reported; default 1), BENCH_ONLY (comma
separated contender keys, e.g. ``books,flask-uvicorn``).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from otlp_sink import OtlpSink
from results import record

from chassis.dev_issuer import DevIssuer

HOST = "127.0.0.1"
PATH = "/books/1"
READY = "/health/ready"
BENCH_DIR = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CONNECTIONS = 16
RSS_REQUESTS = 10_000
STARTS = 3
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

# `books serve`, but on uvicorn's plain httptools protocol instead of the guarded one.
UNGUARDED_BOOKS = (
    "import sys, chassis.server; "
    "from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol; "
    "chassis.server.guarded_protocol = lambda http: HttpToolsProtocol; "
    "from books.cli import cli; sys.exit(cli.main(sys.argv[1:]))"
)

_live: set[subprocess.Popen[bytes]] = set()


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    command: list[str]
    ready_path: str = PATH
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    contender: Contender
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0


def contenders(chassis_env: dict[str, str]) -> list[Contender]:
    uvicorn = [str(BIN / "python"), "-m", "uvicorn", "--app-dir", str(BENCH_DIR), "--factory"]
    quiet = ["--no-access-log", "--log-level", "warning", "--host", HOST, "--port", "{port}"]
    serve = ["serve", "--host", HOST, "--port", "{port}"]
    found = [
        Contender(
            "books",
            "books: full chassis (uvicorn)",
            [str(BIN / "books"), *serve],
            ready_path=READY,
            env=chassis_env,
        ),
        Contender(
            "books-unguarded",
            "books without the connection guard",
            [str(BIN / "python"), "-c", UNGUARDED_BOOKS, *serve],
            ready_path=READY,
            env=chassis_env,
        ),
        Contender(
            "connexion-flask",
            "connexion 3 FlaskApp (uvicorn)",
            [*uvicorn, "baselines:create_connexion_flask_app", *quiet],
        ),
        Contender(
            "flask-uvicorn",
            "bare Flask (uvicorn --interface wsgi)",
            [*uvicorn, "--interface", "wsgi", "baselines:create_flask_app", *quiet],
        ),
    ]
    if (BIN / "granian").exists():
        found.append(
            Contender(
                "flask-granian",
                "bare Flask (granian wsgi, 1 worker)",
                [
                    str(BIN / "granian"),
                    "--interface",
                    "wsgi",
                    "--workers",
                    "1",
                    "--no-ws",
                    "--log-level",
                    "warning",
                    "--working-dir",
                    str(BENCH_DIR),
                    "--factory",
                    "--host",
                    HOST,
                    "--port",
                    "{port}",
                    "baselines:create_flask_app",
                ],
            )
        )
    return found


# -- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(
    contender: Contender, env: dict[str, str], log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int, float]]:
    """Starts the contender; yields (process, port, ms until ready_path answered 200)."""
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in contender.command]
    with log.open("ab") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            env={**env, **contender.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: cleanup reaches worker children
        )
    _live.add(process)
    try:
        ready_ms = wait_ready(process, port, contender.ready_path, started, log)
        yield process, port, ready_ms
    finally:
        stop(process)


def wait_ready(
    process: subprocess.Popen[bytes], port: int, path: str, started: float, log: Path
) -> float:
    deadline = started + START_TIMEOUT
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {log}")
        try:
            status, _ = get(port, path, timeout=1.0)
            if status == 200:
                return (time.perf_counter() - started) * 1000
        except OSError:
            pass
        time.sleep(0.002)
    raise RuntimeError(f"server not ready after {START_TIMEOUT}s; see {log}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
    _live.discard(process)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def stop_all() -> None:
    for process in list(_live):
        stop(process)


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def hammer(port: int, path: str, total: int, clients: int = 4) -> int:
    """Sends ``total`` keep-alive GETs from ``clients`` threads; returns the non-200 count."""
    failures = [0] * clients

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            for _ in range(total // clients + (index < total % clients)):
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                failures[index] += response.status != 200
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(failures)


def cpu_seconds(group: int) -> float:
    """User + system CPU time of every live process in the process group ``group``.

    Less sensitive to other load on the machine than requests/s: CPU per request is what a
    server costs, whoever else shares the cores.
    """
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # pgrp; utime and stime are fields 14 and 15 of stat
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- wrk -----------------------------------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk(port: int, seconds: float) -> dict[str, float]:
    command = [
        "wrk",
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        f"http://{HOST}:{port}{PATH}",
    ]
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    figures = {
        "rps": float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        "requests": float(_find(r"(\d+) requests in", out)),
        "p50": _latency_ms(_find(r"50%\s+([\d.]+\w+)", out)),
        "p99": _latency_ms(_find(r"99%\s+([\d.]+\w+)", out)),
        "non2xx": float(_find(r"Non-2xx or 3xx responses: (\d+)", out, "0")),
    }
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    figures["socket_errors"] = float(sum(map(int, socket_errors.groups()))) if socket_errors else 0
    return figures


def _find(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text)
    if match:
        return match.group(1)
    if default is not None:
        return default
    raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{text}")


def _latency_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


# -- the run -------------------------------------------------------------------------------------


def base_env(directory: Path) -> dict[str, str]:
    """This environment less OTEL_*/BENCH_*, with the shared database in ``directory``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BENCH_"))}
    env["DATABASE_URL"] = f"sqlite:///{directory / 'books.db'}"
    return env


def books_env(sink: OtlpSink) -> dict[str, str]:
    """The whole chassis on: every request traced and exported, counted and logged as JSON;
    books' writes secured (the bench only reads, but books needs its issuer's key to start)."""
    return {
        "AUTH__PUBLIC_KEY": DevIssuer.generate().public_pem(),
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
        "OTEL_TRACES_SAMPLER": "always_on",
        "LOGGING__FORMAT": "json",
        "LOGGING__ACCESS_LOG": "true",
    }


def prepare_database(env: dict[str, str]) -> None:
    for command in ("migrate", "seed"):
        subprocess.run(
            [str(BIN / "books"), command],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )


def bench_one(
    contender: Contender,
    env: dict[str, str],
    logs: Path,
    result: Result,
    warmup: float,
    seconds: float,
    reference: dict[str, object] | None,
) -> dict[str, object]:
    with server(contender, env, logs / f"{contender.key}.log") as (process, port, _ready):
        status, body = get(port, PATH)
        if status != 200:
            raise RuntimeError(f"{contender.label}: GET {PATH} answered {status}: {body[:200]!r}")
        document = json.loads(body)
        if reference is not None and document != reference:
            print(f"  WARNING: {contender.label} answers a different body: {document}")
        wrk(port, warmup)
        cpu_before = cpu_seconds(process.pid)
        figures = wrk(port, seconds)
        cpu = cpu_seconds(process.pid) - cpu_before
    result.rps.append(figures["rps"])
    result.p50.append(figures["p50"])
    result.p99.append(figures["p99"])
    result.cpu_us.append(1e6 * cpu / max(1.0, figures["requests"]))
    result.requests += int(figures["requests"])
    result.errors += int(figures["non2xx"] + figures["socket_errors"])
    print(
        f"  {contender.label:<40} {figures['rps']:>9.0f} req/s "
        f"{result.cpu_us[-1]:>6.0f} CPU us/req",
        flush=True,
    )
    return document


def startup_and_rss(
    books: Contender, env: dict[str, str], logs: Path
) -> tuple[list[float], int, int]:
    ready: list[float] = []
    rss_before = rss_after = 0
    for attempt in range(STARTS):
        with server(books, env, logs / "books-startup.log") as (process, port, ready_ms):
            ready.append(ready_ms)
            if attempt == 0:
                rss_before = rss_kib(process.pid)
                failures = hammer(port, PATH, RSS_REQUESTS)
                if failures:
                    print(f"  WARNING: {failures} of {RSS_REQUESTS} requests were not 200")
                rss_after = rss_kib(process.pid)
    return ready, rss_before, rss_after


# `books <command>` as its console script runs it, then the peak RSS of this very process image
# (VmHWM) on stderr. The rusage of a child would count the bench's own pages, copied at fork.
PEAK_WRAPPER = """
import sys
from books.cli import main
sys.argv = ["books", sys.argv[1]]
code = main()
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(f"peak-kib {status}", file=sys.stderr)
sys.exit(code)
"""


def one_shots(env: dict[str, str]) -> dict[str, tuple[float, int]]:
    """`books migrate` and `books seed` on a database they have nothing to add to: median
    seconds and peak RSS (KiB) of STARTS runs each, as the compose and Kubernetes one-shots run
    at every start."""
    figures = {}
    for command in ("migrate", "seed"):
        runs = []
        for _ in range(STARTS):
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-c", PEAK_WRAPPER, command], env=env, capture_output=True,
                text=True, check=False, timeout=120,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            if result.returncode != 0:
                raise RuntimeError(f"books {command} exited {result.returncode}: {result.stderr}")
            peak = int(result.stderr.rsplit("peak-kib ", 1)[1].split()[0])
            runs.append((seconds, peak))
        figures[command] = (
            statistics.median(seconds for seconds, _ in runs),
            int(statistics.median(peak for _, peak in runs)),
        )
    return figures


def main() -> int:
    if shutil.which("wrk") is None:
        print(
            "bench: wrk is not installed. It is the one prerequisite of `make bench`:\n"
            "  Debian/Ubuntu: sudo apt-get install wrk    macOS: brew install wrk",
            file=sys.stderr,
        )
        return 2
    seconds = float(os.environ.get("BENCH_SECONDS", "10"))
    warmup = float(os.environ.get("BENCH_WARMUP", "3"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "1"))
    only = {k for k in os.environ.get("BENCH_ONLY", "").split(",") if k}

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, OtlpSink() as sink:
        directory = Path(tmp)
        env = base_env(directory)
        prepare_database(env)
        commands = one_shots(env)
        everyone = [c for c in contenders(books_env(sink)) if not only or c.key in only]
        results = {c.key: Result(c) for c in everyone}
        print(
            f"bench: GET {PATH}, wrk -t1 -c{CONNECTIONS} -d{seconds:g}s (warm-up {warmup:g}s), "
            f"{rounds} round(s), CPUs: {os.cpu_count()}, Python {sys.version.split()[0]}, "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        reference: dict[str, object] | None = None
        for round_number in range(rounds):
            if rounds > 1:
                print(f"round {round_number + 1}/{rounds}", flush=True)
            for contender in everyone:
                reference = bench_one(
                    contender, env, directory, results[contender.key], warmup, seconds, reference
                )
        time.sleep(0.5)  # the last export of books' batch processor is sent on shutdown
        spans, posts, bad_posts = sink.spans, sink.requests, sink.errors

        books = next((c for c in everyone if c.key == "books"), None)
        startup = startup_and_rss(books, env, directory) if books else None
        access_lines = sum(1 for _ in (directory / "books.log").open("rb")) if books else 0
        print_report(results, spans, posts, bad_posts, access_lines, startup)
        for command, (seconds, peak) in commands.items():
            print(
                f"books {command} with nothing to do: {seconds:.2f} s, peak RSS "
                f"{peak / 1024:.1f} MiB (median of {STARTS})"
            )
        written = record(figures(results, startup, commands), fresh=True)
        print(f"figures: {written.relative_to(BENCH_DIR.parent)}")
    return 0


def figures(
    results: dict[str, Result],
    startup: tuple[list[float], int, int] | None,
    commands: dict[str, tuple[float, int]],
) -> dict[str, object]:
    """What bench/results.py keeps of this run (medians, as printed)."""
    found: dict[str, object] = {
        key: {
            "rps": round(statistics.median(result.rps), 1),
            "cpu_us": round(statistics.median(result.cpu_us), 1),
        }
        for key, result in results.items()
        if result.rps
    }
    # books' share of the raw ASGI ceiling, once make bench has that contender (issue 14)
    ceiling = results.get("asgi-ceiling")
    found["ceiling_share"] = (
        round(statistics.median(results["books"].rps) / statistics.median(ceiling.rps), 3)
        if ceiling and ceiling.rps and "books" in results and results["books"].rps
        else None
    )
    found["rss_mib"] = round(startup[2] / 1024, 1) if startup else None
    found["start_ms"] = round(statistics.median(startup[0])) if startup else None
    for command, (_, peak) in commands.items():
        found[f"{command}_rss_mib"] = round(peak / 1024, 1)
    return found


def print_report(
    results: dict[str, Result],
    spans: int,
    posts: int,
    bad_posts: int,
    access_lines: int,
    startup: tuple[list[float], int, int] | None,
) -> None:
    median = {key: statistics.median(r.rps) for key, r in results.items()}
    books = median.get("books")
    print()
    header = (
        f"{'contender':<40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us':>7} "
        f"{'errors':>7} {'books/x':>8}"
    )
    print(header)
    print("-" * len(header))
    for key, result in results.items():
        ratio = f"{books / median[key]:.2f}x" if books and key != "books" else "-"
        print(
            f"{result.contender.label:<40} {median[key]:>9.0f} "
            f"{statistics.median(result.p50):>8.2f} {statistics.median(result.p99):>8.2f} "
            f"{statistics.median(result.cpu_us):>7.0f} {result.errors:>7} {ratio:>8}"
        )
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(f"NOTE: load average {load:.1f} > {os.cpu_count()} CPUs: other work shared the cores")
    print()
    if books:
        for key, name in (
            ("books-unguarded", "books without the connection guard"),
            ("connexion-flask", "connexion FlaskApp"),
            ("flask-uvicorn", "bare Flask on uvicorn"),
            ("flask-granian", "bare Flask on granian"),
        ):
            if key in median:
                print(f"books / {name}: {books / median[key]:.2f}x")
        served = results["books"].requests
        print(
            f"OTLP sink: {spans} spans received in {posts} export requests ({bad_posts} bad); "
            f"books served {served} measured requests (+ warm-up), wrote {access_lines} log lines"
        )
    if startup:
        ready, before, after = startup
        print(
            f"books RSS: {before / 1024:.1f} MiB when ready, {after / 1024:.1f} MiB after "
            f"{RSS_REQUESTS} requests"
        )
        print(
            f"books start to first 200 from {READY}: {statistics.median(ready):.0f} ms median "
            f"of {len(ready)} ({', '.join(f'{r:.0f}' for r in ready)})"
        )


def _terminated(signum: int, _: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        stop_all()
