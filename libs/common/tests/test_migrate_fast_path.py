"""`<service> migrate` on an up-to-date database answers without Alembic, and the one-shot
commands do not load the web stack (chassis.migrations.is_up_to_date, chassis/__init__'s lazy
names, ServiceCli's "module:function" targets)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from chassis import migrations
from chassis.cli import resolve

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ROOT / "services"


def alembic_head(migrations_dir: Path) -> str | None:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    return ScriptDirectory.from_config(config).get_current_head()


@pytest.mark.parametrize("service", ["books", "shop", "chat"])
def test_the_head_read_from_the_files_is_alembics(service: str) -> None:
    directory = SERVICES / service / "src" / service / "migrations"
    assert migrations.head_revision(directory) == alembic_head(directory)


def _version(folder: Path, revision: str, parent: str | None, extra: str = "") -> None:
    (folder / "versions").mkdir(parents=True, exist_ok=True)
    (folder / "versions" / f"{revision}.py").write_text(
        f'revision = "{revision}"\ndown_revision = {parent!r}\n{extra}'
    )


def test_anything_but_a_single_line_is_left_to_alembic(tmp_path: Path) -> None:
    line = tmp_path / "line"
    _version(line, "a", None)
    _version(line, "b", "a")
    assert migrations.head_revision(line) == "b"
    branches = tmp_path / "branches"
    _version(branches, "a", None)
    _version(branches, "b", "a")
    _version(branches, "c", "a")
    assert migrations.head_revision(branches) is None
    merge = tmp_path / "merge"
    _version(merge, "a", None)
    (merge / "versions" / "m.py").write_text('revision = "m"\ndown_revision = ("a", "b")\n')
    assert migrations.head_revision(merge) is None
    labelled = tmp_path / "labelled"
    _version(labelled, "a", None, 'branch_labels = ("x",)\n')
    assert migrations.head_revision(labelled) is None
    broken = tmp_path / "broken"
    _version(broken, "a", None)
    (broken / "versions" / "b.py").write_text("revision = (\n")
    assert migrations.head_revision(broken) is None
    computed = tmp_path / "computed"
    _version(computed, "a", None)
    (computed / "versions" / "b.py").write_text('revision = "b" + "c"\ndown_revision = "a"\n')
    assert migrations.head_revision(computed) is None


def test_annotated_revisions_are_read(tmp_path: Path) -> None:
    """Alembic's own script template writes ``revision: str = ...``."""
    (tmp_path / "versions").mkdir()
    (tmp_path / "versions" / "a.py").write_text(
        'revision: str = "a"\ndown_revision: str | None = None\n'
    )
    (tmp_path / "versions" / "b.py").write_text(
        'revision: str = "b"\ndown_revision: str | None = "a"\nbranch_labels: tuple = ()\n'
    )
    assert migrations.head_revision(tmp_path) == "b"


def test_up_to_date_only_at_the_head(tmp_path: Path) -> None:
    directory = SERVICES / "books" / "src" / "books" / "migrations"
    url = f"sqlite:///{tmp_path / 'books.db'}"
    assert not migrations.is_up_to_date(directory, url), "no alembic_version table yet"
    migrations.upgrade(directory, url, "0001")
    assert not migrations.is_up_to_date(directory, url)
    migrations.upgrade(directory, url)
    assert migrations.is_up_to_date(directory, url)


def run_books(tmp_path: Path, *arguments: str) -> list[str]:
    """`books <arguments>` in a fresh interpreter; the heavy packages it imported."""
    program = (
        "import sys\n"
        "from books.cli import cli\n"
        f"code = cli.main({list(arguments)!r})\n"
        "heavy = ['alembic', 'connexion', 'uvicorn', 'starlette', 'httpx', 'opentelemetry.sdk']\n"
        "print(' '.join(name for name in heavy if name in sys.modules))\n"
        "sys.exit(code)\n"
    )
    environment = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'books.db'}",
        "LOGGING__LEVEL": "WARNING",
    }
    result = subprocess.run(
        [sys.executable, "-c", program], env=environment, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_migrate_loads_alembic_only_when_there_is_something_to_apply(tmp_path: Path) -> None:
    assert run_books(tmp_path, "migrate") == ["alembic"], "a new database: alembic migrates it"
    assert run_books(tmp_path, "migrate") == [], "up to date: neither alembic nor the web stack"
    assert run_books(tmp_path, "seed") == [], "seed: the database layer, not the web stack"


@pytest.mark.parametrize("service", ["books", "shop", "chat"])
def test_every_service_command_target_resolves(service: str) -> None:
    """The "module:function" strings a service's ServiceCli names are checked only when the
    command runs: each must name a function."""
    cli = importlib.import_module(f"{service}.cli").cli
    targets = [cli.create_service, cli.seed] if cli.seed is not None else [cli.create_service]
    for target in targets:
        assert isinstance(target, str), f"{service}: import {target!r} lazily, by name"
        assert callable(resolve(target)), f"{service}: {target} is not a function"
