"""observability/prometheus: the compose scrape config (generated with the stack from the service
folders and targets.yml), the alert rules and their unit tests, checked by promtool; the targets
against compose and design §8."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    COMPOSE_DIR,
    CONTAINER_PORT,
    GENERATE,
    HOST_PORTS,
    PROMETHEUS_DIR,
    REGISTRY,
    ROOT,
    SERVICES,
    host_ports,
    require,
)

from chassis import metrics

RULES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("promtool"), *args], capture_output=True, text=True, check=False, cwd=ROOT
    )


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """generated/prometheus.yml as `make up` writes it (here, into a temporary folder)."""
    directory = tmp_path_factory.mktemp("generated")
    GENERATE.write(REGISTRY, directory)
    return directory / GENERATE.PROMETHEUS_FILE.name


def test_promtool_check_config(config_file: Path) -> None:
    result = promtool("check", "config", str(config_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    assert RULES
    result = promtool("check", "rules", *map(str, RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests() -> None:
    assert RULE_TESTS
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_jobs_are_the_services_at_their_container_port(
    compose: dict[str, Any], config_file: Path
) -> None:
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(SERVICES)
    for name, job in jobs.items():
        (static,) = job["static_configs"]
        assert static["targets"] == [f"{name}:{CONTAINER_PORT}"]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert name in compose["services"], "a target Prometheus can resolve in compose"
        assert host_ports(compose["services"][name]) == [(HOST_PORTS[name], CONTAINER_PORT)]


def test_every_service_listens_on_the_container_port_of_the_targets() -> None:
    targets = yaml.safe_load((PROMETHEUS_DIR / "targets.yml").read_text(encoding="utf-8"))
    assert targets["container_port"] == CONTAINER_PORT


def test_compose_mounts_the_config_and_rules_where_the_config_looks(
    compose: dict[str, Any], config_file: Path
) -> None:
    prometheus = compose["services"]["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    config_flag = next(f for f in prometheus["command"] if f.startswith("--config.file="))
    config_path = config_flag.split("=", 1)[1]
    assert (COMPOSE_DIR / mounts[config_path]).resolve() == GENERATE.PROMETHEUS_FILE
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    (pattern,) = config["rule_files"]
    rules_dir = pattern.rsplit("/", 1)[0]
    assert (ROOT / "deploy" / "compose" / mounts[rules_dir]).resolve() == RULES[0].parent


def test_rules_use_the_chassis_metric_and_label_names() -> None:
    known_metrics = {
        metrics.HTTP_SERVER_DURATION,
        metrics.HTTP_CLIENT_DURATION,
        metrics.HTTP_CLIENT_RETRIES,
        metrics.BREAKER_STATE,
        metrics.BREAKER_CALLS,
        "up",
    }
    known_labels = {
        metrics.METHOD,
        metrics.ROUTE,
        metrics.STATUS,
        metrics.PEER,
        metrics.STATE,
        metrics.OUTCOME,
        "job",
        "instance",
        "le",
    }
    for path in RULES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                expression = rule["expr"]
                for name in re.findall(r"\b([a-z_]+)(?:_bucket|_count|_sum)?\{", expression):
                    base = re.sub(r"_(bucket|count|sum)$", "", name)
                    assert base in known_metrics or name in known_metrics, (rule["alert"], name)
                for label in re.findall(r"[{,]\s*([a-z_]+)\s*(?:=~|!~|!=|=)", expression):
                    assert label in known_labels, (rule["alert"], label)
                for label in re.findall(r"\b(?:by|on|without)\s*\(([^)]*)\)", expression):
                    for name in filter(None, (part.strip() for part in label.split(","))):
                        assert name in known_labels, (rule["alert"], name)


def test_every_alert_has_a_severity_and_a_summary() -> None:
    alerts = [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    names = {rule["alert"] for rule in alerts}
    assert {
        "InstanceDown",
        "HighErrorRatio",
        "LatencySLOBurn",
        "CircuitBreakerOpen",
        "ReadinessFailing",
    } <= names
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
    tested = "".join(Path(p).read_text(encoding="utf-8") for p in RULE_TESTS)
    for name in names:
        assert f"alertname: {name}" in tested, f"{name} has no unit test"
