"""Make a new service folder from templates/service (copier): ``make new-service NAME=reviews``.

    python deploy/new_service.py reviews                      port: the next after the highest
    python deploy/new_service.py reviews --port 8010 --depends books,shop

It checks the request against the services already there (deploy/service_registry.py), renders
services/<name>/ with copier, sorts its imports and formats it as ``make fmt`` would, then
updates uv.lock and installs the new package (``uv lock``, ``uv sync --all-packages``): nothing
outside services/<name>/ but uv.lock changes. A refused request exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import keyword
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service_registry

ROOT = service_registry.ROOT
TEMPLATE = ROOT / "templates" / "service"
MAX_NAME_LENGTH = 20  # a name lives on in hostnames, databases, modules; lines stay short
# The stack's own containers and ports (deploy/compose/compose.yaml): a service may not take them.
INFRASTRUCTURE = {"postgres", "jaeger", "prometheus", "grafana", "locust", "auth-init"}
INFRASTRUCTURE_PORTS = {
    3000: "grafana",
    4317: "OTLP gRPC",
    4318: "OTLP HTTP",
    5432: "postgres",
    8089: "locust",
    9090: "prometheus",
    16686: "jaeger",
}
# The repository's folders and projects, a likely API gateway, and the path of the template's
# own /dependencies; then packages the services import (beyond the standard library, checked
# apart), which a service's package of the same name would shadow.
REPOSITORY = {"chassis", "common", "libs", "services", "templates", "deploy", "tests", "bench"}
REPOSITORY |= {"docs", "observability", "artifacts", "bookshop", "gateway", "dependencies"}
SHADOWING = {"test", "site", "conftest", "yaml", "alembic", "sqlalchemy", "connexion", "flask"}
SHADOWING |= {"pydantic", "starlette", "httpx", "structlog", "opentelemetry", "orjson", "jwt"}
SHADOWING |= {"uvicorn", "granian", "psycopg", "psycopg2", "pytest", "copier", "jinja2"}


class Refused(Exception):
    """The request cannot be made; the message says why."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="like reviews or gift-cards")
    parser.add_argument("--port", type=int, help="default: the next after the highest in use")
    parser.add_argument("--depends", default="", help="services it calls, comma-separated")
    args = parser.parse_args(argv)
    try:
        services = service_registry.load_services()
        depends = list(dict.fromkeys(dep.strip() for dep in args.depends.split(",") if dep.strip()))
        port = check(args.name, args.port, depends, services)
    except (Refused, service_registry.ServiceManifestError) as exc:
        print(f"new-service: {exc}", file=sys.stderr)
        return 2
    try:
        folder = generate(args.name, port, depends, services)
    except subprocess.CalledProcessError as exc:
        undo = UNDO.format(name=args.name)
        print(f"new-service: {' '.join(exc.cmd)} failed; undo: {undo}", file=sys.stderr)
        return 1
    print(f"Made {folder.relative_to(ROOT)}/ (port {port}", end="")
    print(f", depends on {', '.join(depends)})" if depends else ")")
    print(NEXT_STEPS.format(name=args.name, port=port, undo=UNDO.format(name=args.name)))
    return 0


def check(
    name: str,
    port: int | None,
    depends: list[str],
    services: dict[str, service_registry.ServiceManifest],
) -> int:
    """The port to use, once the name, port and dependencies are acceptable."""
    if not service_registry.NAME.match(name):
        raise Refused(f"{name!r}: a service's name must be like reviews or gift-cards")
    if len(name) > MAX_NAME_LENGTH:
        raise Refused(f"{name!r}: a service's name has at most {MAX_NAME_LENGTH} characters")
    if name in services or (service_registry.SERVICES_DIR / name).exists():
        raise Refused(f"{name!r}: services/{name} exists already")
    reserved = reserved_reason(name)
    if reserved:
        raise Refused(f"{name!r} is reserved: {reserved}")
    used = {service.port: service.name for service in services.values()}
    used.update(INFRASTRUCTURE_PORTS)
    if port is None:
        port = max([8000, *(service.port for service in services.values())]) + 1
        while port in used:
            port += 1
    if not 1024 <= port <= 65535:
        raise Refused(f"port {port}: a service's port must be from 1024 to 65535")
    if port in used:
        raise Refused(f"port {port} is taken by {used[port]}")
    unknown = sorted(set(depends) - set(services))
    if unknown:
        known = ", ".join(services) or "none"
        raise Refused(f"--depends {','.join(unknown)}: no such service (there are: {known})")
    return port


def reserved_reason(name: str) -> str | None:
    package = name.replace("-", "_")
    if name in INFRASTRUCTURE or name.endswith("-migrate"):
        return "the stack runs a container of that name (compose, Helm)"
    if name in REPOSITORY:
        return "a folder, project or path of this repository"
    if keyword.iskeyword(package):
        return f"{package} is a Python keyword, which no module can be named"
    if name in SHADOWING or package in sys.stdlib_module_names:
        return f"a Python module named {package} would shadow the one the services import"
    return None


def generate(
    name: str,
    port: int,
    depends: list[str],
    services: dict[str, service_registry.ServiceManifest],
) -> Path:
    from copier import run_copy  # a dev dependency: imported once the request is checked

    folder = service_registry.SERVICES_DIR / name
    with contextlib.chdir(ROOT):
        run_copy(
            # Relative to the repository root, so .copier-answers.yml records a path that works
            # on every checkout (copier resolves it from the working directory).
            str(TEMPLATE.relative_to(ROOT)),
            folder,
            data={
                "name": name,
                "port": port,
                "depends": depends,
                "dependency_ports": {dep: services[dep].port for dep in depends},
            },
            defaults=True,
            quiet=True,
        )
    # Import order and line breaks depend on the names: let the repository's ruff settle them.
    run(sys.executable, "-m", "ruff", "check", "--quiet", "--select", "I", "--fix", str(folder))
    run(sys.executable, "-m", "ruff", "format", "--quiet", str(folder))
    run("uv", "lock", "--quiet")
    run("uv", "sync", "--all-packages", "--quiet")
    return folder


def run(*command: str) -> None:
    subprocess.run(command, cwd=ROOT, check=True)  # noqa: S603 - fixed commands, no shell


NEXT_STEPS = """
Next steps:
  services/{name}/README.md says where the code goes
  run it alone:  uv run {name} migrate && uv run {name} serve --port {port}
  test it:       uv run pytest -q services/{name}/tests
  everything:    make check
  undo:          {undo}
"""
UNDO = "rm -rf services/{name} && uv lock"


if __name__ == "__main__":
    sys.exit(main())
