"""`make load`: a bounded, headless locust run with pass/fail criteria and memory figures.

Uses the stack already answering on the LOAD_*_URL ports (default the `make dev` / compose
host ports 8001-8003, or BOOKS_PORT, SHOP_PORT, CHAT_PORT as `make dev` takes them), and says
which one it found: each service's name, version, commit and start time from its /info (a port
answered by something else is refused). When nothing answers there, starts `make dev`'s stack
(deploy/dev/run.py) in the background for the run and stops it afterwards (its output goes to
.dev/load/stack.log), on DATABASE_URL's PostgreSQL, else on a throwaway PostgreSQL cluster
(chassis.testing.postgres, as compose runs on PostgreSQL), else on SQLite.

    LOAD_USERS=20 LOAD_SECONDS=60         users and duration
    LOAD_MAX_FAILURE_RATIO=0.01           fail above 1% failed requests
    LOAD_MAX_P95_MS=...                   fail when the p95 of all requests is above this
                                          (default P95_BUDGET_MS; see docs/testing.md, "Load tests")
    LOAD_BOOKS_TOKEN=...                  the catalog:write token locust adds its books with;
                                          default: minted by the dev stack's issuer (.dev/auth),
                                          so against compose: $(make -s token STACK=compose)

Prints requests/s, failure ratio and p50/p95/p99 per endpoint, then the RSS (and peak RSS) of
each service process, found by the port it listens on.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlsplit
from urllib.request import urlopen

import psutil

from chassis.dev_issuer import DevIssuer
from chassis.testing import postgres as chassis_postgres
from chassis.testing.postgres import PostgresServer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "deploy"))
from service_registry import python_services  # noqa: E402 - deploy/ holds no package

OUT = ROOT / ".dev" / "load"
# The services the locustfile drives, on the ports their service.yml declares (design §8).
DEFAULT_PORTS = {name: python_services()[name].port for name in ("books", "shop", "chat")}
SERVICES = {
    name: os.environ.get(f"LOAD_{name.upper()}_URL")
    or f"http://127.0.0.1:{os.environ.get(f'{name.upper()}_PORT') or port}"
    for name, port in DEFAULT_PORTS.items()
}
# Budget for the p95 of all requests together; how it was measured: docs/testing.md, "Load tests".
P95_BUDGET_MS = 250.0
STACK_READY_SECONDS = 240.0


def ready(url: str) -> bool:
    try:
        with urlopen(f"{url}/health/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (URLError, OSError):
        return False


def describe_stack() -> None:
    """Which stack answers: each service's own word for what it is, from /info."""
    print("using the stack that answers on:")
    for name, url in SERVICES.items():
        try:
            with urlopen(f"{url}/info", timeout=2) as response:
                info = json.loads(response.read())
        except (URLError, OSError, ValueError) as exc:
            raise SystemExit(f"{url}/info did not answer as a service does: {exc}") from None
        found = info.get("service")
        if found != name:
            raise SystemExit(f"{url} is not {name} (its /info says {found!r}); set LOAD_*_URL")
        print(
            f"  {name:<6} {url}  version {info.get('version')}, commit {info.get('commit')}, "
            f"started {info.get('started_at')}"
        )


def books_token() -> str:
    """A catalog:write token for books: LOAD_BOOKS_TOKEN, else one from the dev stack's issuer."""
    given = os.environ.get("LOAD_BOOKS_TOKEN")
    if given:
        return given
    issuer = DevIssuer.in_directory(Path(os.environ.get("DEV_DIR") or ROOT / ".dev") / "auth")
    return issuer.mint(audience="books", scopes=["catalog:write"], subject="locust")


def start_postgres() -> PostgresServer | None:
    """A throwaway PostgreSQL for the stack (as in compose), unless DATABASE_URL names one."""
    if os.environ.get("DATABASE_URL"):
        return None
    try:
        return chassis_postgres.start_postgres()
    except chassis_postgres.PostgresUnavailable as exc:
        print(f"no PostgreSQL ({exc}); the stack uses SQLite")
        return None


