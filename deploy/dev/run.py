"""The local stack of `make dev`, and `make break` / `make heal` against any running stack.

    run.py start             prepare the databases and the environment, then exec honcho on
                             deploy/dev/Procfile: books, shop, chat (+ Prometheus when a
                             `prometheus` binary is on PATH); Ctrl-C stops everything
    run.py break SERVICE     inject a fault (default: full outage) through PUT /admin/faults
                             [--fault '{"error_rate": 0.5}']
    run.py heal SERVICE      DELETE /admin/faults

Databases: SQLite files in .dev/ unless DATABASE_URL names a PostgreSQL server; then each
service gets its own database on it (books, shop, chat), created when missing. The
fault-injection token is FAULTS__TOKEN, or DEV_FAULTS_TOKEN below. Ports come from
observability/prometheus/targets.yml (DESIGN §8: 8001-8003, the same host ports as compose).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
DEV_DIR = ROOT / ".dev"
PROCFILE = Path(__file__).with_name("Procfile")
RENDERER = ROOT / "observability" / "prometheus" / "render.py"
SERVICES = ("books", "shop", "chat")
DEV_FAULTS_TOKEN = "dev-faults-token-not-a-secret"  # noqa: S105 - the published dev default
PROMETHEUS_PORT = 9090
PROMETHEUS_INTERVAL = "2s"
OTLP_HTTP_PORT = 4318
OUTAGE = '{"outage": true}'
HOST = "127.0.0.1"


def load_renderer() -> ModuleType:
    """observability/prometheus/render.py, the one source of scrape targets and ports."""
    name = "bookshop_prometheus_render"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, RENDERER)
    assert spec is not None
    assert spec.loader is not None
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def service_ports() -> dict[str, int]:
    ports: dict[str, int] = load_renderer().load_targets().services
    return ports


def faults_token(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("FAULTS__TOKEN") or DEV_FAULTS_TOKEN


# -- start --------------------------------------------------------------------------------------


def start() -> int:
    for tool in (*SERVICES, "honcho"):
        if shutil.which(tool) is None:
            return fail(f"{tool} is not on PATH: run this through `uv run` (make dev does)")
    ports = service_ports()
    busy = [f"{name} :{port}" for name, port in ports.items() if port_in_use(port)]
    if busy:
        return fail(
            f"port(s) in use: {', '.join(busy)}. Is `make dev` or `make up` already running?"
        )
    DEV_DIR.mkdir(exist_ok=True)
    try:
        databases = database_urls(os.environ.get("DATABASE_URL"))
    except ValueError as exc:
        return fail(str(exc))
    env = stack_environment(ports, databases)
    os.environ.update(env)
    if not prepare_databases(databases):
        return 1
    processes = list(SERVICES)
    prometheus = prometheus_note()
    if prometheus is None:
        (DEV_DIR / "prometheus.yml").write_text(
            load_renderer().render("local", interval=PROMETHEUS_INTERVAL, ports=ports)
        )
        processes.append("prometheus")
    print_banner(ports, databases, prometheus, traces_note(env))
    sys.stdout.flush()
    honcho = shutil.which("honcho")
    assert honcho is not None
    command = [honcho, "start", "-f", str(PROCFILE), "-d", str(ROOT), "-e", os.devnull]
    os.execv(honcho, [*command, *processes])  # noqa: S606 - our own fixed command line
    return 0  # not reached


def database_urls(url: str | None) -> dict[str, str]:
    """One URL per service: SQLite files in .dev/, or one database each on DATABASE_URL's
    PostgreSQL server (created when missing)."""
    if not url:
        return {name: f"sqlite:///{DEV_DIR / f'{name}.db'}" for name in SERVICES}
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(
            "DATABASE_URL must name a PostgreSQL server "
            "(postgresql://USER:PASSWORD@HOST:5432/postgres); unset it for SQLite"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")  # the driver the chassis ships
    admin = parsed.set(database=parsed.database or "postgres")
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for name in SERVICES:
                exists = connection.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                ).first()
                if not exists:
                    connection.execute(text(f'CREATE DATABASE "{name}"'))
                    print(f"created database {name}")
    except SQLAlchemyError as exc:
        original = getattr(exc, "orig", None) or exc
        raise ValueError(f"cannot prepare databases on DATABASE_URL: {original}") from None
    finally:
        engine.dispose()
    return {
        name: parsed.set(database=name).render_as_string(hide_password=False) for name in SERVICES
    }


def stack_environment(ports: Mapping[str, int], databases: Mapping[str, str]) -> dict[str, str]:
    """The variables the Procfile and the services read (per-service ones are set there)."""
    env = {
        "DEV_DIR": str(DEV_DIR),
        "PROMETHEUS_PORT": str(PROMETHEUS_PORT),
        "FAULTS__ENABLED": "true",
        "FAULTS__TOKEN": faults_token(),
        "LOGGING__FORMAT": os.environ.get("LOGGING__FORMAT", "console"),
        "PYTHONUNBUFFERED": "1",
    }
    for name in SERVICES:
        env[f"{name.upper()}_PORT"] = str(ports[name])
        env[f"{name.upper()}_URL"] = f"http://{HOST}:{ports[name]}"
        env[f"{name.upper()}_DATABASE_URL"] = databases[name]
    no_otel_choice = not any(
        key in os.environ for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER")
    )
    if no_otel_choice and not port_in_use(OTLP_HTTP_PORT):
        env["OTEL_TRACES_EXPORTER"] = "none"  # nothing would receive them: no export errors
    return env


def prepare_databases(databases: Mapping[str, str]) -> bool:
    """``<service> migrate`` then ``<service> seed``, the three services side by side."""
    for command in ("migrate", "seed"):
        running = {
            name: subprocess.Popen(  # noqa: S603 - our own fixed command line
                [name, command],
                env={**os.environ, "DATABASE_URL": databases[name], "LOGGING__FORMAT": "json"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name in SERVICES
        }
        for name, process in running.items():
            output, _ = process.communicate()
            if process.returncode != 0:
                print(output, file=sys.stderr)
                fail(f"`{name} {command}` failed (exit {process.returncode})")
                return False
        print(f"{command}: {', '.join(SERVICES)} done")
    return True


def prometheus_note() -> str | None:
    """Why Prometheus is not started, or None when it is."""
    if shutil.which("prometheus") is None:
        return "not started: no `prometheus` on PATH (Debian: apt-get install prometheus)"
    if port_in_use(PROMETHEUS_PORT):
        return f"not started: port {PROMETHEUS_PORT} is in use"
    return None


def traces_note(env: Mapping[str, str]) -> str:
    if env.get("OTEL_TRACES_EXPORTER") == "none":
        return (
            f"not exported (nothing listens on :{OTLP_HTTP_PORT}; start Jaeger, e.g. "
            "`docker run -p 16686:16686 -p 4318:4318 jaegertracing/all-in-one`, then restart)"
        )
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://localhost:{OTLP_HTTP_PORT}")
    return f"OTLP/HTTP to {endpoint}"


def print_banner(
    ports: Mapping[str, int],
    databases: Mapping[str, str],
    prometheus: str | None,
    traces: str,
) -> None:
    storage = (
        "PostgreSQL (DATABASE_URL)"
        if databases["books"].startswith("postgresql")
        else f"SQLite in {DEV_DIR}"
    )
    url = f"http://{HOST}"
    print(
        "\nmake dev: books, shop and chat as local processes, " + storage,
        f"  books       {url}:{ports['books']}/ui/   (catalog: {url}:{ports['books']}/books)",
        f"  shop        {url}:{ports['shop']}/ui/   (orders: {url}:{ports['shop']}/orders)",
        f"  chat        {url}:{ports['chat']}/      (the chat page; API at /ui/)",
        f"  prometheus  {prometheus or f'{url}:{PROMETHEUS_PORT}/'}",
        f"  traces      {traces}",
        "  health      /health/live, /health/ready, /metrics and /info on every service",
        f"  faults      token {faults_token()!r} (FAULTS__TOKEN overrides it):",
        "              make break SERVICE=books [FAULT='{\"error_rate\": 0.5}'], "
        "make heal SERVICE=books",
        "Ctrl-C stops everything.\n",
        sep="\n",
    )


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


# -- break / heal -------------------------------------------------------------------------------


def faults(service: str, method: str, body: str | None, base_url: str | None) -> int:
    ports = service_ports()
    if service not in ports:
        return fail(f"SERVICE must be one of {', '.join(ports)}, not {service!r}")
    url = f"{base_url or f'http://{HOST}:{ports[service]}'}/admin/faults"
    if body is not None:
        try:
            json.loads(body)
        except json.JSONDecodeError as exc:
            return fail(f"FAULT is not JSON ({exc}): {body}")
    request = urllib.request.Request(  # noqa: S310 - http(s) URL we built
        url,
        data=body.encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {faults_token()}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            answer = response.read().decode()
    except urllib.error.HTTPError as exc:
        hint = {
            401: "wrong token: set FAULTS__TOKEN to the stack's token",
            404: "fault injection is off in that stack (FAULTS__ENABLED=true)",
        }.get(exc.code, exc.read().decode())
        return fail(f"{method} {url}: {exc.code}: {hint}")
    except OSError as exc:
        return fail(f"{method} {url}: {exc}; is the stack running (make dev / make up)?")
    print(f"{service}: {answer}")
    return 0


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start", help="run the local stack (make dev)")
    for name, helptext in (("break", "inject a fault"), ("heal", "remove every fault")):
        command = commands.add_parser(name, help=helptext)
        command.add_argument("service")
        command.add_argument("--url", help="the service's base URL (default: its DESIGN port)")
        if name == "break":
            command.add_argument("--fault", default=OUTAGE, help=f"JSON (default {OUTAGE})")
    arguments = parser.parse_args(argv)
    if arguments.command == "start":
        with contextlib.suppress(KeyboardInterrupt):
            return start()
        return 130
    if arguments.command == "break":
        return faults(arguments.service, "PUT", arguments.fault or OUTAGE, arguments.url)
    return faults(arguments.service, "DELETE", None, arguments.url)


if __name__ == "__main__":
    sys.exit(main())
