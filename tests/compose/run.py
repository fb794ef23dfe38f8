"""`make compose-check`: the compose stack built, started, tested and removed under a real engine.

The user's path, end to end, on 127.0.0.1 only:

1. `make up` (OFFLINE=1 when set: the stand-ins of `make offline-images`), timed to all healthy;
2. every container of a bookshop image runs as the image's user (uid 10001);
3. tests/e2e in its compose mode (E2E_*_URL: the published ports; traces read back from
   Jaeger's HTTP API, metrics from the stack's Prometheus; a token from `make token
   STACK=compose`);
4. `docker compose restart postgres`: every service ready again by itself, an order confirmed;
5. shop's process killed mid-order: restarted by its policy, every order settled, none lost;
6. locust's own container, headless for 30 s: no failure;
7. nothing written in a service's container outside /app/data and its volumes (docker diff);
8. `docker compose stop`: every service exits 0 within its grace period;
9. `make down VOLUMES=1`: no container, network or volume of the stack is left.

It prints what it measured (time to healthy, image sizes, memory per container after the load
against its limit) and exits non-zero at the first step that fails; the stack is removed
whatever happens. Without a Docker engine it says so and exits 0, but fails under CI.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import service_registry  # noqa: E402 - deploy/ holds no package

PROJECT = "bookshop"
IMAGE_USER = "10001"
LOAD_SECONDS = 30
DATABASE_RECOVERY_SECONDS = 60
CRASH_CLIENTS = 8
SHOP_RESTART_SECONDS = 60
# shop's recovery settles an order left pending after orders.pending_grace_seconds (60), every
# orders.recovery_interval_seconds (30).
ORDER_RECOVERY_SECONDS = 150
SETTLED = {"confirmed", "rejected"}
# Where a service may write in its container (deploy/Dockerfile; Kubernetes mounts the same).
WRITABLE = ("/app/data",)
HOST = "127.0.0.1"


class CheckFailed(Exception):
    """A step of the check failed; the message says which and why."""


def main() -> int:
    if not engine_answers():
        message = "compose-check: no Docker engine with Compose v2 answers (docker compose version)"
        if os.environ.get("CI"):
            print(f"{message}: CI requires one (.ci/run starts it)", file=sys.stderr)
            return 1
        print(f"{message}: skipped", file=sys.stderr)
        return 0
    offline = ["OFFLINE=1"] if os.environ.get("OFFLINE") else []
    registry = service_registry.python_services()
    figures: list[str] = []
    try:
        started = time.monotonic()
        make("up", *offline)
        figures.append(f"make up to all healthy: {time.monotonic() - started:.0f} s")
        check_users(registry, offline)
        token = make_output("token", "STACK=compose", "SCOPE=catalog:write", *offline)
        run_end_to_end(registry, offline, token)
        order: dict[str, object] = {
            "items": [{"book_id": create_book(registry, token), "quantity": 1}]
        }
        check_database_restart(registry, offline, order, figures)
        check_crash_mid_order(registry, offline, order, figures)
        run_load(offline, figures)
        figures.extend(image_sizes(registry))
        check_writes(registry, offline)
        check_stop(registry, offline)
    except (CheckFailed, subprocess.CalledProcessError) as failure:
        print(f"compose-check FAILED: {failure}", file=sys.stderr)
        print(compose(offline, "logs", "--no-color", "--tail=60", check=False)[-20000:])
        return 1
    finally:
        make("down", "VOLUMES=1", *offline, check=False)
    leftovers = left_behind()
    if leftovers:
        print(f"compose-check FAILED: make down left {leftovers}", file=sys.stderr)
        return 1
    print("compose-check passed:", *figures, sep="\n  ")
    return 0


def engine_answers() -> bool:
    for command in (["docker", "info"], ["docker", "compose", "version"]):
        try:
            subprocess.run(command, capture_output=True, check=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return False
    return True


def make(*arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"==> make {' '.join(arguments)}", flush=True)
    return subprocess.run(
        ["make", "--no-print-directory", *arguments], cwd=ROOT, text=True, check=check
    )


def compose(offline: list[str], *arguments: str, check: bool = True) -> str:
    """`docker compose` with the Makefile's files and options (its COMPOSE variable)."""
    command = compose_command(offline)
    return subprocess.run(
        [*command, *arguments], cwd=ROOT, capture_output=True, text=True, check=check
    ).stdout


