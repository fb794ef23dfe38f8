"""deploy/compose/compose.yaml: valid Compose, and consistent with the services it runs.

The consistency tests load each service's settings exactly as the container would (its
config.yml, the production profile the image selects, the compose environment) so that a
variable the settings model does not read, a bad value or a wrong port fails here, not in a
`make up` nobody could run on this machine.
"""

from __future__ import annotations

import importlib
import json
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from deploy_support import (
    COMPOSE_DIR,
    COMPOSE_FILE,
    CONTAINER_PORT,
    DOCKERFILE,
    HOST_PORTS,
    ROOT,
    SERVICES,
    host_ports,
    interpolate,
    published,
)
from pydantic import BaseModel

from chassis.config import ALIASES, FILE_SUFFIX, NESTING, PROFILE_VARIABLE, load_settings
from chassis.endpoints import READY
from chassis.info import COMMIT_VARIABLE

SCHEMA = Path(__file__).parent / "compose-spec" / "compose-spec.json"
SETTINGS = {
    "books": ("books.settings", "BooksSettings"),
    "shop": ("shop.settings", "ShopSettings"),
    "chat": ("chat.settings", "ChatSettings"),
}
# The OpenTelemetry SDK variables a compose file may set (design §5; chassis/tracing.py).
OTEL_VARIABLES = {
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SDK_DISABLED",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
}
MEBIBYTE = 1024 * 1024
STACK_MEMORY_BUDGET = 1536 * MEBIBYTE  # Docker's "1.5g"
_UNITS = {"b": 1, "k": 1024, "m": MEBIBYTE, "g": 1024 * MEBIBYTE}


def settings_class(service: str) -> type[Any]:
    module, name = SETTINGS[service]
    cls: type[Any] = getattr(importlib.import_module(module), name)
    return cls


def service_dir(service: str) -> Path:
    return Path(importlib.import_module(SETTINGS[service][0]).__file__ or "").parent


def image_environment() -> dict[str, str]:
    """The ENV of the Dockerfile's runtime stage, build args at their compose values."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    runtime = text.split(" AS runtime", 1)[1]
    environment: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                environment[name] = value
    return environment


def variable_names(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[str]:
    """Every environment variable a settings model reads: nested keys joined by ``__``."""
    names = set()
    for field_name, field in model.model_fields.items():
        path = (*prefix, field_name)
        annotation = field.annotation
        names.add(NESTING.join(path).upper())
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= variable_names(annotation, path)
    return names


def allowed_variables(service: str) -> set[str]:
    """The variables ``service``'s settings read, plus OTEL_*, GIT_COMMIT and ENVIRONMENT."""
    cls = settings_class(service)
    names = variable_names(cls) | set(ALIASES) | {PROFILE_VARIABLE}
    # dependencies.<name>: one entry per dependency the service's own config declares.
    config = yaml.safe_load((service_dir(service) / "config.yml").read_text(encoding="utf-8"))
    dependency = cls.model_fields["dependencies"].annotation.__args__[1]
    for name in config.get("dependencies", {}):
        names |= variable_names(dependency, ("dependencies", name))
    names |= {name + FILE_SUFFIX for name in names}
    return names | OTEL_VARIABLES | {COMMIT_VARIABLE}


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: compose["services"][name] for name in SERVICES}


def memory_bytes(limit: str | int) -> int:
    text = str(limit).strip().lower().removesuffix("b") or "0"
    if text[-1] in _UNITS:
        return int(float(text[:-1]) * _UNITS[text[-1]])
    return int(text)


