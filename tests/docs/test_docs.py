"""The README and docs/ say what is true: links, paths, make targets, settings, and the
contract's names and numbers are the code's. A fresh clone refers to nothing outside itself."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import service_registry
import yaml
from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from chassis import metrics
from chassis.testing import load_script

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
# What `make up` writes from the service folders (not in git): named by the docs all the same.
COMPOSE_GENERATE = load_script(ROOT / "deploy" / "compose" / "generate.py", "compose_generate")
BENCH_RESULTS = load_script(ROOT / "bench" / "results.py", "bench_results")
# Written by a command the docs describe (make up, make bench), not kept in the repository.
GENERATED = {
    path.relative_to(ROOT).as_posix()
    for path in (
        COMPOSE_GENERATE.SERVICES_FILE,
        COMPOSE_GENERATE.PROMETHEUS_FILE,
        BENCH_RESULTS.LATEST,
    )
}
DESIGN = ROOT / "docs" / "design.md"
README_MAX_LINES = 160


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.splitlines()


def test_the_project_refers_to_nothing_outside_its_clone() -> None:
    """Nothing points at the contract's old home outside the repository; it is cited as
    "design §N" (docs/design.md)."""
    shared = "shared"  # spelt apart, so that this file does not find itself
    design = "DESIGN"  # the old name of docs/design.md, cited in capitals before a §
    outside = re.compile(rf"\.\./{shared}|{shared}/{design}|{shared}/STYLE|\b{design}(\.md|\s*§)")
    found = [
        name
        for name in tracked_files()
        if name != "uv.lock"
        and (ROOT / name).is_file()
        and outside.search((ROOT / name).read_text(encoding="utf-8", errors="replace"))
    ]
    assert not found, f"references outside the repository in {found}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_no_placeholder_is_left(doc: Path) -> None:
    found = re.findall(r"\b(?:TODO|TBD|FIXME|XXX|TIME_[A-Z]+)\b", text(doc))
    assert not found, f"{doc.name} still holds {found}"


def test_the_readme_is_a_front_door() -> None:
    lines = text(ROOT / "README.md").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move depth to docs/"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_relative_link_resolves(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", text(doc)):
        if re.match(r"[a-z]+://", target):
            continue
        path = target.split("#", 1)[0]
        if path:
            assert (doc.parent / path).exists(), f"{doc.name}: broken link {target}"


MAKE = re.compile(r"(?:^|[\s;&|(])make ([a-z][a-z0-9-]*)", re.MULTILINE)


def code_of(markdown: str) -> list[str]:
    """Fenced blocks and inline code spans: where commands are."""
    fenced = re.findall(r"```[a-z]*\n(.*?)```", markdown, re.DOTALL)
    prose = re.sub(r"```[a-z]*\n.*?```", "", markdown, flags=re.DOTALL)
    return [*fenced, *re.findall(r"`([^`\n]+)`", prose)]


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text(ROOT / "Makefile"), re.MULTILINE))


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_make_target_named_exists(doc: Path) -> None:
    targets = makefile_targets()
    named = {target for code in code_of(text(doc)) for target in re.findall(MAKE, code)}
    assert named - targets == set(), f"{doc.name} names targets the Makefile lacks"


def test_every_target_a_user_runs_is_in_the_readme() -> None:
    readme = text(ROOT / "README.md")
    missing = {target for target in makefile_targets() - {"help"} if f"make {target}" not in readme}
    assert not missing, f"the README's table of targets misses {missing}"


REPO_PATH = re.compile(
    r"`((?:libs|services|deploy|observability|tests|bench|docs|\.ci)/[A-Za-z0-9_./*-]*)`"
)


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_repository_path_named_exists(doc: Path) -> None:
    for path in REPO_PATH.findall(text(doc)):
        if "<" in path or path in GENERATED:
            continue
        assert list(ROOT.glob(path.rstrip("/"))), f"{doc.name}: `{path}` does not exist"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_script_the_docs_run_exists(doc: Path) -> None:
    for script in re.findall(r"uv run (?:python|pytest|locust -f) ([\w./-]+)", text(doc)):
        assert (ROOT / script).exists(), f"{doc.name}: `{script}` does not exist"


# -- docs/configuration.md is every setting, with its default -------------------------------------


def leaves(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from leaves(annotation, f"{prefix}{name}.")
        elif name == "dependencies":
            dependency = model.model_fields["dependencies"].annotation.__args__[1]  # type: ignore[union-attr]
            yield from leaves(dependency, f"{prefix}dependencies.<name>.")
        else:
            default = field.default
            yield f"{prefix}{name}", ("required" if default is PydanticUndefined else default)


def shown(value: Any) -> str:
    """A default as the docs write it."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def documented_settings() -> dict[str, str]:
    rows = re.findall(
        r"^\| `([a-z_.<>]+)` \| `?([^`|]+?)`? \|", text(ROOT / "docs" / "configuration.md"), re.M
    )
    return dict(rows)