def compose_command(offline: list[str]) -> list[str]:
    """The Makefile's COMPOSE: its files and options, as every compose target runs them."""
    return make_output(
        "--eval", "print-compose: ; @echo $(COMPOSE)", "print-compose", *offline
    ).split()


def compose_output(offline: list[str], *arguments: str) -> str:
    """stdout and stderr together (locust prints its summary on stderr)."""
    command = compose_command(offline)
    return subprocess.run(
        [*command, *arguments],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=True,
    ).stdout


def containers(offline: list[str]) -> dict[str, dict[str, object]]:
    """Every container of the stack (one-shots included): service -> `docker inspect`."""
    ids = compose(offline, "ps", "--all", "--quiet").split()
    if not ids:
        return {}
    inspected = json.loads(
        subprocess.run(
            ["docker", "inspect", *ids], capture_output=True, text=True, check=True
        ).stdout
    )
    return {item["Config"]["Labels"]["com.docker.compose.service"]: item for item in inspected}


def check_users(registry: dict[str, service_registry.ServiceManifest], offline: list[str]) -> None:
    """The services, their migrations and auth-init: the images deploy/Dockerfile builds."""
    images = tuple(f"bookshop-{name}:" for name in registry)
    for service, container in containers(offline).items():
        config = container["Config"]
        assert isinstance(config, dict)
        if str(config["Image"]).startswith(images):
            user = str(config.get("User") or "root").split(":")[0]
            if user != IMAGE_USER:
                raise CheckFailed(f"{service} runs as {user}, not the image's user {IMAGE_USER}")