# -- the file itself ------------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    checker = jsonschema.FormatChecker()

    @checker.checks("duration", raises=ValueError)
    def duration(value: object) -> bool:  # compose-go registers the same format
        import re

        return not isinstance(value, str) or bool(
            re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", value)
        )

    validator = jsonschema.Draft7Validator(schema, format_checker=checker)
    errors = sorted(validator.iter_errors(compose), key=lambda error: list(error.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_rejects_what_compose_rejects() -> None:
    """The vendored schema is the real one: an unknown key and a bad type fail."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    bad = {"services": {"x": {"image": "a", "restart_policy": "always", "ports": "8000"}}}
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(bad))) >= 1


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode
    != 0,
    reason="`docker compose` is not installed here; the JSON schema test covers the file",
)
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_service_has_a_memory_limit_and_the_stack_fits_in_1_5_gib(
    compose: dict[str, Any],
) -> None:
    limits = {name: service.get("mem_limit") for name, service in compose["services"].items()}
    assert all(limits.values()), f"without mem_limit: {[n for n, v in limits.items() if not v]}"
    total = sum(memory_bytes(limit) for limit in limits.values())
    assert total <= STACK_MEMORY_BUDGET, f"{total / MEBIBYTE:.0f} MiB: {limits}"


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).resolve().exists(), f"{name}: {source}"


# -- the services ---------------------------------------------------------------------------------


def test_services_publish_their_design_ports(compose: dict[str, Any]) -> None:
    for name, service in app_services(compose).items():
        assert host_ports(service) == [(HOST_PORTS[name], CONTAINER_PORT)], name


def test_every_port_is_published_on_loopback_unless_bind_address_says_otherwise(
    compose_raw: dict[str, Any], compose: dict[str, Any]
) -> None:
    """PostgreSQL with its default password, the fault-injection token, Grafana's admin: by
    default nothing is reachable from another machine."""
    entries = [
        (name, entry)
        for name, service in compose["services"].items()
        for entry in service.get("ports", [])
    ]
    assert {name for name, _ in entries} >= {"postgres", *SERVICES, "grafana"}
    for name, entry in entries:
        assert published(entry)[0] == "127.0.0.1", f"{name}: {entry} is published beyond 127.0.0.1"
    assert [published(e) for e in compose["services"]["postgres"]["ports"]] == [
        ("127.0.0.1", 5432, 5432)
    ]
    chosen = interpolate(compose_raw, {"BIND_ADDRESS": "192.0.2.7"})
    for name, service in chosen["services"].items():
        for entry in service.get("ports", []):
            assert published(entry)[0] == "192.0.2.7", f"{name}: {entry} ignores BIND_ADDRESS"


def test_published_reads_every_ports_syntax() -> None:
    assert published("8001:8000") == ("", 8001, 8000)
    assert published("8000") == ("", 0, 8000)
    assert published("127.0.0.1:8001:8000/tcp") == ("127.0.0.1", 8001, 8000)
    assert published("[::1]:8001:8000") == ("::1", 8001, 8000)
    assert published({"target": 8000, "published": "8001"}) == ("", 8001, 8000)
    assert published({"target": 8000, "published": 8001, "host_ip": "127.0.0.1"}) == (
        "127.0.0.1",
        8001,
        8000,
    )


def test_every_variable_set_for_a_service_is_one_its_settings_read(
    compose: dict[str, Any],
) -> None:
    for name, service in app_services(compose).items():
        unknown = set(service["environment"]) - allowed_variables(name)
        assert not unknown, f"{name} sets variables its settings never read: {sorted(unknown)}"
    for name in SERVICES:
        migrate = compose["services"][f"{name}-migrate"]
        unknown = set(migrate["environment"]) - allowed_variables(name)
        assert not unknown, f"{name}-migrate: {sorted(unknown)}"


@pytest.mark.parametrize("service", SERVICES)
def test_settings_load_in_the_container_environment(compose: dict[str, Any], service: str) -> None:
    """The settings the container builds: production profile, every value valid."""
    environ = {**image_environment(), **app_services(compose)[service]["environment"]}
    environ = {key: str(value) for key, value in environ.items()}
    settings = load_settings(settings_class(service), service_dir(service), environ=environ)
    assert settings.environment == "production"
    assert settings.http.host == "0.0.0.0"
    assert settings.http.port == CONTAINER_PORT
    assert settings.faults.enabled
    database = urlsplit(settings.database.url.get_secret_value())
    assert (database.hostname, database.port, database.path) == (
        "postgres",
        5432,
        f"/{service}",
    )
    assert database.username == service, "each service logs in as its own role"
    assert environ["OTEL_SERVICE_NAME"] == service
    assert environ["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    for dependency, section in settings.dependencies.items():
        assert section.base_url == f"http://{dependency}:{CONTAINER_PORT}", dependency
        assert dependency in compose["services"], dependency


def test_migrations_use_the_same_image_and_database_as_the_service(
    compose: dict[str, Any],
) -> None:
    for name, service in app_services(compose).items():
        migrate = compose["services"][f"{name}-migrate"]
        assert migrate["image"] == service["image"]
        assert "build" not in migrate, "built once, by the service"
        assert migrate["environment"]["DATABASE_URL"] == service["environment"]["DATABASE_URL"]
        assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["depends_on"][f"{name}-migrate"] == {
            "condition": "service_completed_successfully"
        }
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert migrate["restart"] == "no"


def test_images_are_built_from_the_shared_dockerfile_for_their_service(
    compose: dict[str, Any],
) -> None:
    for name, service in app_services(compose).items():
        build = service["build"]
        assert (COMPOSE_DIR / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE
        assert build["args"]["SERVICE"] == name
        assert "GIT_COMMIT" in build["args"]
        assert service["image"].startswith(f"bookshop-{name}:")


def _cli_words(command: list[str]) -> list[list[str]]:
    """The commands a compose ``command`` runs: itself, or each step of ``sh -c "a && b"``."""
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(step) for step in command[2].split("&&")]
    return [command]


def _console_script(service: str) -> str:
    pyproject = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    (script,) = pyproject["project"]["scripts"]
    return str(script)


@pytest.mark.parametrize("service", SERVICES)
def test_every_command_is_the_services_own_cli(compose: dict[str, Any], service: str) -> None:
    script = _console_script(service)
    assert compose["services"][service]["command"] == [script, "serve"]
    steps = _cli_words(compose["services"][f"{service}-migrate"]["command"])
    assert steps[0] == [script, "migrate"]
    for words in steps:
        assert words[0] == script
        help_text = subprocess.run(  # the subcommand exists in the real CLI
            [str(Path(sys.executable).parent / script), *words[1:], "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert help_text.returncode == 0, help_text.stderr
    if service == "books":
        assert [script, "seed"] in steps, "the demo catalogue"


def test_service_healthchecks_probe_readiness_on_the_container_port(
    compose: dict[str, Any],
) -> None:
    for name, service in app_services(compose).items():
        probe = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{CONTAINER_PORT}{READY}" in probe, name
        # drain + grace of the production profile must fit before Docker's SIGKILL
        settings = load_settings(
            settings_class(name), service_dir(name), environ={PROFILE_VARIABLE: "production"}
        )
        grace = settings.shutdown.drain_seconds + settings.shutdown.grace_seconds
        assert int(service["stop_grace_period"].removesuffix("s")) > grace, name


def test_postgres_creates_one_database_per_service(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert postgres["environment"]["SERVICE_DATABASES"].split() == list(SERVICES)
    assert any("/docker-entrypoint-initdb.d/" in v for v in postgres["volumes"])
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert any(v.startswith("postgres-data:") for v in postgres["volumes"])


def test_observability_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    assert {(16686, 16686), (4317, 4317), (4318, 4318)} <= set(host_ports(services["jaeger"]))
    prometheus = services["prometheus"]
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    assert host_ports(prometheus) == [(9090, 9090)]
    grafana = services["grafana"]
    assert host_ports(grafana) == [(3000, 3000)]
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert grafana["environment"]["GF_USERS_VIEWERS_CAN_EDIT"] == "true", "exemplar links"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    mounts = dict(reversed(v.split(":")[:2]) for v in grafana["volumes"])
    directory, _, file_name = home.rpartition("/")
    assert (COMPOSE_DIR / mounts[directory] / file_name).is_file(), home


def test_locust_runs_the_load_tests_with_its_web_ui_under_the_load_profile(
    compose: dict[str, Any],
) -> None:
    locust = compose["services"]["locust"]
    assert locust["profiles"] == ["load"]
    assert host_ports(locust) == [(8089, 8089)]
    source, target = locust["volumes"][0].split(":")[:2]
    assert (COMPOSE_DIR / source).resolve() == ROOT / "tests" / "load"
    locustfile = locust["command"][locust["command"].index("-f") + 1]
    assert locustfile == f"{target}/locustfile.py"
    text = (ROOT / "tests" / "load" / "locustfile.py").read_text(encoding="utf-8")
    for variable, url in locust["environment"].items():
        assert f'"{variable}"' in text, f"the locustfile does not read {variable}"
        assert urlsplit(url).hostname in SERVICES
    # the image runs the locust version the workspace locks (uv.lock)
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    (locked,) = [p["version"] for p in lock["package"] if p["name"] == "locust"]
    assert locust["image"] == f"locustio/locust:{locked}"


def test_interpolation_defaults_can_be_overridden(compose_raw: dict[str, Any]) -> None:
    environment = compose_raw["services"]["shop"]["environment"]
    assert interpolate(environment, {"FAULTS__TOKEN": "another-token-123"})["FAULTS__TOKEN"] == (
        "another-token-123"
    )
    assert "dev-faults-token-not-a-secret" in interpolate(environment, {})["FAULTS__TOKEN"]
