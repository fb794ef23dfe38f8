"""deploy/helm/bookshop: a valid chart, valid Kubernetes objects, and consistent with the services.

No cluster runs here, so the chart is checked by what runs without one: `helm lint` and
`helm template` (the chart's values.schema.json included), every rendered object validated
against the Kubernetes API schemas of the oldest and the newest version it supports
(``kubernetes-validate`` ships them; strict: an unknown field fails), and the same consistency
checks test_compose.py makes of the compose file: every variable a pod sets is one its settings
read, the settings load from the pod's environment and mounted Secret files, commands are the
services' CLI, ports and probe paths are design §4/§8's, memory matches compose.

The chart finds the services in the service folders (its services/ symlink), as
deploy/service_registry.py does: every check below runs for each service of the registry, and a
copy of the repository with one more folder shows that a new service is deployed without an
edit of the chart.

Rendered twice: with the default values and with ci/full-values.yaml (every option on). Needs
`helm` (`go install helm.sh/helm/v3/cmd/helm@...`, what .ci/run does): skipped without it,
failed under CI.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import service_registry
import yaml
from deploy_support import CONTAINER_PORT, DOCKERFILE, ROOT, load_compose
from kubernetes_validate.utils import SchemaNotFoundError, latest_version
from test_compose import (
    allowed_variables,
    image_environment,
    memory_bytes,
    service_dir,
    settings_class,
)

from chassis.auth import TokenVerifier
from chassis.config import load_settings
from chassis.dev_issuer import DevIssuer
from chassis.endpoints import LIVE, METRICS, READY

CHART = ROOT / "deploy" / "helm" / "bookshop"
# Every folder under services/ (deploy/service_registry.py), in the order of their ports.
REGISTRY = service_registry.python_services()
SERVICES = tuple(REGISTRY)
FULL_VALUES = CHART / "ci" / "full-values.yaml"
SCENARIOS = {"default": (), "full": ("-f", str(FULL_VALUES))}
RELEASE = "bookshop"
NAMESPACE = "shop-ns"
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
# The oldest Kubernetes the chart accepts (Chart.yaml kubeVersion) and the newest with schemas.
OLDEST_KUBE = re.fullmatch(r">=\s*(\d+\.\d+)\.0-0", CHART_META["kubeVersion"]).group(1)  # type: ignore[union-attr]
KUBE_VERSIONS = (OLDEST_KUBE, latest_version().rsplit(".", 1)[0])
# Kinds without a Kubernetes API schema: Prometheus Operator's CRD, checked below instead.
CUSTOM_KINDS = {"ServiceMonitor"}
MEBIBYTE = 1024 * 1024
_QUANTITY = {"Ki": 1024, "Mi": MEBIBYTE, "Gi": 1024 * MEBIBYTE, "": 1}
# The tokens the services present, one per credential of a service.yml: "<service>-<dependency>"
# (auth.tokens' key; the auth Secret's is that plus ".jwt") -> (service, dependency, scopes).
CREDENTIALS = {
    f"{name}-{dependency}": (name, dependency, scopes)
    for name, service in REGISTRY.items()
    for dependency, scopes in service.credentials.items()
}
AUTH_VARIABLES = {"AUTH__PUBLIC_KEY_FILE", "AUTH__ISSUER"} | {
    f"DEPENDENCIES__{service_registry.env_name(dependency)}__TOKEN_FILE"
    for _, dependency, _ in CREDENTIALS.values()
}
# What an existing auth Secret (one the chart does not render) holds in these tests: a real key
# pair's public half and the tokens it signed, so that a service's settings verify the tokens
# its callers present.
STAND_IN_ISSUER = DevIssuer.generate()
STAND_IN_AUTH = {
    "issuer.pub": STAND_IN_ISSUER.public_pem(),
    **{
        f"{key}.jwt": STAND_IN_ISSUER.mint(audience=dependency, scopes=list(scopes), subject=name)
        for key, (name, dependency, scopes) in CREDENTIALS.items()
    },
}


def auth_files(service: str) -> dict[str, str]:
    """The keys of the auth Secret ``service`` reads -> the variable naming the file: the
    issuer's public key, and the token of each of its credentials."""
    files = {"issuer.pub": "AUTH__PUBLIC_KEY_FILE"}
    for dependency in REGISTRY[service].credentials:
        variable = f"DEPENDENCIES__{service_registry.env_name(dependency)}__TOKEN_FILE"
        files[f"{service}-{dependency}.jwt"] = variable
    return files


# -- helm -----------------------------------------------------------------------------------------


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, check=False, timeout=60)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A duplicated key is an error (Kubernetes would keep one of the two silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(key) for key, _ in node.value]
    duplicated = {key for key in keys if keys.count(key) > 1}
    if duplicated:
        raise yaml.constructor.ConstructorError(
            None, None, f"duplicated keys {sorted(duplicated)}", node.start_mark
        )
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def template(helm: str, *args: str, kube: str = KUBE_VERSIONS[-1]) -> list[dict[str, Any]]:
    result = run_helm(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        f"{kube}.0",
        "--include-crds",
        *args,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.load_all(result.stdout, Loader=_UniqueKeyLoader) if doc]


@functools.cache
def _rendered(helm: str, scenario: str, kube: str) -> tuple[dict[str, Any], ...]:
    return tuple(template(helm, *SCENARIOS[scenario], kube=kube))


@pytest.fixture(scope="module", params=list(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objects(helm: str, scenario: str) -> tuple[dict[str, Any], ...]:
    return _rendered(helm, scenario, KUBE_VERSIONS[-1])


def _values(scenario: str) -> dict[str, Any]:
    """The values of ``scenario``: the defaults, with ci/full-values.yaml's on top."""
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    if scenario == "full":
        for key, value in yaml.safe_load(FULL_VALUES.read_text(encoding="utf-8")).items():
            if isinstance(value, dict) and isinstance(values.get(key), dict):
                values[key] = {**values[key], **value}
            else:
                values[key] = value
    return values


def console_script(service: str) -> str:
    pyproject = tomllib.loads((REGISTRY[service].folder / "pyproject.toml").read_text())
    (script,) = pyproject["project"]["scripts"]
    return str(script)


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    names = [variable["name"] for variable in container.get("env", [])]
    assert len(names) == len(set(names)), f"{container['name']}: duplicated {names}"
    return {variable["name"]: variable for variable in container.get("env", [])}


def quantity_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMG]i)?", value).groups()  # type: ignore[union-attr]
    return int(number) * _QUANTITY[unit or ""]


