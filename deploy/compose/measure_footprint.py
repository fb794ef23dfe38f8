"""Measures the memory the compose stack's processes need: the evidence for its ``mem_limit``s.

Needs no Docker. It runs, on this machine:

- a throwaway PostgreSQL cluster from the local binaries (chassis.testing), one database per
  service, as the compose init script makes;
- the dev issuer as compose's ``auth-init`` runs it (``python -m chassis.dev_issuer keys``, then
  ``mint`` shop's and locust's tokens for books): books gets its public key, shop and locust
  their tokens;
- the three services exactly as their images start them (``<service> migrate``, ``books seed``,
  ``<service> serve`` with ENVIRONMENT=production), exporting spans over OTLP/HTTP to a local
  sink that stands in for Jaeger;
- the Debian ``prometheus`` binary (when on PATH) scraping them every 5 s with exemplar storage,
  as the compose Prometheus does;

then drives traffic for ``--seconds`` with ``--clients`` concurrent users: the project's locust
load test (tests/load/locustfile.py, with its web UI on a free port, as the compose `locust`
service runs it) when locust is installed, else a built-in mix (catalog reads, orders placed
and cancelled through shop -> books -> chat, chat messages, a few live SSE followers, some
404s). It prints, per process, the RSS once ready, the peak RSS (VmHWM) and, for PostgreSQL,
the peak summed PSS of the postmaster and its backends (PSS counts shared buffers once, as a
cgroup does).

    uv run python deploy/compose/measure_footprint.py [--seconds 90] [--clients 24]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from chassis.testing.postgres import LocalPostgresServer, PostgresServer

HOST = "127.0.0.1"
LOCUSTFILE = Path(__file__).resolve().parents[2] / "tests" / "load" / "locustfile.py"
SERVICES = ("books", "shop", "chat")
BIN = Path(sys.executable).parent
SCRAPE_INTERVAL = "5s"
READY_TIMEOUT = 60.0
TOKEN_SECONDS = 7 * 24 * 3600  # as compose's auth-init mints them


@dataclass
class Sample:
    name: str
    pid: int
    ready_kib: int = 0
    peak_kib: int = 0
    samples: list[int] = field(default_factory=list)


class OtlpSink:
    """Accepts OTLP/HTTP exports and answers 200, as Jaeger's port 4318 would."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def postgres_pss_kib(postmaster: int) -> int:
    """PSS of the postmaster and every process it forked (backends, walwriter, ...)."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            pid = int(status.parent.name)
            if pid == postmaster or status_kib(pid, "PPid") == postmaster:
                total += pss_kib(pid)
    return total


def run_measured(command: list[str], env: dict[str, str], stdout: Path | None = None) -> int:
    """Runs a one-shot command (its output into ``stdout`` when given); returns its peak RSS in
    KiB (rusage of the waited child)."""
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(stdout.open("wb")) if stdout else subprocess.DEVNULL
        process = subprocess.Popen(  # noqa: S603 - our own console scripts
            command, env=env, stdout=output, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        stderr = process.stderr.read().decode() if process.stderr else ""
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {stderr[-2000:]}")
    return int(usage.ru_maxrss)


def credentials(
    directory: Path, env: dict[str, str], one_shots: dict[str, int]
) -> dict[str, dict[str, str]]:
    """What compose's auth-init makes, made the way it does (peak RSS in ``one_shots``): the
    variables that give books the issuer's public key, shop and locust their tokens for books."""
    issuer = [sys.executable, "-m", "chassis.dev_issuer"]
    one_shots["auth-init keys"] = run_measured([*issuer, "keys", str(directory)], env)
    tokens = {}
    for subject, scope in [("shop", "stock:reserve"), ("locust", "catalog:write")]:
        tokens[subject] = directory / f"{subject}-books.jwt"
        claims = ["--audience", "books", "--scope", scope, "--subject", subject]
        one_shots[f"auth-init mint {subject}"] = run_measured(
            [*issuer, "mint", str(directory), *claims, "--ttl", str(TOKEN_SECONDS)],
            env,
            stdout=tokens[subject],
        )
    return {
        "books": {"AUTH__PUBLIC_KEY_FILE": str(directory / "issuer.pub")},
        "shop": {"DEPENDENCIES__BOOKS__TOKEN_FILE": str(tokens["shop"])},
        "locust": {"LOAD_BOOKS_TOKEN_FILE": str(tokens["locust"])},
    }


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {READY_TIMEOUT}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        # Two signals: the first starts the production drain, the second skips it.
        for _ in range(2):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def postgres() -> Iterator[PostgresServer]:
    server = LocalPostgresServer.launch()
    try:
        yield server
    finally:
        server.close()


