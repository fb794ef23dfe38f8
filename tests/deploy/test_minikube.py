"""`make k8s-up`'s stack: the chart with values-minikube.yaml (the services plus PostgreSQL,
Jaeger, Prometheus and Grafana) and deploy/minikube/run.py, checked without a cluster.

No Kubernetes cluster can run here. What runs instead:
- `helm lint --strict` and `helm template` with the values `make k8s-up` passes (run.py's own
  arguments: values-minikube.yaml, the dev issuer's key, the tokens, the fault token);
- every object against the Kubernetes API schemas, strict (kubernetes-validate);
- kube-score, a manifest linter built from its Go module, on the default, full and minikube
  renders: every finding fixed or justified in ci/kube-score.yaml;
- `promtool check config` on the Prometheus config the chart renders, its rules included, and
  Prometheus' relabelling run on every pod the chart makes: it keeps exactly the services;
- consistency: the rules, dashboards, Grafana provisioning and init script are the repository's
  bytes; every address a pod uses (database, OTLP, dependencies, datasources) is a Service of
  the chart serving a container port; the images, commands, settings and memory are compose's;
  the stack's memory fits minikube's default 2 GiB.
"""

from __future__ import annotations

import copy
import functools
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import service_registry
import yaml
from deploy_support import (
    COMPOSE_DIR,
    ROOT,
    host_ports,
    interpolate,
    load_compose,
    require_go_tool,
)
from kubernetes_validate.utils import SchemaNotFoundError
from sqlalchemy.engine import make_url
from test_compose import image_environment, memory_bytes, settings_class
from test_helm import (
    CHART,
    FULL_VALUES,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    _mounted_files,
    all_containers,
    env_of,
    of_kind,
    quantity_bytes,
    run_helm,
    template,
)

from chassis.config import load_settings
from chassis.dev_issuer import DevIssuer
from chassis.testing import load_script

RUN = load_script(ROOT / "deploy" / "minikube" / "run.py", "minikube_run")
REGISTRY = service_registry.python_services()
SERVICES = tuple(REGISTRY)
KUBE_SCORE_CHECKS = CHART / "ci" / "kube-score.yaml"
OBSERVABILITY = ROOT / "observability"
# The chart's name of each piece of infrastructure -> compose's service (and Service) name.
PIECES = {
    "postgresql": "postgres",
    "jaeger": "jaeger",
    "prometheus": "prometheus",
    "grafana": "grafana",
}
# minikube's default VM memory (`minikube start` without --memory, on a host of 8 GiB or more
# it may give more; the budget is this).
MINIKUBE_MEMORY = 2 * 1024**3
FAULT_TOKEN = "a-fault-token-of-the-users-own"
RULES_DIR = "/etc/prometheus/rules"
GENERATED_SERVICES = COMPOSE_DIR / "generated" / "services.yaml"
# promtool of the Prometheus compose runs, as .ci/run names it.
PROMTOOL = "promtool-v3.5.0"


# -- the render k8s-up installs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s_up_values(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """run.py's helm arguments, with a real key pair and tokens it signed (as .dev/auth)."""
    directory = tmp_path_factory.mktemp("k8s")
    issuer = DevIssuer.generate()
    public_key = directory / "issuer.pub"
    public_key.write_text(issuer.public_pem())
    tokens = {}
    for name, service in REGISTRY.items():
        for dependency, scopes in service.credentials.items():
            path = tokens[f"{name}-{dependency}"] = directory / f"{name}-{dependency}.jwt"
            path.write_text(issuer.mint(audience=dependency, scopes=list(scopes), subject=name))
    secrets = directory / "secret-values.yaml"
    secrets.write_text(yaml.safe_dump({"faults": {"token": FAULT_TOKEN}}))
    arguments: list[str] = RUN.helm_values(
        public_key=public_key, tokens=tokens, offline=None, secrets=secrets
    )
    return arguments


@pytest.fixture(scope="module")
def objects(helm: str, k8s_up_values: list[str]) -> tuple[dict[str, Any], ...]:
    return tuple(template(helm, *k8s_up_values))


@functools.cache
def _default_objects(helm: str) -> tuple[dict[str, Any], ...]:
    return tuple(template(helm))