# -- the chart itself -----------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_helm_lint(helm: str, scenario: str, strict: bool) -> None:
    result = run_helm(
        helm,
        "lint",
        str(CHART),
        "--kube-version",  # deprecated APIs are checked against it
        f"{KUBE_VERSIONS[-1]}.0",
        *SCENARIOS[scenario],
        *(["--strict"] * strict),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ERROR]" not in result.stdout, result.stdout
    assert "[WARNING]" not in result.stdout, result.stdout


def test_chart_metadata_matches_the_services() -> None:
    assert CHART_META["apiVersion"] == "v2"
    assert CHART_META["name"] == "bookshop"
    for service in SERVICES:
        pyproject = tomllib.loads((REGISTRY[service].folder / "pyproject.toml").read_text())
        assert pyproject["project"]["version"] == CHART_META["appVersion"], service
        config = yaml.safe_load((service_dir(service) / "config.yml").read_text())
        assert config["service"]["version"] == CHART_META["appVersion"], service


def test_kubernetes_older_than_the_oldest_validated_is_refused(helm: str) -> None:
    major, minor = OLDEST_KUBE.split(".")
    result = run_helm(helm, "template", str(CHART), "--kube-version", f"{major}.{int(minor) - 1}.0")
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr


def test_values_schema_is_a_valid_json_schema_that_accepts_the_defaults() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(schema).validate(defaults)
    assert schema["additionalProperties"] is False, "a misspelt top-level key must fail"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (["--set", "books.replicaCount=3"], "books"),  # 0.3's key: services.books now
        (["--set", "services.books.replicas=3"], "replicas"),
        (["--set", "services.books.replicaCount=-1"], "replicaCount"),
        (["--set", "serviceDefaults.replicas=3"], "replicas"),
        (["--set", "services.Books.seed=true"], "Books"),  # never a service folder's name
        (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (["--set", "telemetry.otlpEndpoint=jaeger:4318"], "otlpEndpoint"),
        (["--set", "telemetry.sampler=sometimes"], "sampler"),
        (["--set", "logging.level=LOUD"], "level"),
        (["--set", "faults.enabled=true"], "token"),  # never without a token
        (["--set", "faults.enabled=true,faults.token=short"], "token"),
        (["--set", "database.create=true,database.urls.books=mysql://x"], "urls"),
        (["--set", "terminationGracePeriodSeconds=10"], "terminationGracePeriodSeconds"),
        (["--set", "services.shop.podDisruptionBudget.maxUnavailable=lots"], "maxUnavailable"),
        (["--set", "services.chat.autoscaling.targetCPUUtilizationPercentage=150"], "targetCPU"),
        (["--set-string", "serviceDefaults.resources.limits.memory=lots"], "memory"),
        (["--set-string", "services.chat.database.key=a/b"], "key"),
        (["--set", "ingress.hosts.chat=Not_A_Host"], "hosts"),
        (["--set-json", "networkPolicy.metricsFrom=[{}]"], "metricsFrom"),  # would admit all
        (["--set-json", 'networkPolicy.extraFrom=[{"ipBlock": {}}]'], "cidr"),
        (["--set", "auth.existingSecret="], "existingSecret"),  # books could not start
        (["--set", "auth.issuer="], "issuer"),
        (["--set-string", "auth.publicKey=not-a-pem,auth.tokens.shop-books=a.b.c"], "publicKey"),
        (["--set", "auth.tokens.shop-books=a.b.c"], "publicKey"),  # tokens need the key
        (["--set", "auth.shopToken=a.b.c"], "shopToken"),  # 0.3's key: auth.tokens now
        (
            [
                "--set-string",
                "auth.publicKey=-----BEGIN PUBLIC KEY-----,auth.tokens.shop-books=not-a-jwt",
            ],
            "shop-books",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else value[-1],
)
def test_values_schema_rejects_bad_values(helm: str, values: list[str], complaint: str) -> None:
    for command in ("template", "lint"):
        result = run_helm(helm, command, str(CHART), *values)
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"helm {command} accepted {values}"
        assert "schema" in output, output
        assert complaint in output, output


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (
            [
                "--set",
                "services.shop.autoscaling.enabled=true,services.shop.autoscaling.minReplicas=5",
            ],
            "minReplicas",
        ),
        (["--set", "database.create=true"], "database.urls.books is required"),
        (["--set", "ingress.enabled=true"], "ingress.hosts"),
        # a name that is no service folder (the schema knows the folders' shape, not them)
        (["--set", "services.boks.replicaCount=3"], "services.boks: no such service"),
        (["--set", "database.urls.boks=postgresql://x"], "database.urls.boks: no such service"),
        (["--set", "ingress.hosts.chatt=chat.example"], "ingress.hosts.chatt: no such service"),
        # the Secret the chart makes needs every token a service.yml asks for, and no other
        (
            ["--set-string", "auth.publicKey=-----BEGIN PUBLIC KEY-----"],
            "auth.tokens.shop-books is required",
        ),
        (
            [
                "--set-string",
                "auth.publicKey=-----BEGIN PUBLIC KEY-----,auth.tokens.shop-books=a.b.c,"
                "auth.tokens.chat-books=a.b.c",
            ],
            "auth.tokens.chat-books: no service.yml asks for it",
        ),
        (
            ["--set", "database.create=true,services.chat.database.key=shop"],  # one URL, two
            "shop and chat both read key",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else value[-1][:40],
)
def test_template_guards_what_the_schema_cannot(
    helm: str, values: list[str], complaint: str
) -> None:
    result = run_helm(helm, "template", str(CHART), *values)
    assert result.returncode != 0, f"helm template accepted {values}"
    assert complaint in result.stderr, result.stderr


# -- Kubernetes API schemas -----------------------------------------------------------------------


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_api_schema(
    helm: str, scenario: str, kube: str
) -> None:
    objects = _rendered(helm, scenario, kube)
    assert objects
    errors, custom = [], set()
    for item in objects:
        try:
            kubernetes_validate.validate(item, kube, strict=True)
        except SchemaNotFoundError:
            custom.add(item["kind"])
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            errors.append(f"{item['kind']}/{item['metadata']['name']} {where}: {error.message}")
    assert not errors, "\n".join(errors)
    assert custom <= CUSTOM_KINDS, f"no schema for {custom - CUSTOM_KINDS}"


def test_the_schemas_are_strict() -> None:
    """The validator is the real thing: an unknown field and a wrongly typed one fail."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "x", "image": "x"}]},
            },
        },
    }
    kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)
    container = deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    for field, value in [("imagePullPolicyy", "Always"), ("ports", [{"containerPort": "x"}])]:
        broken = json.loads(json.dumps(deployment))
        broken["spec"]["template"]["spec"]["containers"][0] = {**container, field: value}
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBE_VERSIONS[-1], strict=True)


def test_the_expected_objects_are_rendered(helm: str) -> None:
    def kinds(objects: tuple[dict[str, Any], ...]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for item in objects:
            found.setdefault(item["kind"], set()).add(item["metadata"]["name"])
            assert item["metadata"].get("namespace", NAMESPACE) == NAMESPACE
        return found

    names = set(SERVICES)
    assert kinds(_rendered(helm, "default", KUBE_VERSIONS[-1])) == {
        "Deployment": names,
        "Service": names,
        "PodDisruptionBudget": names,
        "ServiceAccount": {RELEASE},
        "Pod": {f"{RELEASE}-test-ready"},  # helm test
    }
    assert kinds(_rendered(helm, "full", KUBE_VERSIONS[-1])) == {
        "Deployment": names,
        "Service": names,
        "PodDisruptionBudget": {"books", "shop"},
        "HorizontalPodAutoscaler": {"books"},
        "ServiceMonitor": names,
        "Ingress": {RELEASE},
        "NetworkPolicy": names,
        "Secret": {f"{RELEASE}-database", f"{RELEASE}-faults", f"{RELEASE}-auth"},
        "ServiceAccount": {"bookshop-runner"},
    }


# -- consistency with the services ----------------------------------------------------------------


def _deployments(objects: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    deployments = of_kind(objects, "Deployment")
    for service in SERVICES:
        yield service, deployments[service]


def test_services_and_ports_are_designs(objects: tuple[dict[str, Any], ...]) -> None:
    services = of_kind(objects, "Service")
    for name, deployment in _deployments(objects):
        pod = deployment["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert container["name"] == name
        assert container["ports"] == [
            {"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}
        ]
        service = services[name]  # design §8: the Kubernetes Service is named after the service
        assert service["spec"]["type"] == "ClusterIP"
        (port,) = service["spec"]["ports"]
        assert (port["port"], port["targetPort"]) == (CONTAINER_PORT, "http")
        selector = service["spec"]["selector"]
        assert selector.items() <= pod["metadata"]["labels"].items(), name
        assert selector == deployment["spec"]["selector"]["matchLabels"]


def test_probes_use_the_chassis_health_endpoints(objects: tuple[dict[str, Any], ...]) -> None:
    for name, deployment in _deployments(objects):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        probes = {
            kind: (container[f"{kind}Probe"]["httpGet"]["path"], container[f"{kind}Probe"])
            for kind in ("startup", "liveness", "readiness")
        }
        assert probes["liveness"][0] == LIVE, "liveness never checks dependencies (design §4)"
        assert probes["startup"][0] == LIVE
        assert probes["readiness"][0] == READY, name
        for _, probe in probes.values():
            assert probe["httpGet"]["port"] == "http"
            assert probe["timeoutSeconds"] >= 1


@pytest.mark.parametrize("service", SERVICES)
def test_commands_are_the_services_own_cli(
    objects: tuple[dict[str, Any], ...], scenario: str, service: str
) -> None:
    """The same image and commands as compose (design §9): serve, and migrate (+ seed) first."""
    script = console_script(service)
    spec = of_kind(objects, "Deployment")[service]["spec"]["template"]["spec"]
    assert spec["containers"][0]["command"] == [script, "serve"]
    steps = [container["command"] for container in spec["initContainers"]]
    assert steps[0] == [script, "migrate"]
    seeds = service == "books" and scenario == "default"
    assert steps[1:] == ([[script, "seed"]] if seeds else [])
    images = {container["image"] for container in all_containers(spec)}
    assert len(images) == 1, "migrations run the service's own image"
    compose = load_compose()["services"]
    repository = compose[service]["image"].split(":")[0]
    if scenario == "default":
        assert images == {f"{repository}:{CHART_META['appVersion']}"}
    else:
        assert images == {f"registry.example.com/bookshop/{repository}:0.1.0-rc.1"}
    for words in steps if scenario == "default" else ():  # full: a subset of these
        help_text = subprocess.run(  # the subcommand exists in the real CLI
            [str(Path(sys.executable).parent / script), *words[1:], "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert help_text.returncode == 0, help_text.stderr


def test_every_variable_set_is_one_the_settings_read(objects: tuple[dict[str, Any], ...]) -> None:
    for name, deployment in _deployments(objects):
        for container in all_containers(deployment["spec"]["template"]["spec"]):
            unknown = set(env_of(container)) - allowed_variables(name)
            assert not unknown, f"{name}/{container['name']} sets {sorted(unknown)}"


def _mounted_files(
    objects: tuple[dict[str, Any], ...], spec: dict[str, Any], container: dict[str, Any]
) -> dict[str, str]:
    """The files the kubelet would mount in ``container``: path -> content. A Secret the chart
    does not render (an existing one) holds a stand-in value."""
    secrets = of_kind(objects, "Secret")
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    files = {}
    for mount in container["volumeMounts"]:
        projected = volumes[mount["name"]].get("projected")
        if projected is None:
            continue
        assert mount["readOnly"] is True
        for source in projected["sources"]:
            secret = secrets.get(source["secret"]["name"], {"stringData": {}})
            for item in source["secret"]["items"]:
                stand_in = f"postgresql://u:p@existing-{source['secret']['name']}:5432/db"
                if item["path"] == "faults-token":
                    stand_in = "an-existing-token-from-a-secret"
                stand_in = STAND_IN_AUTH.get(item["key"], stand_in)
                value = secret["stringData"].get(item["key"], stand_in)
                files[f"{mount['mountPath']}/{item['path']}"] = value
    return files


@pytest.mark.parametrize("service", SERVICES)
def test_settings_load_in_the_pod(
    objects: tuple[dict[str, Any], ...], scenario: str, service: str, tmp_path: Path
) -> None:
    """The settings each container builds: its environment on top of the image's, its Secret
    files mounted (at a temporary place), every value valid."""
    spec = of_kind(objects, "Deployment")[service]["spec"]["template"]["spec"]
    services = of_kind(objects, "Service")
    config = yaml.safe_load((service_dir(service) / "config.yml").read_text(encoding="utf-8"))
    for container in all_containers(spec):
        files = _mounted_files(objects, spec, container)
        moved = {path: tmp_path / container["name"] / path.lstrip("/") for path in files}
        for path, content in files.items():
            moved[path].parent.mkdir(parents=True, exist_ok=True)
            moved[path].write_text(content + "\n")
        environ = image_environment()
        for name, variable in env_of(container).items():
            assert "valueFrom" not in variable, f"{name}: secrets are files, never variables"
            environ[name] = str(moved.get(variable["value"], variable["value"]))
        settings = load_settings(settings_class(service), service_dir(service), environ=environ)
        assert settings.environment == "production"
        assert settings.http.host == "0.0.0.0"
        assert settings.http.port == CONTAINER_PORT
        database = env_of(container)["DATABASE_URL_FILE"]["value"]
        assert settings.database.url.get_secret_value() == files[database]
        if container["name"] != service:  # migrate, seed
            assert environ["OTEL_SDK_DISABLED"] == "true"
            assert not AUTH_VARIABLES & set(environ), "migrations verify and present no token"
            continue
        # every service trusts the issuer: its public key, its iss
        key_file = env_of(container)["AUTH__PUBLIC_KEY_FILE"]["value"]
        assert settings.auth.public_key == files[key_file].strip()
        assert settings.auth.issuer == _values(scenario)["auth"]["issuer"]
        verifier = TokenVerifier(settings.auth, service_name=settings.service.name)
        for key, (caller, dependency, scopes) in CREDENTIALS.items():
            if dependency == service and scenario == "default":  # the dev issuer's iss
                token = STAND_IN_AUTH[f"{key}.jwt"]
                assert verifier.verify(f"Bearer {token}", list(scopes))["sub"] == caller
        # and presents each token of its service.yml to that dependency
        for dependency in REGISTRY[service].credentials:
            token_file = env_of(container)[auth_files(service)[f"{service}-{dependency}.jwt"]]
            token = settings.dependencies[dependency].token
            assert token is not None, dependency
            assert token.get_secret_value() == files[token_file["value"]].strip()
        for dependency in set(REGISTRY[service].dependencies) - set(REGISTRY[service].credentials):
            assert settings.dependencies[dependency].token is None, dependency
        assert environ["OTEL_SERVICE_NAME"] == service
        assert f"k8s.namespace.name={NAMESPACE}" in environ["OTEL_RESOURCE_ATTRIBUTES"].split(",")
        if scenario == "default":
            assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in environ, "no collector is bundled"
            assert environ["OTEL_TRACES_EXPORTER"] == "none"
            assert not settings.faults.enabled, "fault injection is off by default"
            assert "FAULTS__TOKEN_FILE" not in environ
        else:
            assert environ["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://")
            assert settings.faults.enabled
            assert settings.faults.token is not None
            token_file = env_of(container)["FAULTS__TOKEN_FILE"]["value"]
            assert settings.faults.token.get_secret_value() == files[token_file]
        # every neighbour of its config.yml, at its in-cluster Service
        assert set(settings.dependencies) == set(config.get("dependencies", {}))
        assert set(settings.dependencies) == set(REGISTRY[service].dependencies)
        for dependency, section in settings.dependencies.items():
            assert section.base_url == f"http://{dependency}:{CONTAINER_PORT}", dependency
            assert dependency in services
        # SIGTERM: readiness 503, drain, then grace to finish; the kubelet kills after this
        grace = settings.shutdown.drain_seconds + settings.shutdown.grace_seconds
        assert spec["terminationGracePeriodSeconds"] > grace, service


def test_secrets_the_chart_creates_are_what_the_pods_mount(helm: str) -> None:
    objects = _rendered(helm, "full", KUBE_VERSIONS[-1])
    values = yaml.safe_load(FULL_VALUES.read_text(encoding="utf-8"))
    database = of_kind(objects, "Secret")[f"{RELEASE}-database"]["stringData"]
    assert database == values["database"]["urls"], "books has a Secret of its own"
    faults = of_kind(objects, "Secret")[f"{RELEASE}-faults"]["stringData"]
    assert faults == {"token": values["faults"]["token"]}
    auth = of_kind(objects, "Secret")[f"{RELEASE}-auth"]["stringData"]
    assert auth == {
        "issuer.pub": values["auth"]["publicKey"],
        **{f"{key}.jwt": token for key, token in values["auth"]["tokens"].items()},
    }
    assert set(values["auth"]["tokens"]) == set(CREDENTIALS), "one token per credential"
    sources = {}
    for name, deployment in _deployments(objects):
        (volume,) = [
            v for v in deployment["spec"]["template"]["spec"]["volumes"] if "projected" in v
        ]
        sources[name] = [
            (s["secret"]["name"], *(item["key"] for item in s["secret"]["items"]))
            for s in volume["projected"]["sources"]
        ]
    faults_source = (f"{RELEASE}-faults", "token")
    assert sources == {  # the chart's auth Secret, not auth.existingSecret
        name: [
            (f"{RELEASE}-database", name),
            faults_source,
            (f"{RELEASE}-auth", *auth_files(name)),
        ]
        for name in SERVICES
        if name != "books"
    } | {
        "books": [  # services.books.database.existingSecret
            ("books-db-app", "uri"),
            faults_source,
            (f"{RELEASE}-auth", "issuer.pub"),
        ]
    }
    assert sources["shop"][-1] == (f"{RELEASE}-auth", "issuer.pub", "shop-books.jwt")
    # no secret value anywhere else: not in any variable, annotation or label
    text = yaml.safe_dump([o for o in objects if o["kind"] != "Secret"])
    secrets = [*values["database"]["urls"].values(), values["faults"]["token"]]
    for secret in [*secrets, *values["auth"]["tokens"].values()]:
        assert secret not in text


def _secret_sources(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [
        source["secret"]
        for volume in spec["volumes"]
        for source in volume.get("projected", {}).get("sources", [])
        if "secret" in source
    ] + [volume["secret"] for volume in spec["volumes"] if "secret" in volume]


def test_every_service_mounts_the_public_key_and_only_its_own_tokens(
    objects: tuple[dict[str, Any], ...], scenario: str
) -> None:
    """The keys of the auth Secret a service reads (`items` entries, never the whole Secret):
    the issuer's public key, which every one gets, and the token of each credential of its
    service.yml, each named by its variable; never another service's token."""
    values = _values(scenario)
    expected_secret = f"{RELEASE}-auth" if values["auth"]["publicKey"] else "bookshop-auth"
    mounted_keys: dict[str, set[str]] = {}
    for name, deployment in _deployments(objects):
        sources = _secret_sources(deployment)
        for source in sources:
            assert source.get("items"), f"{name}: {source['name']} mounted whole"
        items = [
            item
            for source in sources
            if source["name"] == expected_secret
            for item in source["items"]
        ]
        mounted_keys[name] = {item["key"] for item in items}
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = env_of(container)
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "secrets"]
        files = auth_files(name)
        for item in items:
            assert item == {"key": item["key"], "path": item["key"]}, name
            variable = files[item["key"]]
            assert env[variable]["value"] == f"{mount['mountPath']}/{item['path']}", name
        assert AUTH_VARIABLES & set(env) == {*files.values(), "AUTH__ISSUER"}, name
        assert env["AUTH__ISSUER"]["value"] == values["auth"]["issuer"], name
    assert mounted_keys == {name: set(auth_files(name)) for name in SERVICES}
    # what the service folders say today: shop holds a token for books, and no one else any
    assert mounted_keys["shop"] == {"issuer.pub", "shop-books.jwt"}
    assert {key for keys in mounted_keys.values() for key in keys} == {
        "issuer.pub",
        "shop-books.jwt",
    }