def start_stack(postgres: PostgresServer | None) -> subprocess.Popen[bytes]:
    OUT.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if postgres is not None:
        env["DATABASE_URL"] = postgres.admin_url
    database = "PostgreSQL" if env.get("DATABASE_URL") else "SQLite"
    print(
        f"no stack on {', '.join(SERVICES.values())}: starting make dev's stack on {database} "
        "for this run"
    )
    with (OUT / "stack.log").open("wb") as log:
        stack = subprocess.Popen(
            [sys.executable, str(ROOT / "deploy" / "dev" / "run.py"), "start"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + STACK_READY_SECONDS
    while not all(ready(url) for url in SERVICES.values()):
        if stack.poll() is not None or time.monotonic() > deadline:
            stop_stack(stack)
            tail = (OUT / "stack.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"the stack did not become ready:\n{tail}")
        time.sleep(0.5)
    return stack


def stop_stack(stack: subprocess.Popen[bytes]) -> None:
    if stack.poll() is None:
        stack.send_signal(signal.SIGTERM)  # honcho stops every process it runs
        try:
            stack.wait(30)
        except subprocess.TimeoutExpired:
            stack.kill()


def run_locust(users: int, seconds: int) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    prefix = OUT / "locust"
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(HERE / "locustfile.py"),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(max(1, users // 5)),
        "--run-time",
        f"{seconds}s",
        "--stop-timeout",
        "10",
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    print(f"locust: {users} users for {seconds}s (log: {OUT / 'locust.log'})")
    targets = {f"LOAD_{name.upper()}_URL": url for name, url in SERVICES.items()}
    with (OUT / "locust.log").open("wb") as log:
        env = {**os.environ, **targets, "LOAD_BOOKS_TOKEN": books_token()}
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    stats = Path(f"{prefix}_stats.csv")
    if not stats.exists():
        raise SystemExit(f"locust wrote no statistics; see {OUT / 'locust.log'}")
    return stats


def report(stats: Path, max_failure_ratio: float, max_p95_ms: float) -> bool:
    rows = list(csv.DictReader(stats.open()))
    print(
        f"\n{'endpoint':<42} {'requests':>8} {'req/s':>7} {'fail %':>7} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
    )
    total = None
    for row in rows:
        requests = int(row["Request Count"])
        failures = int(row["Failure Count"])
        name = "ALL" if row["Name"] == "Aggregated" else row["Name"]
        print(
            f"{name:<42} {requests:>8} {float(row['Requests/s']):>7.1f} "
            f"{100 * failures / max(requests, 1):>7.2f} {row['50%']:>7} {row['95%']:>7} "
            f"{row['99%']:>7}"
        )
        if row["Name"] == "Aggregated":
            total = row
    assert total is not None, "no Aggregated row"
    requests, failures = int(total["Request Count"]), int(total["Failure Count"])
    errors = task_errors(stats)
    ratio = (failures + errors) / max(requests, 1)
    p95 = float(total["95%"])
    ok = requests > 0 and ratio <= max_failure_ratio and p95 <= max_p95_ms
    print(
        f"\n{requests} requests, {failures} failed, {errors} task errors: failure ratio "
        f"{ratio:.2%} (max {max_failure_ratio:.0%}), p95 {p95:.0f} ms (max {max_p95_ms:.0f} ms): "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return ok


def task_errors(stats: Path) -> int:
    """Exceptions raised inside locust tasks (e.g. an unexpected body): failures too."""
    exceptions = stats.with_name(stats.name.replace("_stats.csv", "_exceptions.csv"))
    if not exceptions.exists():
        return 0
    return sum(int(row["Count"]) for row in csv.DictReader(exceptions.open()))


def print_memory() -> None:
    print("\nservice memory (RSS now / peak):")
    listening = {
        conn.laddr.port: conn.pid
        for conn in psutil.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.pid
    }
    for name, url in SERVICES.items():
        port = urlsplit(url).port
        pid = listening.get(port) if port else None
        if pid is None:
            print(f"  {name:<6} unknown (no local process listens on {url})")
            continue
        process = psutil.Process(pid)
        rss = process.memory_info().rss / 2**20
        print(f"  {name:<6} pid {pid}: {rss:6.1f} MiB / {peak_rss_mib(pid):6.1f} MiB")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    users = int(os.environ.get("LOAD_USERS", "20"))
    seconds = int(os.environ.get("LOAD_SECONDS", "60"))
    max_failure_ratio = float(os.environ.get("LOAD_MAX_FAILURE_RATIO", "0.01"))
    max_p95_ms = float(os.environ.get("LOAD_MAX_P95_MS", str(P95_BUDGET_MS)))
    answering = [name for name, url in SERVICES.items() if ready(url)]
    if answering and len(answering) < len(SERVICES):
        raise SystemExit(f"only {', '.join(answering)} answer(s); start the whole stack")
    postgres = None if answering else start_postgres()
    try:
        stack = None if answering else start_stack(postgres)
        try:
            describe_stack()
            stats = run_locust(users, seconds)
            ok = report(stats, max_failure_ratio, max_p95_ms)
            print_memory()
        finally:
            if stack is not None:
                stop_stack(stack)
    finally:
        if postgres is not None:
            postgres.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
