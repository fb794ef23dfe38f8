"""The services of the repository: every folder ``services/<name>/`` holding a ``service.yml``.

Each place that runs or checks every service (the Makefile's paths, Prometheus' targets, the dev
stack, the end-to-end stack, the deploy tests) finds them here rather than in a list of its own,
so a new service folder is part of them without an edit elsewhere. What a folder declares:

    services/<name>/service.yml              port (make dev's, compose's host port: design §8),
                                             credentials {dependency: [scopes]}, home (the
                                             path a person opens first; /ui/ by default),
                                             language (python by default, or go)
    services/<name>/src/<package>/config.yml a Python service: service.name (= <name>) and its
                                             dependencies
    services/<name>/go.mod                   a Go service (its service.yml then lists its
                                             dependencies itself: its settings are Go code)

The places that run or deploy services (make dev, compose, the chart, Prometheus' targets, the
end-to-end stack) take :func:`python_services` for now: the Go gateway (issue 11) joins them
once it has an image. ``make check`` runs every Go service's vet, tests and staticcheck.

It belongs to no package: scripts put deploy/ on ``sys.path`` and ``import service_registry``
(pytest does so through ``pythonpath`` in pyproject.toml).

    python deploy/service_registry.py            one line per service: name, port, dependencies,
                                                 language
    python deploy/service_registry.py --names    the names, space-separated
        [--language python]                      only the services in that language
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVICES_DIR = ROOT / "services"
MANIFEST = "service.yml"
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PYTHON, GO = "python", "go"
LANGUAGES = (PYTHON, GO)


class ServiceManifestError(ValueError):
    """A service folder declares something inconsistent; the message names the file."""


@dataclass(frozen=True)
class ServiceManifest:
    name: str
    port: int
    folder: Path
    package: str  # the import name: the name with "-" as "_"
    dependencies: tuple[str, ...] = ()
    credentials: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    home: str = "/ui/"
    language: str = PYTHON

    @property
    def config_dir(self) -> Path:
        return self.folder / "src" / self.package


def load_services(services_dir: Path = SERVICES_DIR) -> dict[str, ServiceManifest]:
    """Every service by name, in the order of their ports; checked against each other."""
    found = [_load(manifest) for manifest in sorted(services_dir.glob(f"*/{MANIFEST}"))]
    services = {service.name: service for service in sorted(found, key=lambda s: s.port)}
    _check_together(services)
    return services


def python_services(services_dir: Path = SERVICES_DIR) -> dict[str, ServiceManifest]:
    """The services built on the Python chassis (see the module's docstring)."""
    return {
        name: service
        for name, service in load_services(services_dir).items()
        if service.language == PYTHON
    }


def _load(manifest: Path) -> ServiceManifest:
    folder = manifest.parent
    name = folder.name
    if not NAME.match(name):
        raise ServiceManifestError(
            f"{folder}: a service's folder name must be like reviews or gift-cards"
        )
    data = _yaml(manifest)
    port = data.get("port")
    if type(port) is not int or not 1024 <= port <= 65535:
        raise ServiceManifestError(f"{manifest}: port must be a number from 1024 to 65535")
    package = name.replace("-", "_")
    language = data.get("language") or PYTHON
    if language not in LANGUAGES:
        raise ServiceManifestError(f"{manifest}: language must be one of {', '.join(LANGUAGES)}")
    if language == GO:
        config_file = manifest
        if not (folder / "go.mod").is_file():
            raise ServiceManifestError(f"{folder / 'go.mod'} is missing (language: go)")
        listed = data.get("dependencies") or []
        if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
            raise ServiceManifestError(f"{manifest}: dependencies must be a list of names")
        dependencies = tuple(sorted(listed))
    else:
        config_file = folder / "src" / package / "config.yml"
        config = _yaml(config_file)
        declared = (config.get("service") or {}).get("name")
        if declared != name:
            raise ServiceManifestError(
                f"{config_file}: service.name must be {name!r}, the folder's name"
            )
        dependencies = tuple(sorted(config.get("dependencies") or {}))
    credentials = {
        str(dependency): tuple(str(scope) for scope in scopes or ())
        for dependency, scopes in (data.get("credentials") or {}).items()
    }
    stray = sorted(set(credentials) - set(dependencies))
    if stray:
        raise ServiceManifestError(
            f"{manifest}: credentials for {stray}, which {config_file} does not declare "
            "under dependencies"
        )
    home = data.get("home", "/ui/")
    if not isinstance(home, str) or not home.startswith("/"):
        raise ServiceManifestError(f"{manifest}: home must be a path such as /ui/")
    return ServiceManifest(name, port, folder, package, dependencies, credentials, home, language)


def env_name(name: str) -> str:
    """A service's name as it starts an environment variable: gift-cards -> GIFT_CARDS."""
    return name.upper().replace("-", "_")


def settings_class(service: ServiceManifest) -> type[Any]:
    """The one subclass of the chassis' Settings that ``<package>.settings`` defines (every
    service's convention, the template's too); the package must be installed."""
    from chassis.config import Settings

    module = importlib.import_module(f"{service.package}.settings")
    (found,) = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Settings)
        and value is not Settings
        and value.__module__ == module.__name__
    ]
    return found


def banner_line(service: ServiceManifest, base_url: str) -> str:
    """The line a stack prints for ``service`` once it is up: what a person opens first."""
    python = service.language == PYTHON  # the chassis serves API docs at /ui/
    docs = "" if service.home == "/ui/" or not python else "   (API docs at /ui/)"
    return f"  {service.name:<11} {base_url}{service.home}{docs}"


def _check_together(services: Mapping[str, ServiceManifest]) -> None:
    by_port: dict[int, str] = {}
    for service in services.values():
        if service.port in by_port:
            raise ServiceManifestError(
                f"{service.name} and {by_port[service.port]} both declare port {service.port}"
            )
        by_port[service.port] = service.name
        unknown = sorted(set(service.dependencies) - set(services))
        if unknown:
            raise ServiceManifestError(
                f"{service.name} depends on {unknown}, which no folder under services/ is"
            )
        elsewhere = sorted(
            name for name in service.dependencies if services[name].language != PYTHON
        )
        if service.language == PYTHON and elsewhere:  # they would not be in its compose stack
            raise ServiceManifestError(
                f"{service.name} depends on {elsewhere}: a Python service may depend on Python "
                "services only (compose and the chart do not run the others yet)"
            )


def _yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ServiceManifestError(f"{path} is missing")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ServiceManifestError(f"{path} must hold a mapping")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", action="store_true", help="the names only, on one line")
    parser.add_argument("--language", choices=LANGUAGES, help="only the services in it")
    args = parser.parse_args(argv)
    services = {
        name: service
        for name, service in load_services().items()
        if args.language in (None, service.language)
    }
    if args.names:
        print(" ".join(services))
        return 0
    for service in services.values():
        dependencies = ",".join(service.dependencies) or "-"
        print(f"{service.name} {service.port} {dependencies} {service.language}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