def test_the_chart_creates_the_auth_secret_only_when_given_the_key_and_token(
    helm: str, tmp_path: Path
) -> None:
    def auth_state(*args: str) -> tuple[set[str], set[str]]:
        objects = tuple(template(helm, *args))
        secrets = {name for name in of_kind(objects, "Secret") if name.endswith("-auth")}
        used = {
            source["name"]
            for _, deployment in _deployments(objects)
            for source in _secret_sources(deployment)
            if source["items"][0]["key"] in STAND_IN_AUTH
        }
        return secrets, used

    assert auth_state() == (set(), {"bookshop-auth"}), "by default an existing Secret"
    assert auth_state("--set", "auth.existingSecret=issuer-keys") == (set(), {"issuer-keys"})
    files = []
    for key, content in STAND_IN_AUTH.items():
        path = tmp_path / key
        path.write_text(content + "\n")  # as `mint > file` leaves it
        value = (
            "auth.publicKey" if key == "issuer.pub" else f"auth.tokens.{key.removesuffix('.jwt')}"
        )
        files.append(f"{value}={path}")
    given = (
        "--set-file",
        ",".join(files),
        "--set",
        "auth.existingSecret=issuer-keys",  # ignored
    )
    assert auth_state(*given) == ({f"{RELEASE}-auth"}, {f"{RELEASE}-auth"})
    secret = of_kind(tuple(template(helm, *given)), "Secret")[f"{RELEASE}-auth"]
    assert secret["stringData"] == STAND_IN_AUTH
    assert secret["type"] == "Opaque"


