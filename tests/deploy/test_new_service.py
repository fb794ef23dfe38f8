"""deploy/new_service.py (`make new-service`): what it refuses, the port it picks, and (slow) a
generated service that passes its own tests and the repository's lint in a copy of the
repository, leaving nothing changed there but its folder and uv.lock."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from deploy_support import ROOT, find_helm, free_port
from service_registry import ServiceManifest, load_services

from chassis.testing import load_script
from chassis.testing.plugin import running_in_ci

new_service = load_script(ROOT / "deploy" / "new_service.py", "bookshop_new_service")
Refuse = Callable[..., str]


@pytest.fixture
def refused(capsys: pytest.CaptureFixture[str]) -> Refuse:
    """``refused("reviews", "--port", "22")``: the generator exits 2; its message."""

    def run(*argv: str) -> str:
        assert new_service.main(list(argv)) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        message: str = captured.err
        assert message.startswith("new-service: ")
        return message

    return run


@pytest.mark.parametrize(
    "name", ["Reviews", "gift_cards", "9lives", "-reviews", "reviews-", "gift--cards", "ré", ""]
)
def test_a_name_unlike_reviews_or_gift_cards_is_refused(refused: Refuse, name: str) -> None:
    assert "must be like reviews or gift-cards" in refused("--", name)


def test_a_long_name_is_refused(refused: Refuse) -> None:
    assert "at most 20 characters" in refused("a" * 21)


@pytest.mark.parametrize("name", ["books", "shop", "chat"])
def test_an_existing_service_is_refused(refused: Refuse, name: str) -> None:
    assert f"services/{name} exists already" in refused(name)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("postgres", "container"),
        ("jaeger", "container"),
        ("prometheus", "container"),
        ("grafana", "container"),
        ("locust", "container"),
        ("auth-init", "container"),
        ("reviews-migrate", "container"),
        ("chassis", "this repository"),
        ("common", "this repository"),
        ("libs", "this repository"),
        ("tests", "this repository"),
        ("deploy", "this repository"),
        ("templates", "this repository"),
        ("test", "shadow"),
        ("site", "shadow"),
        ("yaml", "shadow"),
        ("http", "shadow"),
        ("json", "shadow"),
        ("email", "shadow"),
        ("sqlalchemy", "shadow"),
        ("pydantic", "shadow"),
        ("import", "keyword"),
    ],
)
def test_a_reserved_name_is_refused(refused: Refuse, name: str, reason: str) -> None:
    message = refused(name)
    assert f"{name!r} is reserved" in message
    assert reason in message


@pytest.mark.parametrize(
    ("port", "taken_by"),
    [
        ("8001", "books"),
        ("8003", "chat"),
        ("5432", "postgres"),
        ("9090", "prometheus"),
        ("16686", "jaeger"),
        ("4317", "OTLP"),
        ("4318", "OTLP"),
        ("3000", "grafana"),
        ("8089", "locust"),
    ],
)
def test_a_port_in_use_is_refused(refused: Refuse, port: str, taken_by: str) -> None:
    message = refused("reviews", "--port", port)
    assert f"port {port} is taken by {taken_by}" in message


@pytest.mark.parametrize("port", ["0", "80", "1023", "65536"])
def test_a_port_out_of_range_is_refused(refused: Refuse, port: str) -> None:
    assert "must be from 1024 to 65535" in refused("reviews", "--port", port)


def test_an_unknown_dependency_is_refused(refused: Refuse) -> None:
    message = refused("reviews", "--depends", "books,nowhere")
    assert "--depends nowhere: no such service" in message
    assert "books, shop, chat" in message


def test_nothing_is_written_when_refused(refused: Refuse) -> None:
    refused("reviews", "--port", "5432")
    assert not (ROOT / "services" / "reviews").exists()


def test_the_default_port_is_the_next_after_the_highest() -> None:
    assert new_service.check("reviews", None, ["books"], load_services()) == 8004


def test_the_default_port_skips_the_infrastructure() -> None:
    services = {
        name: ServiceManifest(name, port, ROOT / "services" / name, name)
        for name, port in [("books", 8001), ("load", 8088)]
    }
    assert new_service.check("reviews", None, [], services) == 8090  # 8089 is locust's
    assert new_service.check("reviews", 8050, ["load"], services) == 8050


# -- a whole generation, in a copy of the repository ----------------------------------------------


def sh(*command: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def copy_repository(target: Path) -> None:
    """The working tree as git sees it: tracked files and new ones not ignored, changes included."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source, copy = ROOT / relative, target / relative
        if not source.is_symlink() and not source.is_file():
            continue  # deleted in the working tree, or a directory (a submodule)
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            copy.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, copy)


