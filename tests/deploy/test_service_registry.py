"""One list of services: the folders under services/ (deploy/service_registry.py), and every place
that runs them all finds them there. A folder some place does not know fails here or in that
place's own tests (compose's and the chart's iterate over the same list)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import service_registry
import yaml
from deploy_support import GENERATE, ROOT
from service_registry import ServiceManifestError, load_services, python_services

from chassis.testing import load_script

SERVICES_DIR = ROOT / "services"
RUNNER = ROOT / "deploy" / "dev" / "run.py"
PROMETHEUS = load_script(ROOT / "observability" / "prometheus" / "render.py", "prometheus_render")


def dev_runner() -> ModuleType:
    return load_script(RUNNER, "bookshop_dev_run")


def test_every_service_folder_is_in_the_registry() -> None:
    folders = {path.name for path in SERVICES_DIR.iterdir() if path.is_dir()}
    assert set(load_services()) == folders, "every folder under services/ needs a service.yml"


def test_the_registry_knows_what_each_service_needs() -> None:
    services = load_services()
    assert list(services) == ["gateway", "books", "shop", "chat"]  # by port, design §8
    assert services["gateway"].language == "go"
    assert services["gateway"].dependencies == ("books", "chat", "shop")
    assert services["gateway"].home == "/"
    assert list(python_services()) == ["books", "shop", "chat"]
    assert services["shop"].dependencies == ("books", "chat")
    assert services["shop"].credentials == {"books": ("stock:reserve",)}
    assert services["chat"].dependencies == ("books",)
    assert services["books"].config_dir == SERVICES_DIR / "books" / "src" / "books"


@pytest.mark.parametrize(("target", "per_service"), [("check", "tests"), ("lint", "src")])
def test_the_makefile_checks_every_service(target: str, per_service: str) -> None:
    planned = subprocess.run(
        ["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for name in python_services():
        assert f"services/{name}/{per_service}" in planned, f"make {target} skips {name}"


def test_make_check_runs_every_go_service_checks() -> None:
    def make_variable(name: str) -> list[str]:
        return subprocess.run(
            ["make", "-s", f"--eval=print-it: ; @echo $({name})", "print-it"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip

    go_services = [name for name, s in load_services().items() if s.language == "go"]
    assert sorted(make_variable("GO_SERVICE_NAMES")) == sorted(go_services) == ["gateway"]
    assert sorted(make_variable("SERVICE_NAMES")) == sorted(python_services())
    planned = subprocess.run(
        ["make", "-n", "go-check"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for step in ("gofmt -l", "go vet ./...", "go test -race", "./..."):
        assert step in planned, step


def test_make_dev_runs_every_service_with_its_dependencies_and_credentials() -> None:
    procfile = dev_runner().procfile_text()
    lines = {line.split(":", 1)[0]: line for line in procfile.splitlines() if ": " in line}
    for name, service in load_services().items():
        line = lines[name]
        program = name if service.language == "python" else str(service.folder / name)
        assert f"exec {program} serve" in line
        assert f'--port "${name.upper()}_PORT"' in line
        assert ("DATABASE_URL=" in line) is (service.language == "python"), line
        for dependency in service.dependencies:
            assert (
                f'DEPENDENCIES__{dependency.upper()}__BASE_URL="${dependency.upper()}_URL"' in line
            )
        for dependency in service.credentials:
            assert f"DEPENDENCIES__{dependency.upper()}__TOKEN_FILE=" in line
    assert "prometheus" in lines


def test_make_dev_builds_and_runs_the_go_gateway_or_says_why_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = dev_runner()
    assert runner.GO_SERVICES == ("gateway",)
    monkeypatch.setattr(runner.shutil, "which", lambda tool: None if tool == "go" else tool)
    assert "no `go` on PATH" in (runner.build_go_services() or "")
    monkeypatch.undo()
    binary = Path(runner.go_binary(load_services()["gateway"]))
    binary.unlink(missing_ok=True)
    assert runner.build_go_services() is None
    assert binary.is_file()
    assert "gateway" in runner.service_ports()


def test_prometheus_scrapes_every_service() -> None:
    config = yaml.safe_load(PROMETHEUS.render("compose"))
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert set(python_services()) <= jobs


# -- a new folder, in a copy of services/ -----------------------------------------------------


def add_service(
    services_dir: Path,
    name: str,
    *,
    port: int,
    dependencies: tuple[str, ...] = (),
    **manifest: object,
) -> None:
    package = services_dir / name / "src" / name.replace("-", "_")
    package.mkdir(parents=True)
    config: dict[str, object] = {"service": {"name": name}}
    if dependencies:
        config["dependencies"] = {d: {"base_url": "http://127.0.0.1:1"} for d in dependencies}
    (package / "config.yml").write_text(yaml.safe_dump(config))
    (services_dir / name / "service.yml").write_text(yaml.safe_dump({"port": port, **manifest}))


@pytest.fixture
def services_copy(tmp_path: Path) -> Path:
    for name, service in python_services().items():
        add_service(tmp_path, name, port=service.port, dependencies=service.dependencies)
    return tmp_path


def test_a_new_folder_joins_the_compose_stack_and_prometheus(services_copy: Path) -> None:
    add_service(
        services_copy,
        "gift-cards",
        port=8004,
        dependencies=("books",),
        credentials={"books": ["stock:reserve", "catalog:write"]},
    )
    services = load_services(services_copy)
    generated = GENERATE.services_file(services)["services"]
    service, migration = generated["gift-cards"], generated["gift-cards-migrate"]
    assert service["image"] == migration["image"] == "bookshop-gift-cards:${IMAGE_TAG:-dev}"
    assert service["build"]["args"]["SERVICE"] == "gift-cards"
    assert service["ports"] == ["${BIND_ADDRESS:-127.0.0.1}:8004:8000"]
    assert service["environment"]["DEPENDENCIES__BOOKS__BASE_URL"] == "http://books:8000"
    token_file = "/run/auth/shared/gift-cards-books.jwt"
    assert service["environment"]["DEPENDENCIES__BOOKS__TOKEN_FILE"] == token_file
    assert "auth:/run/auth/shared:ro" in service["volumes"]
    assert (
        "gift-cards books stock:reserve catalog:write\n"
        in (generated["auth-init"]["environment"]["SERVICE_TOKENS"])
    )
    assert generated["postgres"]["environment"]["SERVICE_DATABASES"].split()[-1] == "gift-cards"
    # the migrations run one after another, the new one last
    assert migration["depends_on"]["chat-migrate"] == {
        "condition": "service_completed_successfully"
    }
    config = yaml.safe_load(PROMETHEUS.render("compose", registry=services))
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "gift-cards"]
    assert job["static_configs"][0]["targets"] == ["gift-cards:8000"]


def test_a_new_folder_joins_the_dev_stack_with_its_token(services_copy: Path) -> None:
    add_service(
        services_copy,
        "gift-cards",
        port=8004,
        dependencies=("books",),
        credentials={"books": ["stock:reserve"]},
    )
    services = load_services(services_copy)
    assert list(services)[-1] == "gift-cards"
    procfile = dev_runner().procfile_text(services)
    line = next(line for line in procfile.splitlines() if line.startswith("gift-cards:"))
    assert 'DEPENDENCIES__BOOKS__TOKEN_FILE="$GIFT_CARDS_BOOKS_TOKEN_FILE"' in line
    assert 'exec gift-cards serve --host 127.0.0.1 --port "$GIFT_CARDS_PORT"' in line


@pytest.mark.parametrize(
    ("name", "manifest", "dependencies", "message"),
    [
        ("reviews", {"port": 8001}, (), "reviews and books both declare port 8001"),
        ("reviews", {"port": 80}, (), "port must be a number from 1024 to 65535"),
        ("reviews", {"port": "8004"}, (), "port must be a number"),
        ("Reviews", {"port": 8004}, (), "folder name must be like reviews or gift-cards"),
        ("reviews", {"port": 8004}, ("ratings",), "depends on ['ratings'], which no folder"),
        ("reviews", {"port": 8004, "home": "ui"}, (), "home must be a path such as /ui/"),
        ("reviews", {"port": 8004, "language": "rust"}, (), "language must be one of python, go"),
        ("reviews", {"port": 8004, "language": "go"}, (), "go.mod is missing (language: go)"),
        (
            "reviews",
            {"port": 8004, "credentials": {"shop": ["x"]}},
            ("books",),
            "credentials for ['shop'], which",
        ),
    ],
)
def test_an_inconsistent_folder_is_refused_with_its_reason(
    services_copy: Path,
    name: str,
    manifest: dict[str, object],
    dependencies: tuple[str, ...],
    message: str,
) -> None:
    add_service(services_copy, name, dependencies=dependencies, **manifest)  # type: ignore[arg-type]
    with pytest.raises(ServiceManifestError, match=re.escape(message)):
        load_services(services_copy)


def test_a_go_service_lists_its_dependencies_in_its_service_yml(services_copy: Path) -> None:
    folder = services_copy / "edge"
    folder.mkdir()
    (folder / "go.mod").write_text("module example.com/edge\n")
    manifest = {"language": "go", "port": 8005, "dependencies": ["shop", "books"]}
    (folder / "service.yml").write_text(yaml.safe_dump(manifest))
    edge = load_services(services_copy)["edge"]
    assert (edge.language, edge.dependencies) == ("go", ("books", "shop"))
    assert "edge" not in python_services(services_copy)

    add_service(services_copy, "reviews", port=8006, dependencies=("edge",))
    with pytest.raises(ServiceManifestError, match="may depend on Python services only"):
        load_services(services_copy)
    shutil.rmtree(services_copy / "reviews")

    (folder / "service.yml").write_text(yaml.safe_dump({**manifest, "dependencies": "books"}))
    with pytest.raises(ServiceManifestError, match="dependencies must be a list of names"):
        load_services(services_copy)
    (folder / "service.yml").write_text(yaml.safe_dump({**manifest, "dependencies": ["ratings"]}))
    with pytest.raises(ServiceManifestError, match=re.escape("depends on ['ratings']")):
        load_services(services_copy)


def test_a_config_naming_another_service_is_refused(services_copy: Path) -> None:
    add_service(services_copy, "reviews", port=8004)
    (services_copy / "reviews" / "src" / "reviews" / "config.yml").write_text(
        "service: {name: books}\n"
    )
    with pytest.raises(ServiceManifestError, match=r"service\.name must be 'reviews'"):
        load_services(services_copy)


def test_the_command_line_lists_the_names() -> None:
    listed = subprocess.run(
        [sys.executable, str(Path(service_registry.__file__)), "--names"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed == list(load_services())
    python_only = subprocess.run(
        [sys.executable, str(Path(service_registry.__file__)), "--names", "--language", "python"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert python_only == list(python_services())