def run_end_to_end(
    registry: dict[str, service_registry.ServiceManifest], offline: list[str], token: str
) -> None:
    env = {
        **os.environ,
        **{
            f"E2E_{service_registry.env_name(name)}_URL": f"http://{HOST}:{service.port}"
            for name, service in registry.items()
        },
        "E2E_PROMETHEUS_URL": f"http://{HOST}:9090",
        "E2E_JAEGER_URL": f"http://{HOST}:16686",
        "E2E_BOOKS_TOKEN": token,
    }
    print("==> tests/e2e against the compose stack", flush=True)
    result = subprocess.run(
        ["uv", "run", "--all-packages", "pytest", "-q", "-p", "no:cacheprovider", "tests/e2e"],
        cwd=ROOT,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise CheckFailed("tests/e2e failed against the compose stack")


def check_database_restart(
    registry: dict[str, service_registry.ServiceManifest],
    offline: list[str],
    order: dict[str, object],
    figures: list[str],
) -> None:
    """`docker compose restart postgres`: every service answers ready again by itself (its
    container neither restarted nor recreated), and an order goes through."""
    before = {name: started_at(container) for name, container in containers(offline).items()}
    compose(offline, "restart", "postgres")
    restarted = time.monotonic()
    for name, service in registry.items():
        url = f"http://{HOST}:{service.port}/health/ready"
        while not answers_200(url):
            if time.monotonic() - restarted > DATABASE_RECOVERY_SECONDS:
                raise CheckFailed(f"{name} not ready {DATABASE_RECOVERY_SECONDS} s after postgres")
            time.sleep(0.5)
    figures.append(f"ready again {time.monotonic() - restarted:.1f} s after postgres restarted")
    after = {name: started_at(container) for name, container in containers(offline).items()}
    for name in registry:
        if after[name] != before[name]:
            raise CheckFailed(f"{name} was restarted when postgres was")
    placed = httpx.post(f"http://{HOST}:{registry['shop'].port}/orders", json=order, timeout=30)
    if placed.status_code != 201 or placed.json()["status"] != "confirmed":
        raise CheckFailed(f"an order after postgres restarted: {placed.status_code} {placed.text}")


def started_at(container: dict[str, object]) -> object:
    state = container["State"]
    assert isinstance(state, dict)
    return (state["StartedAt"], container["RestartCount"])


def answers_200(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def check_crash_mid_order(
    registry: dict[str, service_registry.ServiceManifest],
    offline: list[str],
    order: dict[str, object],
    figures: list[str],
) -> None:
    """shop's process killed (SIGKILL from the host, as a crash) while 8 clients place orders:
    the restart policy brings it back, and every order, replayed by its Idempotency-Key, ends
    confirmed or rejected, never lost nor left pending (shop's recovery settles those)."""
    shop = f"http://{HOST}:{registry['shop'].port}"
    before = containers(offline)["shop"]
    state = before["State"]
    assert isinstance(state, dict)
    keys: list[str] = []
    cut: list[str] = []  # the orders whose request the crash broke off
    crashed = threading.Event()

    def place_orders() -> None:
        while not crashed.is_set():
            key = f"crash-{uuid.uuid4()}"
            keys.append(key)
            try:
                httpx.post(
                    f"{shop}/orders", json=order, headers={"Idempotency-Key": key}, timeout=10
                )
            except httpx.HTTPError:
                cut.append(key)
                return

    with ThreadPoolExecutor(CRASH_CLIENTS) as pool:
        for _ in range(CRASH_CLIENTS):
            pool.submit(place_orders)
        time.sleep(1)  # orders under way, some half through their saga
        os.kill(int(state["Pid"]), signal.SIGKILL)
        crashed.set()
    killed = time.monotonic()
    while not answers_200(f"{shop}/health/ready"):
        if time.monotonic() - killed > SHOP_RESTART_SECONDS:
            raise CheckFailed(f"shop not back {SHOP_RESTART_SECONDS} s after it was killed")
        time.sleep(0.5)
    back = time.monotonic() - killed
    if started_at(containers(offline)["shop"]) == started_at(before):
        raise CheckFailed("shop answered, but its container was never restarted")
    statuses: dict[str, str] = {}
    while True:
        statuses = {key: replay(shop, key, order) for key in keys}
        if "pending" not in statuses.values():
            break
        if time.monotonic() - killed > ORDER_RECOVERY_SECONDS:
            raise CheckFailed(f"orders still pending after shop's crash: {statuses}")
        time.sleep(5)
    unknown = {key: status for key, status in statuses.items() if status not in SETTLED}
    if unknown:
        raise CheckFailed(f"orders after shop's crash: {unknown}")
    if not cut:
        raise CheckFailed("no order was in flight when shop was killed: nothing was tested")
    counts = {status: list(statuses.values()).count(status) for status in sorted(SETTLED)}
    figures.append(
        f"shop killed mid-order: back in {back:.1f} s; {len(keys)} orders, {len(cut)} of them "
        f"cut off, all settled {counts} {time.monotonic() - killed:.0f} s after"
    )


def replay(shop: str, key: str, order: dict[str, object]) -> str:
    """The order's status, placing it again by its key (the same order if it exists)."""
    answer = httpx.post(f"{shop}/orders", json=order, headers={"Idempotency-Key": key}, timeout=30)
    if answer.status_code == 409 and "order_id" in answer.json():  # rejected, answered again
        answer = httpx.get(f"{shop}/orders/{answer.json()['order_id']}", timeout=30)
    if answer.status_code not in (200, 201):
        return f"HTTP {answer.status_code}: {answer.text[:300]}"
    return str(answer.json()["status"])


def create_book(registry: dict[str, service_registry.ServiceManifest], token: str) -> int:
    """A book with stock enough for every order of the check (the demo's run out)."""
    isbn = "979" + "".join(secrets.choice("0123456789") for _ in range(10))
    answer = httpx.post(
        f"http://{HOST}:{registry['books'].port}/books",
        json={
            "isbn": isbn,
            "title": "compose check",
            "author": "CI",
            "price": "5.00",
            "stock": 1_000_000,
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    if answer.status_code != 201:
        raise CheckFailed(f"creating a book: {answer.status_code} {answer.text[:300]}")
    return int(answer.json()["id"])


def check_writes(registry: dict[str, service_registry.ServiceManifest], offline: list[str]) -> None:
    """Nothing written in a service's container outside its volumes and /app/data (docker diff:
    the container's own layer), as the read-only root filesystem of the Helm chart needs."""
    running = containers(offline)
    for name in registry:
        container = running[name]
        changes = subprocess.run(
            ["docker", "diff", str(container["Id"])], capture_output=True, text=True, check=True
        ).stdout.split("\n")
        written = [line for line in changes if line and not line[2:].startswith(WRITABLE)]
        if written:
            raise CheckFailed(f"{name} wrote outside {WRITABLE}: {written}")


def run_load(offline: list[str], figures: list[str]) -> None:
    """locust's own container, headless: 10 users for LOAD_SECONDS, exit 1 on any failure."""
    print(f"==> locust in its container, headless, {LOAD_SECONDS} s", flush=True)
    output = compose_output(
        offline,
        "--profile",
        "load",
        "run",
        "--rm",
        "--no-deps",
        "locust",
        "-f",
        "/mnt/locust/locustfile.py",
        "--headless",
        "--users",
        "10",
        "--spawn-rate",
        "5",
        "--run-time",
        f"{LOAD_SECONDS}s",
        "--only-summary",
        "--exit-code-on-error",
        "1",
    )
    print(output[-4000:])
    # The summary's first Aggregated row: requests, failures(share)
    found = re.search(r"^\s*Aggregated\s+(\d+)\s+(\d+)\(", output, re.MULTILINE)
    if found is None or int(found.group(1)) == 0 or int(found.group(2)) != 0:
        raise CheckFailed(f"locust: {found.group(0) if found else 'no summary'}")
    figures.append(f"locust in its container: {found.group(1)} requests, 0 failures")
    figures.extend(memory_after_load(offline))


def memory_after_load(offline: list[str]) -> list[str]:
    """Each running container's memory now against its limit (docker stats), and its peak
    since it started as its memory cgroup recorded it (page cache included)."""
    lines = []
    for container in containers(offline).values():
        state = container["State"]
        assert isinstance(state, dict)
        if not state["Running"]:
            continue
        identifier = str(container["Id"])
        usage = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", identifier],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        name = str(container["Name"]).lstrip("/")
        lines.append(f"memory after the load: {name} {usage}, peak {peak_memory(identifier)}")
    return sorted(lines)


def peak_memory(identifier: str) -> str:
    """The cgroup's high-water mark: cgroup v1 (max_usage_in_bytes) or v2 (memory.peak)."""
    for path in (
        Path(f"/sys/fs/cgroup/memory/docker/{identifier}/memory.max_usage_in_bytes"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{identifier}.scope/memory.peak"),
    ):
        with contextlib.suppress(OSError, ValueError):
            return f"{int(path.read_text()) / 2**20:.0f}MiB"
    return "unknown (no memory cgroup file found)"


def image_sizes(registry: dict[str, service_registry.ServiceManifest]) -> list[str]:
    sizes = []
    for name in registry:
        size = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", f"bookshop-{name}:dev"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        sizes.append(f"image bookshop-{name}:dev: {int(size) / 1e6:.0f} MB")
    return sizes


def check_stop(registry: dict[str, service_registry.ServiceManifest], offline: list[str]) -> None:
    """`docker compose stop`: every service drains and exits 0 before Docker's SIGKILL."""
    started = time.monotonic()
    compose(offline, "stop")
    print(f"==> docker compose stop: {time.monotonic() - started:.1f} s", flush=True)
    for name, container in containers(offline).items():
        state = container["State"]
        assert isinstance(state, dict)
        if name in registry and state["ExitCode"] != 0:
            raise CheckFailed(
                f"{name} exited {state['ExitCode']} on stop (OOM: {state['OOMKilled']})"
            )


def left_behind() -> list[str]:
    label = f"label=com.docker.compose.project={PROJECT}"
    found = []
    for kind in (["ps", "--all"], ["network", "ls"], ["volume", "ls"]):
        names = subprocess.run(
            ["docker", *kind, "--quiet", "--filter", label],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        found += [f"{kind[0]} {name}" for name in names]
    return found


def make_output(*arguments: str) -> str:
    return subprocess.run(
        ["make", "--no-print-directory", "-s", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
