"""The compose stack (deploy/compose/compose.yaml with what generate.py makes of the service
folders): valid Compose, and consistent with the services it runs.

The consistency tests load each service's settings exactly as the container would (its
config.yml, the production profile the image selects, the compose environment) so that a
variable the settings model does not read, a bad value or a wrong port fails here, not in a
`make up` nobody could run on this machine. The one-shot `auth-init` is run here too, its named
volumes directories in a temporary place, so that the files books and shop read are the ones it
really writes, and the files each service could see are known.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import jwt
import pytest
import service_registry
import yaml
from deploy_support import (
    COMPOSE_DIR,
    COMPOSE_FILE,
    CONTAINER_PORT,
    DOCKERFILE,
    GENERATE,
    HOST_PORTS,
    REGISTRY,
    ROOT,
    SERVICES,
    host_ports,
    interpolate,
    published,
)
from pydantic import BaseModel

from chassis.auth import Forbidden, TokenVerifier
from chassis.config import (
    ALIASES,
    FILE_SUFFIX,
    NESTING,
    PROFILE_VARIABLE,
    load_settings,
)
from chassis.dev_issuer import PRIVATE_KEY, PUBLIC_KEY
from chassis.endpoints import READY
from chassis.info import COMMIT_VARIABLE

SCHEMA = Path(__file__).parent / "compose-spec" / "compose-spec.json"
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
AUTH_INIT = "auth-init"
# Where every service reads the issuer's public key (`auth-public`), where those presenting
# tokens read theirs (`auth`), both read-only; where locust reads its own (`auth-load`).
PUBLIC_DIR = "/run/auth/public"
TOKENS_DIR = "/run/auth/shared"
AUTH_DIR = "/run/auth"
SHOP_TOKEN = "shop-books.jwt"
LOCUST_TOKEN = "locust-books.jwt"
TOKEN_SECONDS = 7 * 24 * 3600


def settings_class(service: str) -> type[Any]:
    return service_registry.settings_class(REGISTRY[service])


def service_dir(service: str) -> Path:
    return REGISTRY[service].config_dir


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


def one_shots(compose: dict[str, Any]) -> list[str]:
    """The services that run once and exit (migrations, auth-init)."""
    return [name for name, service in compose["services"].items() if service.get("restart") == "no"]


def starts_after_completion(compose: dict[str, Any], later: str, earlier: str) -> bool:
    """Whether Compose starts ``later`` only once ``earlier`` has exited successfully: a chain
    of depends_on from ``later`` whose last link waits for ``earlier`` to complete."""
    seen, pending = {later}, [later]
    while pending:
        depends_on = compose["services"][pending.pop()].get("depends_on", {})
        if isinstance(depends_on, list):  # short syntax: service_started
            depends_on = {name: {"condition": "service_started"} for name in depends_on}
        for dependency, how in depends_on.items():
            if dependency == earlier and how["condition"] == "service_completed_successfully":
                return True
            if dependency not in seen:
                seen.add(dependency)
                pending.append(dependency)
    return False


def mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read-only) of each of ``service``'s volumes, short or long syntax."""
    found = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            source, target = str(entry.get("source", "")), str(entry["target"])
            found.append((source, target, bool(entry.get("read_only", False))))
            continue
        parts = str(entry).split(":")
        if len(parts) == 1:  # an anonymous volume
            parts = ["", *parts]
        options = parts[2].split(",") if len(parts) > 2 else []
        found.append((parts[0], parts[1], "ro" in options))
    return found


def named_mounts(compose: dict[str, Any], service: str) -> list[tuple[str, str, bool]]:
    """The mounts of the stack's named volumes (not bind mounts) in ``service``."""
    named = set(compose.get("volumes") or {})
    return [mount for mount in mounts(compose["services"][service]) if mount[0] in named]


