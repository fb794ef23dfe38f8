"""`make dev` itself: ready when it says so, on the ports asked for, stopped by Ctrl-C without an
error; and `make` telling a newcomer how to install uv."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

import service_registry
from dev_stack import READY_BANNER, ROOT, DevStack, port_free, stack_environment

from chassis.testing import free_port

SERVICES = tuple(service_registry.load_services())  # the Go gateway too (go is on PATH)
STARTUP_SECONDS = 180


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def other_ports() -> dict[str, int]:
    return {name: free_port() for name in (*SERVICES, "prometheus")}


@pytest.fixture(scope="module")
def dev(
    tmp_path_factory: pytest.TempPathFactory, other_ports: dict[str, int]
) -> Iterator[DevStack]:
    stack = DevStack(stack_environment(tmp_path_factory.mktemp("dev"), **other_ports))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.mark.timeout(STARTUP_SECONDS + 30)
def test_the_banner_comes_once_every_service_is_ready(
    dev: DevStack, other_ports: dict[str, int]
) -> None:
    dev.wait_for(READY_BANNER, STARTUP_SECONDS)
    for name in SERVICES:  # at once, no retry: ready means ready
        status, body = get(f"http://127.0.0.1:{other_ports[name]}/health/ready")
        assert status == 200, (name, body)
        assert json.loads(body)["status"] == "UP", (name, body)
    banner = dev.output[dev.output.index("make dev: ready in") :]
    for name in SERVICES:
        assert f"http://127.0.0.1:{other_ports[name]}/" in banner, banner
    if shutil.which("prometheus"):
        assert f"http://127.0.0.1:{other_ports['prometheus']}/" in banner, banner
    for port in (8000, 8001, 8002, 8003):
        assert f":{port}/" not in banner, banner


@pytest.mark.timeout(60)
def test_an_order_through_the_gateway_is_one_trace_from_go_to_python(
    dev: DevStack, other_ports: dict[str, int]
) -> None:
    """The storefront's path: the Go gateway passes POST /api/shop/orders to shop with the
    caller's W3C trace context, shop calls books; all three log the caller's trace id."""
    dev.wait_for(READY_BANNER, 1)
    trace_id = secrets.token_hex(16)
    request = urllib.request.Request(
        f"http://127.0.0.1:{other_ports['gateway']}/api/shop/orders",
        data=json.dumps({"items": [{"book_id": 1, "quantity": 1}]}).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": f"through-the-gateway-{trace_id}",
            "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        assert json.loads(response.read())["status"] == "confirmed"
    for process in ("gateway", "shop", "books"):
        dev.wait_for(re.compile(rf"^\S+ {process}\.1 .*trace_id={trace_id}", re.M), 10)


@pytest.mark.timeout(60)
def test_break_and_heal_find_the_overridden_ports(
    dev: DevStack, other_ports: dict[str, int]
) -> None:
    dev.wait_for(READY_BANNER, 1)
    env = {**os.environ, "BOOKS_PORT": str(other_ports["books"])}
    broken = make("break", "SERVICE=books", env=env)
    try:
        assert broken.returncode == 0, broken.stderr
        assert get(f"http://127.0.0.1:{other_ports['books']}/books/1")[0] == 503
    finally:
        healed = make("heal", "SERVICE=books", env=env)
    assert healed.returncode == 0, healed.stderr
    assert get(f"http://127.0.0.1:{other_ports['books']}/books/1")[0] == 200


@pytest.mark.timeout(60)
def test_ctrl_c_stops_everything_without_an_error(
    dev: DevStack, other_ports: dict[str, int]
) -> None:
    dev.wait_for(READY_BANNER, 1)
    dev.press_ctrl_c()
    dev.wait(45)
    tail = dev.output[dev.output.index("make dev: ready in") :]
    assert "make dev: stopped" in tail, dev.tail()
    assert not re.search(r"make: \*\*\*|Error \d+|Traceback", tail), dev.tail()
    for name in SERVICES:
        assert port_free(other_ports[name]), f"{name} still listens after Ctrl-C"
    for name in SERVICES:  # each ended by its own graceful shutdown
        assert f"{name}.1 stopped (rc=0)" in tail, dev.tail()


def test_make_says_how_to_install_uv_when_it_is_missing() -> None:
    without_uv = os.pathsep.join(
        folder
        for folder in os.environ["PATH"].split(os.pathsep)
        if folder and not (Path(folder) / "uv").exists()
    )
    for target in ("install", "dev", "check"):
        result = make(target, env={**os.environ, "PATH": without_uv})
        assert result.returncode != 0
        assert "needs uv" in result.stderr, result.stderr
        assert "pipx install uv" in result.stderr, result.stderr


def test_the_jaeger_hint_names_the_image_compose_runs() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "compose.yaml").read_text())
    # ${JAEGER_IMAGE:-official}: the official image unless a stand-in is named
    image = compose["services"]["jaeger"]["image"].removeprefix("${JAEGER_IMAGE:-").rstrip("}")
    run_py = (ROOT / "deploy" / "dev" / "run.py").read_text()
    assert f'JAEGER_IMAGE = "{image}"' in run_py
    assert "all-in-one" not in run_py


def test_a_bad_port_override_is_refused_by_name(tmp_path: Path) -> None:
    env = stack_environment(tmp_path)
    env["SHOP_PORT"] = "eighty"
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "dev" / "run.py"), "start"],
        env={**env, "PATH": str(Path(sys.executable).parent) + os.pathsep + env["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "SHOP_PORT must be a port number" in result.stderr, result.stderr


def make(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