@pytest.mark.timeout(300)
def test_a_generated_service_passes_its_tests_and_the_lint(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        if running_in_ci():
            pytest.fail("uv is not on PATH")
        pytest.skip("uv is not on PATH")
    repository = tmp_path / "bookshop"
    copy_repository(repository)
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv"),  # not the repository's own .venv
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }
    env.pop("VIRTUAL_ENV", None)
    git = ("git", "-c", "commit.gpgsign=false")
    sh(*git, "init", "--quiet", cwd=repository, env=env)
    sh(*git, "add", "--all", cwd=repository, env=env)
    sh(*git, "commit", "--quiet", "--message", "the repository", cwd=repository, env=env)
    sh(uv, "sync", "--all-packages", "--locked", "--quiet", cwd=repository, env=env)
    run = (uv, "run", "--no-sync")

    started = time.monotonic()
    new = (*run, "python", "deploy/new_service.py")
    made = sh(*new, "reviews", "--depends", "books", cwd=repository, env=env)
    sh(*new, "gift-cards", cwd=repository, env=env)
    generated = time.monotonic()
    status = sh(*git, "status", "--porcelain", "--untracked-files=normal", cwd=repository, env=env)
    folders = ["services/reviews", "services/gift-cards"]
    pytest_run = (*run, "pytest", "-q", "-p", "no:cacheprovider")
    tests = sh(*pytest_run, *(f"{folder}/tests" for folder in folders), cwd=repository, env=env)
    tested = time.monotonic()
    sh(*run, "ruff", "check", *folders, cwd=repository, env=env)
    sh(*run, "ruff", "format", "--check", *folders, cwd=repository, env=env)
    sh(*run, "mypy", *(f"{f}/src" for f in folders), cwd=repository, env=env)
    linted = time.monotonic()
    print(
        f"\ngeneration {generated - started:.1f} s, tests {tested - generated:.1f} s, "
        f"lint {linted - tested:.1f} s: {linted - started:.1f} s from generation to a passing "
        f"run\n{tests.strip().splitlines()[-1]}"
    )

    assert "Made services/reviews/ (port 8004, depends on books)" in made
    assert sorted(status.splitlines()) == [
        " M uv.lock",
        "?? services/gift-cards/",
        "?? services/reviews/",
    ]
    assert " passed" in tests
    assert [service for service in load_services(repository / "services")] == [
        "gateway",
        "books",
        "shop",
        "chat",
        "reviews",
        "gift-cards",
    ]
    found_everywhere_it_runs(repository, env, tmp_path)

    # The answers it recorded render it again as it is (what `copier recopy` relies on).
    sh(*git, "add", "--all", cwd=repository, env=env)
    sh(*git, "commit", "--quiet", "--message", "two new services", cwd=repository, env=env)
    for folder in folders:
        recopy = (*run, "copier", "recopy", "--overwrite", "--defaults", "--quiet")
        sh(*recopy, folder, cwd=repository, env=env)
    sh(*run, "ruff", "format", "--quiet", *folders, cwd=repository, env=env)  # as make fmt
    sh(*run, "ruff", "check", "--fix", "--quiet", *folders, cwd=repository, env=env)
    assert sh(*git, "status", "--porcelain", cwd=repository, env=env) == ""


def found_everywhere_it_runs(repository: Path, env: dict[str, str], tmp_path: Path) -> None:
    """With no other edit, the new services are in compose (port, probe, dependency), in
    Prometheus' targets, in the Helm chart (Deployment, probes, Service) and in `make dev`,
    where they answer /health/ready and export their service_info."""
    run = ("uv", "run", "--no-sync")
    sh(*run, "python", "deploy/compose/generate.py", cwd=repository, env=env)
    generated = repository / "deploy" / "compose" / "generated"
    compose = yaml.safe_load((generated / "services.yaml").read_text())["services"]
    for name, port in [("reviews", 8004), ("gift-cards", 8005)]:
        assert compose[name]["ports"] == [f"${{BIND_ADDRESS:-127.0.0.1}}:{port}:8000"], name
        assert "/health/ready" in " ".join(compose[name]["healthcheck"]["test"]), name
        assert f"{name}-migrate" in compose
    assert compose["reviews"]["environment"]["DEPENDENCIES__BOOKS__BASE_URL"] == (
        "http://books:8000"
    )
    prometheus = yaml.safe_load((generated / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["reviews"]["static_configs"][0]["targets"] == ["reviews:8000"]
    assert "gift-cards" in jobs

    helm = find_helm()
    if helm is None:
        if running_in_ci():
            pytest.fail("helm is not installed (.ci/run builds it)")
        pytest.skip("helm is not installed: the chart part is not checked")
    chart = repository / "deploy" / "helm" / "bookshop"
    rendered = sh(helm, "template", "bookshop", str(chart), cwd=repository, env=env)
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    for name in ("reviews", "gift-cards"):
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live", name
        assert container["image"].startswith(f"bookshop-{name}:"), name
        assert name in services

    dev_stack = load_script(ROOT / "tests" / "docs" / "dev_stack.py", "dev_stack")
    ports = {name: free_port() for name in load_services(repository / "services")}
    ports["prometheus"] = free_port()
    stack = dev_stack.DevStack(
        dev_stack.stack_environment(tmp_path / "dev", **ports)
        | {"UV_PROJECT_ENVIRONMENT": env["UV_PROJECT_ENVIRONMENT"]},
        repository,
    )
    try:
        stack.wait_for(re.compile(r"make dev: ready in"), 120)
        for name in ("reviews", "gift-cards"):
            url = f"http://127.0.0.1:{ports[name]}"
            assert httpx.get(f"{url}/health/ready", timeout=5).status_code == 200, name
            metrics = httpx.get(f"{url}/metrics", timeout=5).text
            assert re.search(rf'^service_info{{[^}}]*service="{name}"', metrics, re.M), name
            assert f"{url}/ui/" in stack.output, "the banner lists it"
    finally:
        stack.stop()