def test_a_changed_secret_rolls_the_pods(helm: str) -> None:
    def checksums(*args: str) -> set[str]:
        objects = template(helm, *SCENARIOS["full"], *args)
        return {
            d["spec"]["template"]["metadata"]["annotations"]["checksum/secrets"]
            for _, d in _deployments(tuple(objects))
        }

    before = checksums()
    assert len(before) == 1
    assert checksums("--set", "faults.token=another-token-of-length") != before
    assert checksums("--set", "auth.tokens.shop-books=another.shop.token") != before


def test_memory_matches_the_compose_limits(objects: tuple[dict[str, Any], ...]) -> None:
    """The limits measured for compose (deploy/compose/compose.yaml), requested and limited."""
    compose = load_compose()["services"]
    for name, deployment in _deployments(objects):
        spec = deployment["spec"]["template"]["spec"]
        for container in all_containers(spec):
            basis = compose[name] if container["name"] == name else compose[f"{name}-migrate"]
            resources = container["resources"]
            limit = quantity_bytes(resources["limits"]["memory"])
            assert limit == memory_bytes(basis["mem_limit"]), f"{name}/{container['name']}"
            assert quantity_bytes(resources["requests"]["memory"]) == limit
            assert "cpu" in resources["requests"]


def _dockerfile_user() -> tuple[int, int]:
    (user,) = re.findall(r"^USER\s+(\d+):(\d+)\s*$", DOCKERFILE.read_text(), re.MULTILINE)
    return int(user[0]), int(user[1])