def test_the_configuration_reference_is_every_setting_with_its_default() -> None:
    code: dict[str, str] = {}
    for service in service_registry.python_services().values():  # every Python service
        model = service_registry.settings_class(service)
        code.update({key: shown(default) for key, default in leaves(model)})
    docs = documented_settings()
    assert sorted(set(code) - set(docs)) == [], "settings missing from docs/configuration.md"
    assert sorted(set(docs) - set(code)) == [], "docs/configuration.md lists unknown settings"
    wrong = {key: (docs[key], code[key]) for key in code if docs[key] != code[key]}
    assert wrong == {}, "defaults in docs/configuration.md differ (docs, code)"


# -- docs/design.md's names and numbers are the code's -------------------------------------------


def design_section(number: int) -> str:
    design = text(DESIGN)
    start = design.index(f"\n## {number}. ")
    end = design.find("\n## ", start + 1)
    return design[start : end if end > 0 else None]


def test_the_metric_names_and_labels_are_the_chassis_ones() -> None:
    section = design_section(5)
    rows = re.findall(r"^\| `([a-z_]+)` \| [^|]+ \| (.+) \|$", section, re.M)
    names = {name for name, _ in rows}
    assert names == set(metrics.NAMES)
    labels = {label for _, cell in rows for label in re.findall(r"`([a-z_]+)`", cell)}
    for label in (metrics.METHOD, metrics.ROUTE, metrics.STATUS, metrics.PEER, metrics.STATE):
        assert label in labels
    assert metrics.UNMATCHED_ROUTE in section
    buckets = re.search(r"Histogram buckets \(seconds\): ([0-9., \n]+)\.", section)
    assert buckets, "design §5 lists no buckets"
    listed = tuple(float(value) for value in re.findall(r"[0-9.]+", buckets.group(1)))
    assert listed == tuple(float(value) for value in metrics.DURATION_BUCKETS)


def test_the_ports_are_the_ones_everything_uses() -> None:
    section = design_section(8)
    ports = dict(
        re.findall(r"^\| ([a-z][a-z0-9-]*)(?: \([^|]*\))? \| 8000 \| (\d+) \|", section, re.M)
    )
    services = service_registry.load_services()
    assert ports, "design §8 lists no service ports"
    for name, port in ports.items():  # a service added later may be in its folder only
        assert name in services, f"design §8 lists {name}, which no folder under services/ is"
        assert services[name].port == int(port), f"{name}: design §8 and its service.yml"
    targets = yaml.safe_load(text(ROOT / "observability" / "prometheus" / "targets.yml"))
    assert targets["container_port"] == 8000


def test_the_order_statuses_are_shops() -> None:
    spec = yaml.safe_load(text(ROOT / "services" / "shop" / "src" / "shop" / "openapi.yaml"))
    found = [
        schema["enum"]
        for schema in spec["components"]["schemas"].values()
        if isinstance(schema, dict) and "enum" in schema and "confirmed" in schema["enum"]
    ]
    assert len(found) == 1
    section = design_section(3)
    for status in found[0]:
        assert f"`{status}`" in section, f"design §3 does not name the status {status}"


def test_the_chassis_endpoints_are_the_contracts() -> None:
    from chassis import endpoints
    from chassis.middleware import faults

    section = design_section(4)
    for path in (*endpoints.PATHS, faults.ADMIN_PATH):
        assert f" {path}`" in section, f"design §4 does not list {path}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_code_quoted_from_a_file_is_that_files_code(doc: Path) -> None:
    """A ```python block whose parts start with `# <path>` quotes that file: each line of a
    part must still be in it."""
    for block in re.findall(r"```python\n(.*?)```", text(doc), re.DOTALL):
        for part in re.split(r"^(?=# [\w./-]+\.py\b)", block, flags=re.MULTILINE):
            header = re.match(r"# ([\w./-]+\.py)", part)
            if not header:
                continue
            source = {line.strip() for line in text(ROOT / header.group(1)).splitlines()}
            for line in part.splitlines()[1:]:
                assert not line.strip() or line.strip() in source, (
                    f"{doc.name} quotes {header.group(1)} with a line it lacks: {line.strip()}"
                )
