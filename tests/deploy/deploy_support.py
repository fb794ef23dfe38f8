"""Helpers of the deployment tests: what `make up` would run, checked without a Docker engine.

The compose file, the Dockerfile, the Prometheus config and rules and the Grafana dashboards are
read from the repository; Prometheus' own tools (the Debian ``prometheus`` package: promtool and
the server) check what only they can. Under CI a missing tool fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import service_registry

from chassis.testing import load_script
from chassis.testing.plugin import running_in_ci

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
# deploy/compose/generate.py: the services' half of the stack, made from the service folders.
GENERATE = load_script(COMPOSE_DIR / "generate.py", "compose_generate")
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
OBSERVABILITY = ROOT / "observability"
PROMETHEUS_DIR = OBSERVABILITY / "prometheus"
GRAFANA_DIR = OBSERVABILITY / "grafana"
# Every folder under services/ (deploy/service_registry.py), in the order of their ports, and
# the port each declares: its host port in compose and its local port in make dev (design §8).
REGISTRY = service_registry.python_services()
SERVICES = tuple(REGISTRY)
HOST_PORTS = {name: service.port for name, service in REGISTRY.items()}
CONTAINER_PORT = 8000
READY_TIMEOUT = 30.0

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def _present(path: str | None, message: str) -> str:
    """``path``; when it is None, skips saying ``message``, or fails under CI."""
    if path is None:
        if running_in_ci():
            pytest.fail(f"CI requires it: {message}", pytrace=False)
        pytest.skip(message)
    return path


def require(tool: str) -> str:
    """The path of ``tool``; skips without it, fails under CI."""
    return _present(
        shutil.which(tool), f"`{tool}` is not on PATH (Debian: apt-get install prometheus)"
    )


def find_go_tool(name: str) -> str | None:
    """``name`` on PATH, or where `go install` puts it (GOBIN, else GOPATH/bin, else ~/go/bin):
    .ci/run builds helm, kube-score and promtool-v3.5.0 so."""
    found = shutil.which(name)
    if found:
        return found
    gopath = os.environ.get("GOPATH", str(Path.home() / "go")).split(os.pathsep)[0]
    candidate = Path(os.environ.get("GOBIN") or Path(gopath) / "bin") / name
    return str(candidate) if candidate.is_file() else None


def find_helm() -> str | None:
    return find_go_tool("helm")


def require_go_tool(name: str, how: str) -> str:
    """The path of ``name`` (find_go_tool); skips without it, fails under CI."""
    return _present(find_go_tool(name), f"`{name}` is not installed: {how} (.ci/run builds it)")


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    """Compose variable interpolation (``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``$$``) of every string in ``value``."""
    if isinstance(value, dict):
        return {key: interpolate(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, environ) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        expression = match.group("braced") or match.group("plain")
        for separator in (":-", "-", ":?", "?"):
            name, found, default = expression.partition(separator)
            if found:
                current = environ.get(name)
                if separator.startswith(":") and not current:
                    current = None
                if current is None and "?" in separator:
                    raise ValueError(f"{name} is required: {default}")
                return default if current is None else current
        return environ.get(expression, "")

    return _VARIABLE.sub(replace, value)


def load_compose() -> dict[str, Any]:
    """The stack `make up` runs: compose.yaml with generated/services.yaml merged in, as
    generate.py makes it from the service folders (YAML anchors resolved, variables not)."""
    data: dict[str, Any] = GENERATE.stack(REGISTRY)
    return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusServer:
    """The Debian ``prometheus`` on a free port with an empty TSDB and nothing to scrape."""

    def __init__(self, binary: str, directory: Path) -> None:
        config = directory / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1m\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "prometheus.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--enable-feature=exemplar-storage",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready:\n{self.log.read_text()[-3000:]}")

    def query(self, expression: str) -> httpx.Response:
        return httpx.post(f"{self.url}/api/v1/query", data={"query": expression}, timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def published(entry: str | dict[str, Any]) -> tuple[str, int, int]:
    """(host address, host port, container port) of a ``ports`` entry, short or long syntax.
    The address is "" when the entry names none: Docker then publishes on every interface."""
    if isinstance(entry, dict):
        return str(entry.get("host_ip", "")), int(entry.get("published", 0)), int(entry["target"])
    rest, _, container = str(entry).partition("/")[0].rpartition(":")
    address, _, host = rest.rpartition(":")
    return address.strip("[]"), int(host or 0), int(container)


def host_ports(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(host port, container port) of every port ``service`` publishes."""
    return [published(entry)[1:] for entry in service.get("ports", [])]