def test_pods_run_unprivileged(objects: tuple[dict[str, Any], ...]) -> None:
    uid, gid = _dockerfile_user()
    pods = [d["spec"]["template"]["spec"] for _, d in _deployments(objects)]
    pods += [p["spec"] for p in of_kind(objects, "Pod").values()]  # the helm test pod
    for spec in pods:
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid), "the image's user"
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        for container in all_containers(spec):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            if "initContainers" in spec:
                volumes = {v["name"]: v for v in spec["volumes"]}
                assert "emptyDir" in volumes[mounts["/tmp"]], "a writable /tmp"
    for account in of_kind(objects, "ServiceAccount").values():
        assert account["automountServiceAccountToken"] is False


def test_disruption_budgets_and_autoscalers_select_their_deployment(
    objects: tuple[dict[str, Any], ...], scenario: str
) -> None:
    budgets = of_kind(objects, "PodDisruptionBudget")
    autoscalers = of_kind(objects, "HorizontalPodAutoscaler")
    for name, deployment in _deployments(objects):
        selector = deployment["spec"]["selector"]
        if name in budgets:
            assert budgets[name]["spec"]["selector"] == selector
        if name in autoscalers:
            target = autoscalers[name]["spec"]["scaleTargetRef"]
            assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
            assert "replicas" not in deployment["spec"], "the autoscaler owns the replicas"
        else:
            assert deployment["spec"]["replicas"] >= 1
        strategy = deployment["spec"]["strategy"]["rollingUpdate"]
        assert strategy["maxUnavailable"] == 0, "a failed migration never takes pods away"
    if scenario == "default":
        assert {n: b["spec"] for n, b in budgets.items()} == {
            n: {
                "maxUnavailable": 1,
                "selector": of_kind(objects, "Deployment")[n]["spec"]["selector"],
            }
            for n in SERVICES
        }
    else:
        assert budgets["shop"]["spec"]["minAvailable"] == 1
        assert "maxUnavailable" not in budgets["shop"]["spec"]