def run_auth_init(compose: dict[str, Any], root: Path) -> dict[str, Path]:
    """Runs auth-init's command on this machine, each named volume it mounts a directory under
    ``root`` put where the container has it (nested mounts included): volume -> directory."""
    service = compose["services"][AUTH_INIT]
    volumes = {source: root / source for source, _, _ in named_mounts(compose, AUTH_INIT)}
    for directory in volumes.values():
        directory.mkdir(parents=True, exist_ok=True)
    place = {target: volumes[source] for source, target, _ in named_mounts(compose, AUTH_INIT)}
    # the deepest mount point first: /run/auth/shared is another volume than /run/auth
    pattern = re.compile("|".join(re.escape(t) for t in sorted(place, key=len, reverse=True)))
    shell, flag, script = service["command"]
    assert (shell, flag) == ("sh", "-c")
    result = subprocess.run(
        ["sh", "-c", pattern.sub(lambda match: str(place[match.group(0)]), script)],
        env={  # the image's python, and what compose sets
            **{key: str(value) for key, value in service.get("environment", {}).items()},
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return volumes


def visible_files(
    compose: dict[str, Any], service: str, volumes: dict[str, Path]
) -> dict[str, Path]:
    """The files of the named volumes ``service`` mounts: path in the container -> file here."""
    files = {}
    for source, target, _ in named_mounts(compose, service):
        for path in volumes.get(source, Path("/nonexistent")).rglob("*"):
            if path.is_file():
                files[f"{target}/{path.relative_to(volumes[source]).as_posix()}"] = path
    return files


def container_environment(
    compose: dict[str, Any], service: str, volumes: dict[str, Path]
) -> dict[str, str]:
    """The image's ENV and the service's environment, every *_FILE variable that names a file
    of a mounted named volume pointed at that file here."""
    files = visible_files(compose, service, volumes)
    environ = {**image_environment(), **compose["services"][service].get("environment", {})}
    return {key: str(files.get(str(value), value)) for key, value in environ.items()}


@pytest.fixture(scope="module")
def auth_volumes(
    compose: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The named volumes as auth-init leaves them."""
    return run_auth_init(compose, tmp_path_factory.mktemp("volumes"))


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
def test_docker_compose_accepts_the_files(tmp_path: Path) -> None:
    GENERATE.write(REGISTRY, tmp_path)
    services = tmp_path / GENERATE.SERVICES_FILE.name
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "-f", str(services), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_service_has_a_memory_limit_and_the_stack_fits_in_1_5_gib(
    compose: dict[str, Any],
) -> None:
    """Every long-running container at its limit, plus the heaviest set of one-shots that can
    run side by side (none of them started only once another has completed)."""
    limits = {name: service.get("mem_limit") for name, service in compose["services"].items()}
    assert all(limits.values()), f"without mem_limit: {[n for n, v in limits.items() if not v]}"
    size = {name: memory_bytes(limit) for name, limit in limits.items()}
    once = one_shots(compose)
    steady = sum(size[name] for name in size if name not in once)
    overlapping = [
        group
        for count in range(1, len(once) + 1)
        for group in itertools.combinations(once, count)
        if not any(
            starts_after_completion(compose, a, b) or starts_after_completion(compose, b, a)
            for a, b in itertools.combinations(group, 2)
        )
    ]
    heaviest = max(overlapping, key=lambda group: sum(size[name] for name in group))
    total = steady + sum(size[name] for name in heaviest)
    assert total <= STACK_MEMORY_BUDGET, f"{total / MEBIBYTE:.0f} MiB: {heaviest}, {limits}"


def test_one_shots_that_run_in_turn_are_told_apart(compose: dict[str, Any]) -> None:
    """The memory test counts together only one-shots that can overlap: the order is real."""
    assert set(one_shots(compose)) == {AUTH_INIT, *(f"{name}-migrate" for name in SERVICES)}
    assert starts_after_completion(compose, "books", "books-migrate")
    assert starts_after_completion(compose, "locust", "books-migrate")  # through books
    assert not starts_after_completion(compose, "books-migrate", "books")
    for name in SERVICES:
        assert starts_after_completion(compose, f"{name}-migrate", AUTH_INIT), name
    # the migrations one after another, in the order of the ports: their memory counts once
    for earlier, later in itertools.pairwise(SERVICES):
        assert starts_after_completion(compose, f"{later}-migrate", f"{earlier}-migrate")
        assert not starts_after_completion(compose, f"{earlier}-migrate", f"{later}-migrate")
        assert not starts_after_completion(compose, f"{later}-migrate", earlier), "no wait"


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    """Every file or folder a container mounts is in the repository, or generate.py writes it
    before any compose target runs."""
    generated = {GENERATE.SERVICES_FILE, GENERATE.PROMETHEUS_FILE}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                path = (COMPOSE_DIR / source).resolve()
                assert path.exists() or path in generated, f"{name}: {source}"


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
def test_settings_load_in_the_container_environment(
    compose: dict[str, Any], service: str, auth_volumes: dict[str, Path]
) -> None:
    """The settings the container builds: production profile, every value valid, the files it
    reads those auth-init wrote."""
    environ = container_environment(compose, service, auth_volumes)
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
    for variable, value in locust["environment"].items():
        assert f'"{variable}"' in text, f"the locustfile does not read {variable}"
        if variable.endswith("_URL"):
            assert urlsplit(value).hostname in SERVICES
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


# -- tokens: auth-init and what books, shop and locust read ---------------------------------------


def test_auth_init_is_a_one_shot_of_the_books_image(compose: dict[str, Any]) -> None:
    auth_init = compose["services"][AUTH_INIT]
    assert auth_init["image"] == compose["services"]["books"]["image"], "the dev issuer is in it"
    assert "build" not in auth_init, "built once, by books"
    assert auth_init["restart"] == "no"
    assert auth_init["healthcheck"] == {"disable": True}
    assert "python -m chassis.dev_issuer keys " in auth_init["command"][2]
    assert "python -m chassis.dev_issuer mint " in auth_init["command"][2]


def test_auth_init_makes_the_key_pair_once_and_the_tokens_at_each_run(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    first = run_auth_init(compose, tmp_path)
    (issuer,) = [d for d in first.values() if (d / PRIVATE_KEY).is_file()]
    key = (issuer / PRIVATE_KEY).read_bytes()
    books_files = visible_files(compose, "books", first)
    shop_files = visible_files(compose, "shop", first)
    public_file = compose["services"]["books"]["environment"]["AUTH__PUBLIC_KEY_FILE"]
    token_file = compose["services"]["shop"]["environment"]["DEPENDENCIES__BOOKS__TOKEN_FILE"]
    token = shop_files[token_file].read_text().strip()

    again = run_auth_init(compose, tmp_path)  # the next `up`: same volumes
    assert (issuer / PRIVATE_KEY).read_bytes() == key, "the key pair survives restarts"
    assert shop_files[token_file].read_text().strip() != token, "a fresh token at each up"
    assert books_files[public_file].read_text() == (issuer / PUBLIC_KEY).read_text()
    assert visible_files(compose, "books", again) == books_files
    for path in [issuer / PRIVATE_KEY, shop_files[token_file]]:
        assert path.stat().st_mode & 0o077 == 0, f"{path.name}: the image's user only"
    assert books_files[public_file].stat().st_mode & 0o777 == 0o644, "public, not writable"

    locust_file = compose["services"]["locust"]["environment"]["LOAD_BOOKS_TOKEN_FILE"]
    locust_token = visible_files(compose, "locust", again)[locust_file]
    # the locust image runs as its own user, not the bookshop images' one
    assert locust_token.stat().st_mode & 0o777 == 0o644
    for path, subject, scope in [
        (shop_files[token_file], "shop", "stock:reserve"),
        (locust_token, "locust", "catalog:write"),
    ]:
        claims = jwt.decode(
            path.read_text().strip(),
            books_files[public_file].read_text(),
            algorithms=["ES256"],
            audience="books",
            issuer="bookshop-dev",
        )
        assert (claims["sub"], claims["scope"]) == (subject, scope)
        assert claims["exp"] - claims["iat"] == TOKEN_SECONDS


def test_every_service_reads_the_public_key_and_its_own_tokens_once_auth_init_is_done(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name, manifest in REGISTRY.items():
        environment = services[name]["environment"]
        assert environment["AUTH__PUBLIC_KEY_FILE"] == f"{PUBLIC_DIR}/{PUBLIC_KEY}", name
        expected = [("auth-public", PUBLIC_DIR, True)]
        if manifest.credentials:
            expected.append(("auth", TOKENS_DIR, True))
        assert named_mounts(compose, name) == expected, name
        for dependency in manifest.dependencies:
            token = environment.get(f"DEPENDENCIES__{dependency.upper()}__TOKEN_FILE")
            wanted = f"{TOKENS_DIR}/{name}-{dependency}.jwt"
            assert token == (wanted if dependency in manifest.credentials else None), name
        assert services[name]["depends_on"][AUTH_INIT] == {
            "condition": "service_completed_successfully"
        }, name
    assert services["shop"]["environment"]["DEPENDENCIES__BOOKS__TOKEN_FILE"] == (
        f"{TOKENS_DIR}/{SHOP_TOKEN}"
    )
    assert not REGISTRY["chat"].credentials, "chat only reads books: no token"
    locust = services["locust"]
    assert locust["environment"]["LOAD_BOOKS_TOKEN_FILE"] == f"{AUTH_DIR}/{LOCUST_TOKEN}"
    assert named_mounts(compose, "locust") == [("auth-load", AUTH_DIR, True)]


def test_only_auth_init_writes_the_auth_volumes_or_sees_the_private_key(
    compose: dict[str, Any], auth_volumes: dict[str, Path]
) -> None:
    (issuer,) = [name for name, d in auth_volumes.items() if (d / PRIVATE_KEY).is_file()]
    for name in compose["services"]:
        if name == AUTH_INIT:
            continue
        for source, target, read_only in named_mounts(compose, name):
            if source in auth_volumes:
                assert source != issuer, f"{name} mounts the issuer's private key"
                assert read_only, f"{name} mounts {source} at {target} writable"
        seen = {Path(path).name for path in visible_files(compose, name, auth_volumes)}
        assert PRIVATE_KEY not in seen, name
        # each token where it is used: catalog:write is locust's alone; shop's is seen only by
        # the services presenting tokens (shop alone here), not by books, its audience, or chat
        presents_tokens = name in REGISTRY and bool(REGISTRY[name].credentials)
        assert SHOP_TOKEN not in seen or presents_tokens, name
        assert LOCUST_TOKEN not in seen or name == "locust", name
    assert f"{AUTH_DIR}/{PRIVATE_KEY}" in visible_files(compose, AUTH_INIT, auth_volumes)


def test_shops_token_opens_books_reservations_and_nothing_else(
    compose: dict[str, Any], auth_volumes: dict[str, Path]
) -> None:
    """books' settings (its key, its issuer and audience) accept the token shop's settings
    present: for stock:reserve, never for catalog:write."""
    settings = {
        name: load_settings(
            settings_class(name),
            service_dir(name),
            environ=container_environment(compose, name, auth_volumes),
        )
        for name in ("books", "shop")
    }
    verifier = TokenVerifier(settings["books"].auth, service_name=settings["books"].service.name)
    credential = settings["shop"].dependencies["books"].token
    assert credential is not None
    authorization = f"Bearer {credential.get_secret_value()}"
    assert verifier.verify(authorization, ["stock:reserve"])["sub"] == "shop"
    with pytest.raises(Forbidden):
        verifier.verify(authorization, ["catalog:write"])


def _image_user() -> tuple[str, str]:
    """(name, uid) of the user the image runs as (deploy/Dockerfile)."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    (uid,) = re.findall(r"^USER\s+(\d+):\d+\s*$", text, re.MULTILINE)
    (name,) = re.findall(rf"useradd\s[^&]*--uid {uid}\s[^&]*?\s(\w+)\s*(?:&&|$)", text, re.M)
    return name, uid


def image_directories() -> dict[str, dict[str, str]]:
    """The directories the runtime stage makes with `install -d`: path -> owner, group, mode."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    made: dict[str, dict[str, str]] = {}
    for line in text.split(" AS runtime", 1)[1].splitlines():
        if not line.startswith("RUN "):
            continue
        for command in line[4:].split("&&"):
            words = shlex.split(command)
            if words[:2] != ["install", "-d"]:
                continue
            options, paths, rest = {"-o": "root", "-g": "root", "-m": "0755"}, [], iter(words[2:])
            for word in rest:
                if word in options:
                    options[word] = next(rest)
                else:
                    paths.append(word)
            for path in paths:
                made[path] = {"owner": options["-o"], "group": options["-g"], "mode": options["-m"]}
    return made


def test_the_image_user_owns_every_named_volume_its_containers_mount(
    compose: dict[str, Any],
) -> None:
    """A fresh named volume takes the owner and mode of the image's directory it is first
    mounted on: without one made for the image's (non-root) user it would be root's, and
    auth-init could not write its keys."""
    user, uid = _image_user()
    made = image_directories()
    checked = 0
    for name, service in compose["services"].items():
        if not service.get("image", "").startswith("bookshop-"):
            continue
        for source, target, _ in named_mounts(compose, name):
            assert target in made, f"{name}: {target} ({source}) is not in the image"
            assert made[target]["owner"] in (user, uid), f"{name}: {target}"
            assert int(made[target]["mode"], 8) & 0o022 == 0, f"{name}: {target} writable by all"
            checked += 1
    assert checked >= 4 + len(SERVICES)  # auth-init's four, every service's key, shop's tokens
    auth_init = {source: target for source, target, _ in named_mounts(compose, AUTH_INIT)}
    for volume in ("auth-issuer", "auth"):  # the private key; the services' tokens
        assert made[auth_init[volume]]["mode"] == "0700", volume


# -- the generated half ---------------------------------------------------------------------------


def test_the_generated_file_holds_what_these_tests_check(tmp_path: Path) -> None:
    GENERATE.write(REGISTRY, tmp_path)
    written = yaml.safe_load((tmp_path / GENERATE.SERVICES_FILE.name).read_text(encoding="utf-8"))
    assert written == GENERATE.services_file(REGISTRY)
    assert set(written["services"]) == {
        "postgres",
        AUTH_INIT,
        *SERVICES,
        *(f"{name}-migrate" for name in SERVICES),
    }


def test_make_passes_both_files_and_writes_the_generated_one_first() -> None:
    """Every compose target of the Makefile runs generate.py before Compose reads the files, and
    the generated folder stays out of git."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    (compose,) = re.findall(r"^COMPOSE := ((?:.*\\\n)*.*)$", makefile, re.MULTILINE)
    assert compose.split()[-4:] == [
        "-f",
        str(COMPOSE_FILE.relative_to(ROOT)),
        "-f",
        str(GENERATE.SERVICES_FILE.relative_to(ROOT)),
    ]
    for target in ("up", "down", "logs", "ps"):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
        assert recipe, target
        steps = recipe.group(1)
        assert "$(COMPOSE_GENERATE)" in steps.split("$(COMPOSE) ")[0], target
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(GENERATE.SERVICES_FILE)], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "deploy/compose/generated/ belongs in .gitignore"


def test_every_third_party_image_can_be_replaced_and_defaults_to_the_official_one(
    compose_raw: dict[str, Any],
) -> None:
    """`make up OFFLINE=1` names the stand-ins of deploy/offline/images.env; without it (and
    without the variables) every image is the official one."""
    offline = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy" / "offline" / "images.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    defaults = interpolate(compose_raw, {})["services"]
    chosen = interpolate(compose_raw, offline)["services"]
    for name, service in compose_raw["services"].items():
        image = service.get("image", "")
        if image.startswith("bookshop-"):
            continue  # built here, from deploy/Dockerfile
        variable = re.fullmatch(r"\$\{([A-Z_]+)_IMAGE:-[^}]+\}", image)
        assert variable, f"{name}: {image} cannot be replaced"
        assert "/" in defaults[name]["image"] or ":" in defaults[name]["image"], name
        if name != "grafana":  # no stand-in: the offline stack runs without it
            assert chosen[name]["image"].startswith("bookshop-offline/"), name
    for name in REGISTRY:
        args = chosen[name]["build"]["args"]
        assert args["PYTHON_IMAGE"] == offline["PYTHON_IMAGE"]
        assert defaults[name]["build"]["args"]["PYTHON_IMAGE"].startswith("python:3")


def test_services_start_without_the_telemetry_backends(compose: dict[str, Any]) -> None:
    """Spans and scrapes are the backends' business: a service waits for its database and its
    keys only, so the core stack runs without Jaeger, Prometheus or Grafana."""
    for name, service in app_services(compose).items():
        waits_for = set(service.get("depends_on", {}))
        assert waits_for == {"postgres", AUTH_INIT, f"{name}-migrate"}, name