def prometheus_config(targets: dict[str, int], directory: Path) -> Path:
    jobs = "".join(
        f"  - job_name: {name}\n    static_configs:\n      - targets: ['{HOST}:{port}']\n"
        for name, port in targets.items()
    )
    path = directory / "prometheus.yml"
    path.write_text(
        f"global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: 15s\n"
        f"scrape_configs:\n{jobs}"
    )
    return path


def traffic(ports: dict[str, int], seconds: float, clients: int) -> dict[str, int]:
    """Mixed requests from ``clients`` threads for ``seconds``; returns counts per status."""
    counts: dict[str, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    books, shop, chat = (f"http://{HOST}:{ports[name]}" for name in SERVICES)
    book_ids = [b["id"] for b in httpx.get(f"{books}/books?limit=50").json()["items"]]

    def one(client: httpx.Client, rng: random.Random) -> int:
        book = rng.choice(book_ids)
        roll = rng.random()
        if roll < 0.30:
            return client.get(f"{books}/books/{book}").status_code
        if roll < 0.40:
            return client.get(f"{books}/books", params={"limit": 20}).status_code
        if roll < 0.60:
            order = client.post(
                f"{shop}/orders",
                json={"items": [{"book_id": book, "quantity": 1}]},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            if order.status_code == 201 and rng.random() < 0.7:  # keep stock from running out
                client.post(f"{shop}/orders/{order.json()['id']}/cancel")
            return order.status_code
        if roll < 0.65:
            return client.get(f"{shop}/orders", params={"limit": 20}).status_code
        if roll < 0.85:
            text = "x" * rng.randint(10, 400)
            return client.post(
                f"{chat}/rooms/book-{book}/messages", json={"author": "load", "text": text}
            ).status_code
        if roll < 0.95:
            return client.get(f"{chat}/rooms/book-{book}/messages").status_code
        return client.get(f"{books}/no/such/path").status_code

    def worker(index: int) -> None:
        rng = random.Random(index)
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < stop_at:
                try:
                    key = str(one(client, rng))
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                with lock:
                    counts[key] = counts.get(key, 0) + 1

    def follower(room: str) -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream("GET", f"{chat}/rooms/{room}/events", timeout=seconds + 10) as stream,
        ):
            for _ in stream.iter_lines():
                if time.monotonic() >= stop_at:
                    return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    threads += [
        threading.Thread(target=follower, args=(f"book-{book}",), daemon=True)
        for book in book_ids[:5]
    ]
    for thread in threads:
        thread.start()
    for thread in threads[:clients]:
        thread.join()
    return counts


def locust_traffic(
    ports: dict[str, int],
    seconds: float,
    clients: int,
    samples: dict[str, Sample],
    auth: dict[str, str],
) -> dict[str, int]:
    """Runs the project's locustfile with its web UI; its process is sampled like the others."""
    environ = {
        **os.environ,
        **{f"LOAD_{name.upper()}_URL": f"http://{HOST}:{port}" for name, port in ports.items()},
        **auth,  # its catalog:write token, as compose gives it
    }
    process = subprocess.Popen(  # noqa: S603 - the workspace's locust
        [
            str(BIN / "locust"),
            *("-f", str(LOCUSTFILE), "--web-host", HOST, "--web-port", str(free_port())),
            *("--autostart", "--autoquit", "0", "--users", str(clients)),
            *("--spawn-rate", str(clients), "--run-time", f"{int(seconds)}s"),
            "--only-summary",
        ],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    samples["locust"] = Sample("locust", process.pid)
    _, stderr = process.communicate(timeout=seconds + 120)
    if process.returncode not in (0, 1):  # 1: some requests failed, which the summary shows
        raise RuntimeError(f"locust exited {process.returncode}: {stderr.decode()[-3000:]}")
    samples["locust"].peak_kib = max(samples["locust"].samples, default=0)
    lines = stderr.decode(errors="replace").splitlines()
    # the "Aggregated" row of locust's request table: "Aggregated <reqs> <fails>(<pct>) | ..."
    row = next((line for line in lines if line.split()[:1] == ["Aggregated"] and "(" in line), "")
    if not row:
        raise RuntimeError("no summary from locust:\n" + "\n".join(lines[-40:]))
    requests, failures = row.split()[1:3]
    return {"requests": int(requests), "failures": int(failures.split("(")[0])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument(
        "--otlp-endpoint", help="send spans to this OTLP/HTTP endpoint (a real Jaeger) instead"
    )
    arguments = parser.parse_args()

    processes: list[subprocess.Popen[bytes]] = []
    migrate_kib: dict[str, int] = {}
    sink = OtlpSink()
    with postgres() as server, tempfile.TemporaryDirectory() as scratch:
        ports = {name: free_port() for name in SERVICES}
        base = {
            **os.environ,
            "ENVIRONMENT": "production",
            "OTEL_EXPORTER_OTLP_ENDPOINT": arguments.otlp_endpoint or sink.endpoint,
            "DEPENDENCIES__BOOKS__BASE_URL": f"http://{HOST}:{ports['books']}",
            "DEPENDENCIES__CHAT__BASE_URL": f"http://{HOST}:{ports['chat']}",
        }
        auth = credentials(Path(scratch) / "auth", base, migrate_kib)
        envs = {}
        for name in SERVICES:
            envs[name] = {
                **base,
                **auth.get(name, {}),
                "OTEL_SERVICE_NAME": name,
                "DATABASE_URL": server.create_database(name),
            }
            migrate_kib[name] = run_measured([str(BIN / name), "migrate"], envs[name])
        migrate_kib["books seed"] = run_measured([str(BIN / "books"), "seed"], envs["books"])

        samples: dict[str, Sample] = {}
        try:
            for name in SERVICES:
                process = subprocess.Popen(  # noqa: S603 - our own console scripts
                    [str(BIN / name), "serve", "--host", HOST, "--port", str(ports[name])],
                    env=envs[name],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                processes.append(process)
                wait_ready(f"http://{HOST}:{ports[name]}/health/ready", process)
                samples[name] = Sample(
                    name, process.pid, ready_kib=status_kib(process.pid, "VmRSS")
                )
            prometheus = shutil.which("prometheus")
            if prometheus:
                prom_port = free_port()
                config = prometheus_config({**ports, "prometheus": prom_port}, Path(scratch))
                process = subprocess.Popen(  # noqa: S603 - the Debian binary
                    [
                        prometheus,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={scratch}/tsdb",
                        f"--web.listen-address={HOST}:{prom_port}",
                        "--enable-feature=exemplar-storage",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                processes.append(process)
                wait_ready(f"http://{HOST}:{prom_port}/-/ready", process)
                samples["prometheus"] = Sample(
                    "prometheus", process.pid, ready_kib=status_kib(process.pid, "VmRSS")
                )
            postmaster = int((Path(server.data_dir) / "postmaster.pid").read_text().split()[0])
            pg = Sample("postgresql (PSS)", postmaster, ready_kib=postgres_pss_kib(postmaster))

            done = threading.Event()

            def sampler() -> None:
                while not done.wait(0.5):
                    for sample in list(samples.values()):
                        with contextlib.suppress(OSError):
                            sample.samples.append(status_kib(sample.pid, "VmRSS"))
                    with contextlib.suppress(OSError):
                        pg.samples.append(postgres_pss_kib(postmaster))

            thread = threading.Thread(target=sampler, daemon=True)
            thread.start()
            started = time.monotonic()
            if (BIN / "locust").exists() and LOCUSTFILE.exists():
                counts = locust_traffic(
                    ports, arguments.seconds, arguments.clients, samples, auth["locust"]
                )
            else:
                counts = traffic(ports, arguments.seconds, arguments.clients)
            elapsed = time.monotonic() - started
            done.set()
            thread.join()
            for sample in samples.values():
                if sample.name != "locust":  # exited: its peak comes from the samples
                    sample.peak_kib = status_kib(sample.pid, "VmHWM")
            pg.peak_kib = max(pg.samples, default=pg.ready_kib)
        finally:
            for process in reversed(processes):
                stop(process)

    total = counts.get("requests") or sum(counts.values())
    print(f"traffic: {total} requests in {elapsed:.0f} s ({total / elapsed:.0f}/s), {counts}")
    print(f"{'process':<22}{'ready MiB':>10}{'peak MiB':>10}")
    for sample in [*samples.values(), pg]:
        print(f"{sample.name:<22}{sample.ready_kib / 1024:>10.0f}{sample.peak_kib / 1024:>10.0f}")
    for name, kib in migrate_kib.items():
        print(f"{name + ' (one-shot)':<22}{'':>10}{kib / 1024:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
