"""The ``books`` command line as compose and ``make dev`` run it: real subprocesses.

The console script next to this interpreter is what ``uv run books`` executes; calling it
directly keeps uv from re-syncing the environment while the tests run.
"""

from __future__ import annotations

import subprocess

import pytest
from sqlalchemy import create_engine, make_url, pool, select
from sqlalchemy.orm import Session

from books import persistence
from books.cli import cli
from books.seed import CATALOGUE
from chassis.testing import clean_environment, console_script

BOOKS = console_script("books")
TIMEOUT = 60
PASSWORD = "hunter2-do-not-print"


class Run:
    """One ``books`` command, started at once; ``result()`` waits for it."""

    def __init__(self, *arguments, cwd, **variables):
        self.process = subprocess.Popen(
            [str(BOOKS), *arguments],
            cwd=cwd,
            env=clean_environment(**variables),  # nothing of the machine's settings
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.status = None

    def result(self):
        if self.status is None:
            try:
                self.stdout, self.stderr = self.process.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.stdout, self.stderr = self.process.communicate()
            self.status = self.process.returncode
        return self


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every command of this module, run side by side (each start costs seconds of imports):
    ``books serve`` under two bad configurations, and ``books migrate`` then ``books seed``."""
    folder = tmp_path_factory.mktemp("cli")
    url = f"sqlite:///{folder / 'books.db'}"
    bad_pool_url = f"postgresql+psycopg2://books:{PASSWORD}@127.0.0.1:1/books"
    started = {
        "bad-port": Run("serve", cwd=folder, HTTP__PORT="eighty-eighty"),
        "bad-pool": Run("serve", cwd=folder, DATABASE_URL=bad_pool_url, DATABASE__POOL_SIZE="-1"),
    }
    migrated = Run("migrate", cwd=folder, DATABASE_URL=url).result()
    seeded = Run("seed", cwd=folder, DATABASE_URL=url).result()
    return {
        "url": url,
        "migrate": migrated,
        "seed": seeded,
        **{case: run.result() for case, run in started.items()},
    }


def test_the_console_script_is_installed():
    assert BOOKS.is_file(), f"{BOOKS} missing: run uv sync"


def test_migrate_then_seed(runs):
    migrated, seeded = runs["migrate"], runs["seed"]

    assert migrated.status == 0, migrated.stderr
    assert seeded.status == 0, seeded.stderr
    assert '"revision":"0002"' in migrated.stdout
    assert f'"added":{len(CATALOGUE)}' in seeded.stdout
    engine = create_engine(runs["url"], poolclass=pool.NullPool)
    with Session(engine) as session:
        assert persistence.count_books(session) == len(CATALOGUE)
    engine.dispose()


def test_a_bad_port_stops_serve_naming_the_key_not_the_value(runs):
    run = runs["bad-port"]

    assert run.status != 0
    assert "http.port" in run.stderr
    assert "eighty-eighty" not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr


def test_a_bad_database_setting_never_prints_the_database_url(runs):
    run = runs["bad-pool"]

    assert run.status != 0
    assert "database.pool_size" in run.stderr
    assert PASSWORD not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.postgres
def test_migrate_accepts_a_plain_postgresql_url(postgres_url, monkeypatch):
    # In-process: the same ServiceCli.main the console script calls, without the start-up cost.
    plain = make_url(postgres_url).set(drivername="postgresql")
    monkeypatch.setenv("DATABASE_URL", plain.render_as_string(hide_password=False))

    assert cli.main(["migrate"]) == 0
    engine = create_engine(postgres_url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        assert connection.execute(select(persistence.books.c.id)).all() == []
    engine.dispose()