def test_prometheus_scrapes_metrics_with_the_service_as_job(
    objects: tuple[dict[str, Any], ...], scenario: str
) -> None:
    services = of_kind(objects, "Service")
    monitors = of_kind(objects, "ServiceMonitor")
    for name, deployment in _deployments(objects):
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        if scenario == "default":
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/port"] == str(CONTAINER_PORT)
            assert annotations["prometheus.io/path"] == METRICS
            assert not monitors
            continue
        assert "prometheus.io/scrape" not in annotations
        monitor = monitors[name]["spec"]
        labels = services[name]["metadata"]["labels"]
        assert monitor["selector"]["matchLabels"].items() <= labels.items()
        assert monitor["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        # dashboards and alerts select `job`, the service name (observability/)
        assert labels[monitor["jobLabel"]] == name
        (endpoint,) = monitor["endpoints"]
        assert endpoint["port"] in {port["name"] for port in services[name]["spec"]["ports"]}
        assert endpoint["path"] == METRICS
        assert monitors[name]["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_ingress_routes_each_host_to_its_service(helm: str) -> None:
    objects = _rendered(helm, "full", KUBE_VERSIONS[-1])
    services = of_kind(objects, "Service")
    (ingress,) = of_kind(objects, "Ingress").values()
    routed = {}
    for rule in ingress["spec"]["rules"]:
        (path,) = rule["http"]["paths"]
        backend = path["backend"]["service"]
        assert (path["path"], path["pathType"]) == ("/", "Prefix")
        assert backend["port"]["name"] in {
            p["name"] for p in services[backend["name"]]["spec"]["ports"]
        }
        routed[rule["host"]] = backend["name"]
    assert routed == {f"{name}.bookshop.example": name for name in SERVICES}
    assert ingress["spec"]["ingressClassName"] == "nginx"


def callers_of(service: str) -> set[str]:
    """The services whose config.yml names ``service`` among its dependencies."""
    return {caller for caller, manifest in REGISTRY.items() if service in manifest.dependencies}


def admits(peer: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a NetworkPolicy peer admits a pod with ``labels`` in the policy's own namespace
    (a namespaceSelector or an ipBlock names somewhere else)."""
    if set(peer) != {"podSelector"}:
        return False
    assert "matchExpressions" not in peer["podSelector"]
    matching: dict[str, str] = peer["podSelector"].get("matchLabels", {})
    return matching.items() <= labels.items()


def test_network_policies_admit_only_the_callers_the_test_pod_and_prometheus(helm: str) -> None:
    objects = tuple(template(helm, "--set", "networkPolicy.enabled=true"))
    policies = of_kind(objects, "NetworkPolicy")
    deployments = of_kind(objects, "Deployment")
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
    (test_pod,) = of_kind(objects, "Pod").values()
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert defaults["networkPolicy"]["enabled"] is False, "off by default"
    prometheus = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/instance": "kps"}

    assert {name: callers_of(name) for name in SERVICES} == {
        "books": {"shop", "chat"},
        "shop": set(),
        "chat": {"shop"},
    }
    assert set(policies) == set(SERVICES)
    for name, policy in policies.items():
        spec = policy["spec"]
        assert spec["podSelector"] == deployments[name]["spec"]["selector"], name
        assert spec["policyTypes"] == ["Ingress"]
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        peers = []
        for rule in spec["ingress"]:
            assert rule["from"], "a rule without peers admits every pod"
            assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
            assert "http" in {port["name"] for port in container["ports"]}
            peers += rule["from"]
        admitted = {
            other for other, labels in pods.items() if any(admits(p, labels) for p in peers)
        }
        assert admitted == callers_of(name), name
        assert any(admits(peer, test_pod["metadata"]["labels"]) for peer in peers), "helm test"
        assert any(admits(peer, prometheus) for peer in peers), "the namespace's Prometheus"
        elsewhere = {**pods[name], "app.kubernetes.io/instance": "another-release"}
        assert not any(admits(peer, elsewhere) for peer in peers), name
        assert not any(admits(peer, {"app": "anything"}) for peer in peers), name


def test_network_policies_admit_the_given_peers_and_never_everyone(
    helm: str, tmp_path: Path
) -> None:
    objects = _rendered(helm, "full", KUBE_VERSIONS[-1])
    given = yaml.safe_load(FULL_VALUES.read_text(encoding="utf-8"))["networkPolicy"]
    policies = of_kind(objects, "NetworkPolicy")
    for name, policy in policies.items():
        rules = policy["spec"]["ingress"]
        others = [
            rule["from"] for rule in rules if any(set(p) != {"podSelector"} for p in rule["from"])
        ]
        assert others == [given["metricsFrom"], given["extraFrom"]], name
    # shop: no caller among the services, and no helm test pod in these values
    assert len(policies["shop"]["spec"]["ingress"]) == 2

    closed = template(
        helm,
        "--set",
        "networkPolicy.enabled=true,tests.enabled=false",
        "--set-json",
        "networkPolicy.metricsFrom=[]",
    )
    shop = of_kind(tuple(closed), "NetworkPolicy")["shop"]
    assert shop["spec"]["ingress"] == [], "admits nothing (a rule without peers would admit all)"
    for kube in KUBE_VERSIONS:
        kubernetes_validate.validate(shop, kube, strict=True)


def test_helm_test_pod_asks_each_services_readiness(objects: tuple[dict[str, Any], ...]) -> None:
    pods = of_kind(objects, "Pod")
    if not pods:  # tests.enabled: false
        return
    (pod,) = pods.values()
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    script = container["command"][-1]
    assert f":{CONTAINER_PORT}{READY}" in script
    assert json.dumps(list(SERVICES), separators=(",", ":")) in script
    compile(script, "helm-test", "exec")  # valid Python


def test_notes_say_what_the_chart_does_not_run(helm: str, tmp_path: Path) -> None:
    """NOTES.txt renders (`helm template` leaves it out: it is rendered here as a ConfigMap)."""
    chart = tmp_path / "bookshop"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text(encoding="utf-8")
    (chart / "templates" / "_notes_under_test.tpl").write_text(
        '{{- define "notes.under.test" -}}\n' + notes + "{{- end }}\n"
    )
    (chart / "templates" / "notes-under-test.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "notes.under.test" . | toJson }}\n'
    )
    for values, expected in [
        (
            (),
            [
                "runs no PostgreSQL",
                "create secret generic bookshop-database",
                "OFF",
                "create secret generic bookshop-auth",
                "--from-file=issuer.pub=",
                # from the service folders: shop's token for books, chat's port
                "--from-file=shop-books.jwt=shop-books.jwt",
                '--audience books --scope "stock:reserve"',
                "port-forward service/chat 8003:8000",
                "`books seed`",
            ],
        ),
        (
            SCENARIOS["full"],
            [
                "OTLP/HTTP to http://",
                "Fault injection: ON",
                "ServiceMonitors",
                'issuer "bookshop-ci"',
                "the chart made from auth.publicKey",
            ],
        ),
        (
            ("-f", str(CHART / "values-minikube.yaml")),
            [
                "Demo infrastructure in the release: grafana, jaeger, postgresql, prometheus",
                "Secret bookshop-database, key books",
                "OTLP/HTTP to http://jaeger:4318",
                "port-forward service/grafana 3000:3000",
                "port-forward service/jaeger 16686:16686",
            ],
        ),
    ]:
        result = run_helm(
            helm,
            "template",
            RELEASE,
            str(chart),
            "--show-only",
            "templates/notes-under-test.yaml",
            *values,
        )
        assert result.returncode == 0, result.stderr
        text = yaml.safe_load(result.stdout)["data"]["notes"]
        for phrase in expected:
            assert phrase in text, text
        if "infrastructure" in " ".join(values) or "minikube" in " ".join(values):
            assert "runs no PostgreSQL" not in text
            assert "create secret generic bookshop-database" not in text, "the chart makes it"


def test_the_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    for key, value in defaults.items():
        if key == "serviceDefaults":
            for field in value:
                assert f"`serviceDefaults.{field}" in readme, field
        else:
            assert f"`{key}" in readme, key
    assert "`services.<name>" in readme


# -- the service folders ---------------------------------------------------------------------------


def test_the_chart_reads_the_service_folders_through_a_relative_symlink() -> None:
    link = CHART / "services"
    assert link.is_symlink()
    assert not Path(os.readlink(link)).is_absolute(), "a checkout anywhere resolves it"
    assert link.resolve() == ROOT / "services"


def _package(helm: str, chart: Path, destination: Path) -> dict[str, bytes]:
    """The files of `helm package` of ``chart``: path in the archive -> content."""
    result = run_helm(helm, "package", str(chart), "--destination", str(destination))
    assert result.returncode == 0, result.stdout + result.stderr
    (archive,) = destination.glob("*.tgz")
    with tarfile.open(archive) as packaged:
        return {
            member.name: packaged.extractfile(member).read()  # type: ignore[union-attr]
            for member in packaged.getmembers()
            if member.isfile()
        }


def _manifests(services: dict[str, service_registry.ServiceManifest]) -> dict[str, Path]:
    """What the chart needs of each folder: path in the chart -> the file (of a service in
    another language, its service.yml only: the chart reads that it skips it)."""
    needed = {}
    for name, service in services.items():
        needed[f"services/{name}/service.yml"] = service.folder / service_registry.MANIFEST
        if service.language == service_registry.PYTHON:
            config = f"services/{name}/src/{service.package}/config.yml"
            needed[config] = service.config_dir / "config.yml"
    return needed


def test_the_chart_package_holds_the_service_manifests_and_nothing_else_of_them(
    helm: str, tmp_path: Path
) -> None:
    """`helm package` copies the files in (the archive has no symlink): the two each folder
    declares, and no test, Python source, migration or web asset (.helmignore)."""
    files = _package(helm, CHART, tmp_path)
    version = CHART_META["version"]
    assert tmp_path.joinpath(f"bookshop-{version}.tgz").is_file()
    services = {path.removeprefix("bookshop/"): data for path, data in files.items()}
    services = {path: data for path, data in services.items() if path.startswith("services/")}
    expected = _manifests(service_registry.load_services())
    assert set(services) == set(expected)
    for path, source in expected.items():
        assert services[path] == source.read_bytes(), path
    assert not [p for p in services if "/tests/" in p or p.endswith((".py", ".pyc", ".js"))]
    assert {"bookshop/Chart.yaml", "bookshop/values.schema.json"} <= set(files)
    # and the package renders what the folder does
    (archive,) = tmp_path.glob("*.tgz")
    from_package = run_helm(helm, "template", RELEASE, str(archive), "--namespace", NAMESPACE)
    from_folder = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE)
    assert from_package.returncode == 0, from_package.stderr
    assert from_package.stdout == from_folder.stdout


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


@pytest.fixture
def repository_copy(tmp_path: Path) -> Path:
    """A copy of the chart (its symlinks included, unchanged), of what they name, and of the service
    folders, with one more folder: reviews (chat's manifests, port 8004), which calls books
    with a token of scope catalog:write, and holds what a service folder holds besides (tests,
    sources, migrations, a README) for .helmignore to leave out."""
    chart = tmp_path / CHART.relative_to(ROOT)
    shutil.copytree(CHART, chart, symlinks=True)
    shutil.copytree(
        ROOT / "services",
        tmp_path / "services",
        ignore=shutil.ignore_patterns("__pycache__", "*.db", ".pytest_cache"),
    )
    # what the chart's other symlinks name (the demo infrastructure's files)
    for folder in (Path("observability"), Path("deploy/compose/postgres")):
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=ignore)
    reviews = tmp_path / "services" / "reviews"
    chat = REGISTRY["chat"]
    manifest = yaml.safe_load((chat.folder / service_registry.MANIFEST).read_text())
    manifest.update(port=8004, credentials={"books": ["catalog:write"]})
    _write_yaml(reviews / service_registry.MANIFEST, manifest)
    config = yaml.safe_load((chat.config_dir / "config.yml").read_text())
    config["service"]["name"] = "reviews"
    config["database"]["url"] = "sqlite:///./reviews.db"
    config["dependencies"] = {"books": {"base_url": "http://127.0.0.1:8001"}}
    _write_yaml(reviews / "src" / "reviews" / "config.yml", config)
    for extra in [
        "README.md",
        "pyproject.toml",
        "tests/test_reviews.py",
        "src/reviews/__init__.py",
        "src/reviews/config.production.yml",
        "src/reviews/migrations/env.py",
        "src/reviews/web/app.js",
        "src/reviews/__pycache__/app.cpython-312.pyc",
        "src/reviews.egg-info/PKG-INFO",
    ]:
        (reviews / extra).parent.mkdir(parents=True, exist_ok=True)
        (reviews / extra).write_text("not for the chart\n")
    return tmp_path


def test_a_new_service_folder_is_deployed_without_an_edit_of_the_chart(
    helm: str, repository_copy: Path
) -> None:
    chart = repository_copy / CHART.relative_to(ROOT)
    services = service_registry.python_services(repository_copy / "services")
    assert list(services) == [*SERVICES, "reviews"], "the registry sees it, last by port"
    for original in CHART.rglob("*"):  # the chart itself is the repository's, byte for byte
        if original.is_file() and "services" not in original.relative_to(CHART).parts:
            assert (chart / original.relative_to(CHART)).read_bytes() == original.read_bytes()

    def render(*args: str) -> tuple[dict[str, Any], ...]:
        result = run_helm(helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE, *args)
        assert result.returncode == 0, result.stderr
        return tuple(doc for doc in yaml.load_all(result.stdout, Loader=_UniqueKeyLoader) if doc)

    lint = run_helm(helm, "lint", str(chart), "--strict")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    objects = render("--set", "networkPolicy.enabled=true")
    deployments = of_kind(objects, "Deployment")
    assert list(deployments) == list(services), "rendered in the order of the ports"
    spec = deployments["reviews"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] == ["reviews", "serve"]
    assert container["image"] == f"bookshop-reviews:{CHART_META['appVersion']}"
    assert [c["command"] for c in spec["initContainers"]] == [["reviews", "migrate"]]
    service = of_kind(objects, "Service")["reviews"]
    assert service["spec"]["selector"] == deployments["reviews"]["spec"]["selector"]["matchLabels"]
    assert "reviews" in of_kind(objects, "PodDisruptionBudget")
    # its dependency at its Service, the token it presents there, the key it verifies with
    env = {name: variable["value"] for name, variable in env_of(container).items()}
    assert env["DEPENDENCIES__BOOKS__BASE_URL"] == f"http://books:{CONTAINER_PORT}"
    assert env["DEPENDENCIES__BOOKS__TOKEN_FILE"] == "/var/run/secrets/bookshop/reviews-books.jwt"
    assert env["AUTH__PUBLIC_KEY_FILE"] == "/var/run/secrets/bookshop/issuer.pub"
    assert not {"DEPENDENCIES__CHAT__BASE_URL", "DEPENDENCIES__SHOP__BASE_URL"} & set(env)
    (auth,) = [s for s in _secret_sources(deployments["reviews"]) if s["name"] == "bookshop-auth"]
    assert [item["key"] for item in auth["items"]] == ["issuer.pub", "reviews-books.jwt"]
    # books admits it; nothing of the bookshop calls reviews
    policies = of_kind(objects, "NetworkPolicy")
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}

    def callers(name: str) -> set[str]:
        peers = [peer for rule in policies[name]["spec"]["ingress"] for peer in rule["from"]]
        return {other for other, labels in pods.items() if any(admits(p, labels) for p in peers)}

    assert callers("books") == {"shop", "chat", "reviews"}
    assert callers("reviews") == set()
    # `helm test` asks it too
    (test_pod,) = of_kind(objects, "Pod").values()
    script = test_pod["spec"]["containers"][0]["command"][-1]
    assert json.dumps(list(services), separators=(",", ":")) in script
    # the values of a service by its name, like any other's
    objects = render(
        "--set",
        "services.reviews.replicaCount=4,ingress.enabled=true,ingress.hosts.reviews=r.example",
    )
    assert of_kind(objects, "Deployment")["reviews"]["spec"]["replicas"] == 4
    (ingress,) = of_kind(objects, "Ingress").values()
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["r.example"]
    # a Secret the chart makes needs its token and its database URL, like any other's
    others = [f"database.urls.{name}=postgresql://{name}@db/{name}" for name in SERVICES]

    def refused(*given: str) -> str:
        args = ["--set", "database.create=true", "--set-string", ",".join([*others, *given])]
        result = run_helm(helm, "template", str(chart), *args)
        assert result.returncode != 0
        return result.stderr

    assert "auth.tokens.reviews-books is required" in refused(
        "auth.publicKey=-----BEGIN PUBLIC KEY-----",
        *[f"auth.tokens.{key}=a.b.c" for key in CREDENTIALS],
        "database.urls.reviews=postgresql://r@db/r",
    )
    assert "database.urls.reviews is required" in refused()
    given = render(
        "--set",
        "database.create=true",
        "--set-string",
        ",".join([*others, "database.urls.reviews=postgresql://r@db/r"]),
    )
    secret = of_kind(given, "Secret")[f"{RELEASE}-database"]
    assert secret["stringData"]["reviews"] == "postgresql://r@db/r"


def test_the_package_of_a_new_folder_holds_only_its_manifests(
    helm: str, repository_copy: Path, tmp_path: Path
) -> None:
    chart = repository_copy / CHART.relative_to(ROOT)
    files = _package(helm, chart, tmp_path / "package")
    services = service_registry.load_services(repository_copy / "services")
    packaged = {
        path.removeprefix("bookshop/") for path in files if path.startswith("bookshop/services/")
    }
    assert packaged == set(_manifests(services))


@pytest.mark.parametrize(
    ("manifest", "config", "complaint"),
    [
        ({"port": 8001}, {}, "reviews and books both declare port 8001"),
        ({"port": "8004"}, {}, "port must be a number from 1024 to 65535"),
        ({"port": 8004}, {"dependencies": {"ratings": {}}}, "depends on ratings"),
        ({"port": 8004, "credentials": {"books": ["x"]}}, {}, "credentials for books"),
        ({"port": 8004}, {"service": {"name": "books"}}, 'service.name must be "reviews"'),
    ],
    ids=["same-port", "port-string", "unknown-dependency", "stray-credential", "wrong-name"],
)
def test_an_inconsistent_folder_fails_the_render_with_its_reason(
    helm: str,
    repository_copy: Path,
    manifest: dict[str, Any],
    config: dict[str, Any],
    complaint: str,
) -> None:
    """The chart checks the folders as deploy/service_registry.py does (test_service_registry.py
    has the same cases)."""
    folder = repository_copy / "services" / "reviews"
    _write_yaml(folder / service_registry.MANIFEST, manifest)
    _write_yaml(
        folder / "src" / "reviews" / "config.yml", {"service": {"name": "reviews"}, **config}
    )
    with pytest.raises(service_registry.ServiceManifestError):
        service_registry.python_services(repository_copy / "services")
    chart = repository_copy / CHART.relative_to(ROOT)
    result = run_helm(helm, "template", str(chart))
    assert result.returncode != 0
    assert complaint in result.stderr, result.stderr


def test_a_chart_without_the_service_folders_says_so(helm: str, tmp_path: Path) -> None:
    """A checkout without symlinks (git's core.symlinks=false) leaves a text file there."""
    chart = tmp_path / "bookshop"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("services"))
    (chart / "services").write_text("../../../services")
    result = run_helm(helm, "template", str(chart))
    assert result.returncode != 0
    assert "no service found" in result.stderr