def workloads(objects: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    """Every pod the release makes, by its workload's name: name -> pod template (metadata,
    spec) and replicas."""
    found = {}
    for item in objects:
        if item["kind"] in ("Deployment", "StatefulSet"):
            template_ = item["spec"]["template"]
            found[item["metadata"]["name"]] = {
                **template_,
                "replicas": item["spec"].get("replicas", 1),
            }
        elif item["kind"] == "Pod":
            found[item["metadata"]["name"]] = {
                "metadata": item["metadata"],
                "spec": item["spec"],
                "replicas": 1,
            }
    return found


def test_helm_lint_strict_passes_with_the_k8s_up_values(
    helm: str, k8s_up_values: list[str]
) -> None:
    result = run_helm(
        helm,
        "lint",
        "--strict",
        str(CHART),
        "--kube-version",
        f"{KUBE_VERSIONS[-1]}.0",
        *k8s_up_values,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout, result.stdout


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_api_schema(
    helm: str, k8s_up_values: list[str], kube: str
) -> None:
    errors = []
    for item in template(helm, *k8s_up_values, kube=kube):
        try:
            kubernetes_validate.validate(item, kube, strict=True)
        except SchemaNotFoundError:
            errors.append(f"{item['kind']}: no schema")
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            errors.append(f"{item['kind']}/{item['metadata']['name']} {where}: {error.message}")
    assert not errors, "\n".join(errors)


def test_the_infrastructure_is_in_the_minikube_release_and_not_by_default(
    helm: str, objects: tuple[dict[str, Any], ...]
) -> None:
    infrastructure = {"postgres", "jaeger", "prometheus", "grafana"}
    assert infrastructure <= set(workloads(objects))
    assert infrastructure <= set(of_kind(objects, "Service"))
    assert of_kind(objects, "StatefulSet")["postgres"]["spec"]["volumeClaimTemplates"]
    default = _default_objects(helm)
    assert not infrastructure & set(workloads(default)), "production brings its own"
    assert not infrastructure & set(of_kind(default, "Service"))
    assert "Role" not in {item["kind"] for item in default}


def test_each_service_runs_once_with_the_images_k8s_up_builds(
    objects: tuple[dict[str, Any], ...],
) -> None:
    pods = workloads(objects)
    for name in SERVICES:
        assert pods[name]["replicas"] == 1
        images = {container["image"] for container in all_containers(pods[name]["spec"])}
        assert images == {RUN.image_name(name)}


# -- the repository's own files -------------------------------------------------------------------


def test_rules_dashboards_provisioning_and_init_script_are_the_repositorys_bytes(
    objects: tuple[dict[str, Any], ...],
) -> None:
    maps = {name: item["data"] for name, item in of_kind(objects, "ConfigMap").items()}
    expected = {
        "prometheus-rules": OBSERVABILITY / "prometheus" / "rules",
        "grafana-dashboards": OBSERVABILITY / "grafana" / "dashboards",
        "grafana-datasources": OBSERVABILITY / "grafana" / "provisioning" / "datasources",
        "grafana-provider": OBSERVABILITY / "grafana" / "provisioning" / "dashboards",
        "postgres-init": COMPOSE_DIR / "postgres",
    }
    for name, folder in expected.items():
        files = {
            path.name: path.read_text(encoding="utf-8")
            for path in folder.iterdir()
            if path.is_file()
        }
        assert files, folder
        assert maps[name] == files, name


def test_the_mounts_are_where_compose_mounts_the_same_files(
    objects: tuple[dict[str, Any], ...],
) -> None:
    """Each file where the image (and compose's volume) expects it: the provisioning at
    /etc/grafana/provisioning, the dashboards at the provider's path, the rules where
    prometheus.yml's rule_files look, the init script in /docker-entrypoint-initdb.d."""
    compose = load_compose()["services"]
    pods = workloads(objects)

    def mounts(workload: str) -> dict[str, str]:
        spec = pods[workload]["spec"]
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        (container,) = spec["containers"]
        return {
            mount["mountPath"]: volumes.get(mount["name"], {}).get("configMap", {}).get("name", "")
            for mount in container["volumeMounts"]
        }

    def compose_target(service: str, source: str) -> str:
        (volume,) = [v for v in compose[service]["volumes"] if v.split(":")[0].endswith(source)]
        return str(volume.split(":")[1])

    grafana = mounts("grafana")
    assert grafana[compose_target("grafana", "grafana/dashboards")] == "grafana-dashboards"
    provisioning = compose_target("grafana", "grafana/provisioning")
    assert grafana[f"{provisioning}/datasources"] == "grafana-datasources"
    assert grafana[f"{provisioning}/dashboards"] == "grafana-provider"
    provider = yaml.safe_load(
        next((OBSERVABILITY / "grafana/provisioning/dashboards").glob("*.yml")).read_text()
    )
    assert provider["providers"][0]["options"]["path"] == compose_target(
        "grafana", "grafana/dashboards"
    )
    assert (
        mounts("prometheus")[compose_target("prometheus", "prometheus/rules")] == "prometheus-rules"
    )
    init = compose_target("postgres", "init-databases.sh")
    assert mounts("postgres")[init] == "postgres-init"


# -- Prometheus -----------------------------------------------------------------------------------


def prometheus_config(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(
        of_kind(objects, "ConfigMap")["prometheus-config"]["data"]["prometheus.yml"]
    )
    return config


def test_promtool_checks_the_rendered_config_and_its_rules(
    objects: tuple[dict[str, Any], ...], tmp_path: Path
) -> None:
    """promtool of Prometheus 3.5, the version compose runs (Debian's leaves Kubernetes
    discovery out), on the config and the rules files of the ConfigMaps."""
    promtool = require_go_tool(PROMTOOL, "see .ci/run: built from github.com/prometheus/prometheus")
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in of_kind(objects, "ConfigMap")["prometheus-rules"]["data"].items():
        (rules / name).write_text(text)
    config = prometheus_config(objects)
    assert config["rule_files"] == [f"{RULES_DIR}/*.yml"]
    config["rule_files"] = [f"{rules}/*.yml"]  # where this test put the ConfigMap's files

    def check(config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        command = [promtool, "check", "config", str(path)]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    result = check(config)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"SUCCESS: {len(list(rules.iterdir()))} rule files found" in output
    for text in of_kind(objects, "ConfigMap")["prometheus-rules"]["data"].values():
        count = sum(len(group["rules"]) for group in yaml.safe_load(text)["groups"])
        assert f"SUCCESS: {count} rules found" in output
    # the check can fail: a discovery role Prometheus does not know
    config["scrape_configs"][0]["kubernetes_sd_configs"][0]["role"] = "pods"
    assert check(config).returncode != 0


def _sanitized(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def discovered_targets(
    pod: dict[str, Any], name: str, namespace: str, phase: str = "Running"
) -> list[dict[str, str]]:
    """What Kubernetes pod discovery gives Prometheus for ``pod``: one target per container
    port, or per container without ports, with its __meta_kubernetes_* labels."""
    metadata, spec = pod["metadata"], pod["spec"]
    common = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_phase": phase,
        "__meta_kubernetes_pod_ip": "10.244.0.7",
    }
    for key, value in metadata.get("labels", {}).items():
        common[f"__meta_kubernetes_pod_label_{_sanitized(key)}"] = value
        common[f"__meta_kubernetes_pod_labelpresent_{_sanitized(key)}"] = "true"
    for key, value in metadata.get("annotations", {}).items():
        common[f"__meta_kubernetes_pod_annotation_{_sanitized(key)}"] = str(value)
    targets = []
    for container in spec["containers"]:
        labels = {**common, "__meta_kubernetes_pod_container_name": container["name"]}
        for port in container.get("ports") or [None]:
            target = dict(labels)
            if port is None:
                target["__address__"] = "10.244.0.7"
            else:
                target["__address__"] = f"10.244.0.7:{port['containerPort']}"
                target["__meta_kubernetes_pod_container_port_name"] = port.get("name", "")
                target["__meta_kubernetes_pod_container_port_number"] = str(port["containerPort"])
            targets.append(target)
    return targets


def relabel(target: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus' relabelling (keep, drop, replace; its defaults: separator ";", regex
    "(.*)" anchored at both ends, replacement "$1"), then its defaults for job and path."""
    labels = dict(target)
    for rule in rules:
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(
            labels.get(name, "") for name in rule.get("source_labels", [])
        )
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if (action == "keep" and match is None) or (action == "drop" and match is not None):
            return None
        if action == "replace" and match is not None:
            replacement = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", rule.get("replacement", "$1"))
            result = match.expand(replacement)
            if result:
                labels[rule["target_label"]] = result
            else:
                labels.pop(rule["target_label"], None)
        assert action in ("keep", "drop", "replace"), f"the check knows no action {action}"
    return labels


def selected(
    config: dict[str, Any], pods: dict[str, dict[str, Any]], namespace: str
) -> set[tuple[str, ...]]:
    """(job, service, address port, metrics path) of every target the config keeps."""
    (job,) = config["scrape_configs"]
    (discovery,) = job["kubernetes_sd_configs"]
    assert discovery["role"] == "pod"
    found = set()
    for name, pod in pods.items():
        namespaces = discovery.get("namespaces", {}).get("names")
        if namespaces is not None and namespace not in namespaces:
            continue
        for selector in discovery.get("selectors", []):  # equality-based label selectors
            wanted = dict(term.split("=", 1) for term in selector["label"].split(","))
            if not wanted.items() <= pod["metadata"].get("labels", {}).items():
                break
        else:
            for target in discovered_targets(
                pod, f"{name}-7d9c", namespace, pod.get("phase", "Running")
            ):
                labels = relabel(target, job["relabel_configs"])
                if labels is not None:
                    port = labels["__address__"].rpartition(":")[2]
                    path = labels.get("__metrics_path__", job.get("metrics_path", "/metrics"))
                    found.add(
                        (labels.get("job", job["job_name"]), labels.get("service", ""), port, path)
                    )
    return found


def test_scrape_discovery_selects_exactly_the_services(objects: tuple[dict[str, Any], ...]) -> None:
    """Of every pod the release makes (the infrastructure, the `helm test` pod), plus one of
    another release, one of another namespace and a service's pod still migrating: exactly
    each service's http port, with job and service its name, as compose's static jobs."""
    config = prometheus_config(objects)
    pods = copy.deepcopy(workloads(objects))  # the fixture's objects stay as rendered
    books = pods["books"]
    other_release = {
        **books["metadata"],
        "labels": {**books["metadata"]["labels"], "app.kubernetes.io/instance": "other"},
    }
    pods["books-of-another-release"] = {**books, "metadata": other_release}
    pods["books-migrating"] = {**books, "phase": "Pending"}
    expected = {(name, name, "8000", "/metrics") for name in SERVICES}
    assert selected(config, pods, NAMESPACE) == expected
    assert selected(config, {"books": books}, "another-namespace") == set()
    # the check can fail: without the component rule and selector, the infrastructure's http
    # ports (Prometheus, Grafana) would be scraped as services
    job = config["scrape_configs"][0]
    job["kubernetes_sd_configs"][0].pop("selectors")
    job["relabel_configs"][0]["regex"] = ".*"
    assert selected(config, pods, NAMESPACE) == expected, "the annotation alone keeps them out"
    for pod in ("prometheus", "grafana"):
        pods[pod]["metadata"].setdefault("annotations", {})["prometheus.io/scrape"] = "true"
    assert {"prometheus", "grafana"} <= {job for job, *_ in selected(config, pods, NAMESPACE)}


def test_the_prometheus_config_is_composes_but_for_discovery(
    objects: tuple[dict[str, Any], ...],
) -> None:
    """Interval, rules and the label clean-up of compose's generated prometheus.yml."""
    render = load_script(OBSERVABILITY / "prometheus" / "render.py", "prometheus_render_k8s")
    compose_config = render.config("compose", interval="5s", rule_files=[f"{RULES_DIR}/*.yml"])
    config = prometheus_config(objects)
    assert config["global"] == compose_config["global"]
    assert config["rule_files"] == compose_config["rule_files"]
    for job in compose_config["scrape_configs"]:
        assert (
            job["metric_relabel_configs"] == config["scrape_configs"][0]["metric_relabel_configs"]
        )
        assert job["metrics_path"] == "/metrics"


def test_prometheus_may_list_the_pods_of_its_namespace_only(
    objects: tuple[dict[str, Any], ...],
) -> None:
    (role,) = of_kind(objects, "Role").values()
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    assert "ClusterRole" not in {item["kind"] for item in objects}
    (binding,) = of_kind(objects, "RoleBinding").values()
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    spec = workloads(objects)["prometheus"]["spec"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": spec["serviceAccountName"], "namespace": NAMESPACE}
    ]
    assert prometheus_config(objects)["scrape_configs"][0]["kubernetes_sd_configs"][0][
        "namespaces"
    ] == {"names": [NAMESPACE]}


def test_the_network_policies_admit_the_releases_prometheus(
    helm: str, k8s_up_values: list[str]
) -> None:
    objects = template(helm, *k8s_up_values, "--set", "networkPolicy.enabled=true")
    prometheus = workloads(tuple(objects))["prometheus"]["metadata"]["labels"]
    for name, policy in of_kind(tuple(objects), "NetworkPolicy").items():
        peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
        assert any(
            peer["podSelector"]["matchLabels"].items() <= prometheus.items() for peer in peers
        ), name


# -- every address a pod uses is an object of the chart -------------------------------------------


def serves(objects: tuple[dict[str, Any], ...], host: str, port: int) -> str:
    """The workload behind http://<host>:<port>: a Service of that name and port whose selector
    picks a pod template with the container port it targets."""
    service = of_kind(objects, "Service").get(host)
    assert service is not None, f"no Service {host}"
    (entry,) = [p for p in service["spec"]["ports"] if p["port"] == port] or [None]
    assert entry is not None, f"Service {host} has no port {port}"
    selector = service["spec"]["selector"]
    for name, pod in workloads(objects).items():
        if selector.items() <= pod["metadata"]["labels"].items():
            ports = [p for c in pod["spec"]["containers"] for p in c.get("ports", [])]
            target = entry.get("targetPort", port)
            if any(target in (p.get("name"), p["containerPort"]) for p in ports):
                return name
    raise AssertionError(f"Service {host}:{port} selects no pod serving {entry}")


def database_urls(objects: tuple[dict[str, Any], ...]) -> dict[str, str]:
    (secret,) = [
        s for name, s in of_kind(objects, "Secret").items() if name == f"{RELEASE}-database"
    ]
    return dict(secret["stringData"])


def test_each_database_url_is_its_own_role_and_database_on_the_releases_postgres(
    objects: tuple[dict[str, Any], ...],
) -> None:
    passwords = of_kind(objects, "Secret")[f"{RELEASE}-postgres"]["stringData"]
    postgres = workloads(objects)["postgres"]["spec"]["containers"][0]
    environment = env_of(postgres)
    assert environment["SERVICE_DATABASES"]["value"].split() == list(SERVICES)
    urls = database_urls(objects)
    assert set(urls) == set(SERVICES)
    for name, url in urls.items():
        parts = urlsplit(url)
        assert parts.scheme == "postgresql+psycopg2"
        assert (parts.username, parts.password) == (name, passwords["service-password"])
        assert parts.path == f"/{name}"
        assert serves(objects, parts.hostname or "", parts.port or 0) == "postgres"


def test_the_passwords_are_random_kept_and_never_in_the_pod_spec(
    helm: str, objects: tuple[dict[str, Any], ...], k8s_up_values: list[str]
) -> None:
    secret = of_kind(objects, "Secret")[f"{RELEASE}-postgres"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep", (
        "outlives uninstall, as the volume"
    )
    passwords = secret["stringData"]
    assert len(set(passwords.values())) == 2
    assert all(len(p) == 32 for p in passwords.values())
    again = of_kind(tuple(template(helm, *k8s_up_values)), "Secret")[f"{RELEASE}-postgres"][
        "stringData"
    ]
    assert again != passwords, "random at each install (an upgrade reads the Secret instead)"
    given = template(
        helm, *k8s_up_values, "--set", "infrastructure.postgresql.servicePassword=p@ss word"
    )
    assert make_url(database_urls(tuple(given))["books"]).password == "p@ss word", (
        "as SQLAlchemy reads it"
    )
    text = yaml.safe_dump([pod for pod in workloads(objects).values()])
    assert not [p for p in passwords.values() if p in text]


def test_the_services_send_spans_to_the_releases_jaeger(
    objects: tuple[dict[str, Any], ...],
) -> None:
    for name in SERVICES:
        (container,) = workloads(objects)[name]["spec"]["containers"]
        parts = urlsplit(env_of(container)["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"])
        assert serves(objects, parts.hostname or "", parts.port or 0) == "jaeger"
        assert parts.port == 4318, "OTLP over http/protobuf, design §5"


def test_dependencies_and_datasources_point_at_the_charts_services(
    objects: tuple[dict[str, Any], ...],
) -> None:
    for name in SERVICES:
        (container,) = workloads(objects)[name]["spec"]["containers"]
        for variable, entry in env_of(container).items():
            if variable.startswith("DEPENDENCIES__") and variable.endswith("__BASE_URL"):
                parts = urlsplit(entry["value"])
                assert serves(objects, parts.hostname or "", parts.port or 0) == parts.hostname
    datasources = yaml.safe_load(
        of_kind(objects, "ConfigMap")["grafana-datasources"]["data"]["datasources.yml"]
    )
    found = {}
    for source in datasources["datasources"]:
        parts = urlsplit(source["url"])
        found[source["uid"]] = serves(objects, parts.hostname or "", parts.port or 0)
    assert found == {"prometheus": "prometheus", "jaeger": "jaeger"}


def test_the_settings_load_in_each_service_pod(
    objects: tuple[dict[str, Any], ...], tmp_path: Path
) -> None:
    """As test_helm.py's check: the container's environment and mounted Secret files make valid
    settings, now with the release's database, trace store, tokens and fault token."""
    urls = database_urls(objects)
    for name in SERVICES:
        spec = workloads(objects)[name]["spec"]
        (container,) = spec["containers"]
        files = _mounted_files(objects, spec, container)
        environ = image_environment()
        for variable, entry in env_of(container).items():
            value = entry["value"]
            if value in files:
                moved = tmp_path / name / value.lstrip("/")
                moved.parent.mkdir(parents=True, exist_ok=True)
                moved.write_text(files[value] + "\n")
                value = str(moved)
            environ[variable] = value
        settings = load_settings(settings_class(name), REGISTRY[name].config_dir, environ=environ)
        assert settings.database.url.get_secret_value() == urls[name]
        assert settings.faults.enabled
        assert settings.faults.token is not None
        assert settings.faults.token.get_secret_value() == FAULT_TOKEN
        for dependency in REGISTRY[name].credentials:
            assert settings.dependencies[dependency].token is not None, f"{name} -> {dependency}"


def test_the_services_wait_for_the_database_before_migrating(
    helm: str, objects: tuple[dict[str, Any], ...]
) -> None:
    for name in SERVICES:
        first, second, *_ = workloads(objects)[name]["spec"]["initContainers"]
        assert first["name"] == "wait-for-database"
        assert '("postgres", 5432)' in first["command"][-1]
        assert second["name"] == "migrate"
    for name in SERVICES:
        assert "wait-for-database" not in str(workloads(_default_objects(helm))[name])


# -- compose's images, commands, settings and memory ----------------------------------------------


def test_the_images_are_the_ones_compose_builds_and_runs(
    objects: tuple[dict[str, Any], ...],
) -> None:
    compose = load_compose()["services"]
    pods = workloads(objects)
    for name in SERVICES:
        assert interpolate(compose[name]["image"], {}) == RUN.image_name(name)
    for piece, service in PIECES.items():
        (container,) = pods[service]["spec"]["containers"]
        assert container["image"] == interpolate(compose[service]["image"], {}), piece


def test_k8s_up_builds_the_images_with_composes_own_build() -> None:
    """`docker compose build` of the services, on compose's files (with the stand-ins'
    variables offline): the very images `make up` runs, named as the chart expects them."""
    compose = load_compose()["services"]
    for offline in (False, True):
        command = RUN.compose_build(REGISTRY, offline=offline)
        files = [command[i + 1] for i, part in enumerate(command) if part == "-f"]
        assert files == [str(COMPOSE_DIR / "compose.yaml"), str(GENERATED_SERVICES)]
        assert command[command.index("build") + 1 :] == list(SERVICES)
        assert ("--env-file" in command) is offline
        if offline:
            assert command[command.index("--env-file") + 1] == str(RUN.OFFLINE_IMAGES)
    for name in SERVICES:
        assert "build" in compose[name]
        assert interpolate(compose[name]["image"], {}) == RUN.image_name(name)


def test_offline_the_stand_ins_run_and_grafana_does_not(
    helm: str, k8s_up_values: list[str], tmp_path: Path
) -> None:
    offline = RUN.offline_images()
    compose = load_compose()["services"]
    ids = {"runAsUser": 100, "runAsGroup": 102, "fsGroup": 102}
    pieces = {
        piece: (offline[variable], ids if user else {})
        for piece, (variable, user) in RUN.OFFLINE_INFRASTRUCTURE.items()
    }
    extra = RUN.helm_values(
        public_key=tmp_path / "unused", tokens={}, offline=pieces, secrets=tmp_path / "unused"
    )
    objects = tuple(template(helm, *k8s_up_values, *extra[extra.index("--set-string") :]))
    pods = workloads(objects)
    assert "grafana" not in pods
    for piece, (image, _) in pieces.items():
        (container,) = pods[PIECES[piece]]["spec"]["containers"]
        assert container["image"] == image == interpolate(compose[PIECES[piece]]["image"], offline)
    assert pods["postgres"]["spec"]["securityContext"]["runAsUser"] == 100


def test_the_infrastructure_runs_as_compose_runs_it(objects: tuple[dict[str, Any], ...]) -> None:
    """compose's command (as args: the images keep their entrypoints), environment and memory
    limit; but for the passwords, which come from Secrets here."""
    compose = load_compose()["services"]
    pods = workloads(objects)
    for piece, service in PIECES.items():
        (container,) = pods[service]["spec"]["containers"]
        limit = quantity_bytes(container["resources"]["limits"]["memory"])
        assert limit == memory_bytes(compose[service]["mem_limit"]), piece
        assert quantity_bytes(container["resources"]["requests"]["memory"]) == limit, piece
        assert container.get("args", []) == compose[service].get("command", []), piece
        environment = {
            name: interpolate(value, {})
            for name, value in compose[service].get("environment", {}).items()
            if "PASSWORD" not in name
        }
        ours = {
            name: entry.get("value")
            for name, entry in env_of(container).items()
            if "PASSWORD" not in name
        }
        # set by the chart for Kubernetes: the data below the volume's mount point
        ours.pop("PGDATA" if service == "postgres" else "", None)
        assert ours == environment, piece
        secrets = {name for name, entry in env_of(container).items() if "valueFrom" in entry}
        assert secrets == {
            name for name in compose[service].get("environment", {}) if "PASSWORD" in name
        }, piece


def test_the_infrastructure_runs_unprivileged(objects: tuple[dict[str, Any], ...]) -> None:
    for service in PIECES.values():
        spec = workloads(objects)[service]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = spec["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert spec.get("automountServiceAccountToken") is False or service == "prometheus", (
            "only discovery reads the API"
        )


def test_the_stacks_memory_fits_minikube(objects: tuple[dict[str, Any], ...]) -> None:
    """Requests and limits of every pod (replicas counted; a pod's init containers run one at a
    time, before its containers) within minikube's default 2 GiB."""
    totals = {"requests": 0, "limits": 0}
    for pod in workloads(objects).values():
        for kind in totals:
            running = sum(
                quantity_bytes(c["resources"][kind]["memory"]) for c in pod["spec"]["containers"]
            )
            starting = max(
                (
                    quantity_bytes(c["resources"][kind]["memory"])
                    for c in pod["spec"].get("initContainers", [])
                ),
                default=0,
            )
            totals[kind] += pod["replicas"] * max(running, starting)
    requests, limits = (totals[kind] / 1024**2 for kind in ("requests", "limits"))
    print(f"minikube stack: memory requests {requests:.0f} MiB, limits {limits:.0f} MiB")
    assert totals["limits"] <= MINIKUBE_MEMORY
    assert totals["requests"] == totals["limits"], (
        "memory requested as limited: never overcommitted"
    )


def test_k8s_up_forwards_the_ports_compose_publishes() -> None:
    """Every port compose publishes, to the same port of the same service, but for those
    nothing outside the cluster needs (the database, the OTLP receivers, locust's UI)."""
    compose = load_compose()["services"]
    published = {
        (name, host, container)
        for name, service in compose.items()
        for host, container in host_ports(service)
        if host not in RUN.NOT_FORWARDED
    }
    forwarded = {(f.service, f.local, f.remote) for f in RUN.forwards(REGISTRY, grafana=True)}
    assert forwarded == published
    assert {f.service for f in RUN.forwards(REGISTRY, grafana=False)} == {
        *SERVICES,
        "jaeger",
        "prometheus",
    }


# -- kube-score -----------------------------------------------------------------------------------


def kube_score() -> str:
    return require_go_tool(
        "kube-score", "go install github.com/zegl/kube-score/cmd/kube-score@v1.20.0"
    )


def score(tool: str, manifests: str, ignored: list[str]) -> list[str]:
    """kube-score's findings (warnings included) with ``ignored`` checks left out."""
    command = [
        tool,
        "score",
        "--output-format",
        "ci",
        "--kubernetes-version",
        f"v{KUBE_VERSIONS[-1]}",
    ]
    command += [f"--ignore-test={check}" for check in ignored]
    result = subprocess.run(
        [*command, "-"], input=manifests, capture_output=True, text=True, check=False
    )
    assert not result.stderr.strip(), result.stderr
    return [
        line for line in result.stdout.splitlines() if not line.startswith(("[OK]", "[SKIPPED]"))
    ]


@pytest.mark.parametrize("scenario", ["default", "full", "minikube"])
def test_kube_score_finds_nothing_but_what_is_justified(
    helm: str, k8s_up_values: list[str], scenario: str
) -> None:
    tool = kube_score()
    checks = yaml.safe_load(KUBE_SCORE_CHECKS.read_text(encoding="utf-8"))
    for check, entry in checks.items():
        assert len(entry["why"]) > 80, f"{check}: say why"
    arguments = {"default": [], "full": ["-f", str(FULL_VALUES)], "minikube": k8s_up_values}[
        scenario
    ]
    result = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *arguments)
    assert result.returncode == 0, result.stderr
    findings = score(tool, result.stdout, list(checks))
    assert not findings, "\n".join(findings)
    for check, entry in checks.items():
        if scenario in entry["scenarios"]:
            others = [other for other in checks if other != check]
            assert score(tool, result.stdout, others), (
                f"{check} finds nothing in {scenario}: drop it there"
            )


# -- make k8s-up ----------------------------------------------------------------------------------


def test_k8s_up_says_what_is_missing(tmp_path: Path) -> None:
    """Without minikube, then kubectl, then docker: a clear message and a failure each time,
    nothing made."""
    bare = {"PATH": str(tmp_path), "HOME": str(tmp_path), "DEV_DIR": str(tmp_path / "dev")}
    command = [sys.executable, str(ROOT / "deploy" / "minikube" / "run.py"), "up"]
    for tool, advice in [
        ("minikube", "https://minikube.sigs.k8s.io"),
        ("kubectl", "https://kubernetes.io/docs/tasks/tools/"),
        ("docker", "Compose v2"),
    ]:
        result = subprocess.run(
            command, env=bare, capture_output=True, text=True, check=False, timeout=60
        )
        assert result.returncode == 1
        assert f"{tool} is not installed (not on PATH): " in result.stderr
        assert advice in result.stderr
        (tmp_path / tool).write_text("#!/bin/sh\nexit 0\n")  # there, as far as PATH goes
        (tmp_path / tool).chmod(0o755)
    assert not (tmp_path / "dev").exists(), "nothing made before the checks pass"


# What kubectl port-forward does, as far as the forwarder sees it: it listens on a local port
# and connects each client to the backend it chose when it started; when that backend is gone it
# goes on listening, and every connection fails.
STAND_IN_FORWARD = """
import socket, sys, threading, time
local, chosen = int(sys.argv[1]), int(open(sys.argv[2]).read())
time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 0)  # kubectl taking its time to start
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", local))
server.listen()
def pipe(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:  # shutdown, not close alone: the other thread may be blocked in recv on it
        for end in (a, b):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()
while True:
    client, _ = server.accept()
    try:
        backend = socket.create_connection(("127.0.0.1", chosen))
    except OSError:
        client.close()
        continue
    threading.Thread(target=pipe, args=(client, backend), daemon=True).start()
    threading.Thread(target=pipe, args=(backend, client), daemon=True).start()
"""


def _backend() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class StandInForwarding:
    """A Forwarder keeping one stand-in forward (STAND_IN_FORWARD) to the backend whose port
    is in ``chosen``, on a free local port."""

    module: Any
    forwarder: Any
    item: Any
    local: int
    chosen: Path
    lines: list[str]


def _stand_in_forwarding(
    tmp_path: Path, backend_port: int, *, check_seconds: float, startup_seconds: float = 0
) -> StandInForwarding:
    module = load_script(ROOT / "deploy" / "minikube" / "forward.py", "minikube_forward")
    chosen = tmp_path / "backend"
    chosen.write_text(str(backend_port))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local = probe.getsockname()[1]
    item = module.Forward("books", local, 8000, "/health/live")
    lines: list[str] = []
    command = [
        sys.executable,
        "-c",
        STAND_IN_FORWARD,
        str(local),
        str(chosen),
        str(startup_seconds),
    ]
    forwarder = module.Forwarder(
        [item], lambda _: command, log=lines.append, check_seconds=check_seconds
    )
    return StandInForwarding(module, forwarder, item, local, chosen, lines)


def test_the_forwarder_restarts_a_forward_whose_backend_was_replaced(tmp_path: Path) -> None:
    first, second = _backend(), _backend()
    run = _stand_in_forwarding(tmp_path, first.server_port, check_seconds=0.2)
    forwarder, item = run.forwarder, run.item
    runner = threading.Thread(target=forwarder.run)
    runner.start()
    try:
        _wait_until(lambda: forwarder.answered[item])  # its own check got through
        assert forwarder.restarts[item] == 0
        first.shutdown()  # the pod is replaced: the forward still listens, every request fails
        first.server_close()
        run.chosen.write_text(str(second.server_port))
        assert not run.module.answers(run.local, "/health/live")
        _wait_until(lambda: forwarder.restarts[item] == 1)
        _wait_until(lambda: run.module.answers(run.local, "/health/live"))
        assert any("stopped answering" in line for line in run.lines), run.lines
    finally:
        forwarder.stop()
        runner.join(timeout=30)
        second.shutdown()
    assert not runner.is_alive()
    assert not run.module.answers(run.local, "/health/live"), "stop() ends the forwards"


def test_a_forward_slow_to_start_is_given_time_not_restarted(tmp_path: Path) -> None:
    backend = _backend()
    # 1.5 s is 15 checks: five times the failures that restart a forward that answered
    run = _stand_in_forwarding(
        tmp_path, backend.server_port, check_seconds=0.1, startup_seconds=1.5
    )
    runner = threading.Thread(target=run.forwarder.run)
    runner.start()
    try:
        _wait_until(lambda: run.forwarder.answered[run.item])
        assert run.forwarder.restarts[run.item] == 0
    finally:
        run.forwarder.stop()
        runner.join(timeout=30)
        backend.shutdown()


def _wait_until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_the_chart_package_holds_the_infrastructures_files_and_no_other_of_their_folders(
    helm: str, tmp_path: Path
) -> None:
    result = run_helm(helm, "package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (archive,) = tmp_path.glob("*.tgz")
    with tarfile.open(archive) as package:
        names = {name.removeprefix("bookshop/") for name in package.getnames()}
    linked = {name for name in names if name.startswith(("observability/", "postgres/"))}
    expected = {
        str(path.relative_to(ROOT))
        for folder in ("prometheus/rules", "grafana/dashboards", "grafana/provisioning")
        for path in (OBSERVABILITY / folder).rglob("*")
        if path.is_file()
    } | {"postgres/init-databases.sh"}
    assert linked == expected
