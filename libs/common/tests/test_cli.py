from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from chassis import ConfigError, Service, ServiceCli, Settings
from chassis import server as chassis_server
from chassis.testing import hermetic_settings


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def seed_two(session: Session) -> int:
    session.execute(sa.text("INSERT INTO item (name) VALUES ('a'), ('b')"))
    return 2


@pytest.fixture
def make_cli(tiny: ModuleType, database_url: str) -> Callable[..., ServiceCli[Any]]:
    def make(
        load: Callable[[], Settings] | None = None,
        seed: Callable[[Session], int] | None = seed_two,
    ) -> ServiceCli[Any]:
        def load_settings() -> Settings:
            return hermetic_settings(tiny.TinySettings, tiny.SERVICE_DIR, database_url=database_url)

        return ServiceCli(
            name="tiny",
            load_settings=load or load_settings,
            create_service=tiny.create_service,
            migrations=tiny.SERVICE_DIR / "migrations",
            seed=seed,
        )

    return make


def test_migrate_applies_the_migrations_and_downgrade_reverts_them(
    make_cli: Callable[..., ServiceCli[Any]], database_url: str
) -> None:
    cli = make_cli()

    assert cli.main(["migrate"]) == 0
    assert {"item", "alembic_version"} <= table_names(database_url)
    assert cli.main(["migrate"]) == 0  # applying again is a no-op

    assert cli.main(["migrate", "--downgrade", "--revision", "base"]) == 0
    assert "item" not in table_names(database_url)


def test_seed_loads_data_in_one_committed_transaction(
    make_cli: Callable[..., ServiceCli[Any]], database_url: str
) -> None:
    cli = make_cli()
    cli.main(["migrate"])

    assert cli.main(["seed"]) == 0

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM item")).scalar() == 2
    finally:
        engine.dispose()


def test_seed_without_a_seed_function_does_nothing(
    make_cli: Callable[..., ServiceCli[Any]],
) -> None:
    assert make_cli(seed=None).main(["seed"]) == 0


@pytest.mark.parametrize(
    ("argv", "host", "port"),
    [(["serve"], None, None), (["serve", "--host", "0.0.0.0", "--port", "9000"], "0.0.0.0", 9000)],
)
def test_serve_builds_the_service_and_serves_it(
    make_cli: Callable[..., ServiceCli[Any]],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    host: str | None,
    port: int | None,
) -> None:
    served: list[tuple[Service, str | None, int | None]] = []

    def fake_serve(service: Service, *, host: str | None = None, port: int | None = None) -> None:
        served.append((service, host, port))
        service.close()

    monkeypatch.setattr(chassis_server, "serve", fake_serve)

    assert make_cli().main(argv) == 0

    ((service, served_host, served_port),) = served
    assert isinstance(service, Service)
    assert service.name == "tiny"
    assert (served_host, served_port) == (host, port)


@pytest.mark.parametrize(
    "argv", [[], ["unknown"], ["serve", "--port", "eighty"], ["migrate", "--nope"]]
)
def test_bad_arguments_exit_with_usage(
    make_cli: Callable[..., ServiceCli[Any]], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        make_cli().main(argv)

    assert exit_.value.code == 2
    assert "usage: tiny" in capsys.readouterr().err


def test_a_config_error_is_printed_and_exits_2(
    make_cli: Callable[..., ServiceCli[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> Settings:
        raise ConfigError("invalid configuration:\n  http.port (env HTTP__PORT): not an int")

    code = make_cli(load=broken).main(["serve"])

    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("tiny: invalid configuration:")
    assert "http.port (env HTTP__PORT)" in err
    assert "Traceback" not in err


def test_a_real_config_error_from_the_environment_exits_2(
    make_cli: Callable[..., ServiceCli[Any]],
    tiny: ModuleType,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def from_environment() -> Settings:
        environ = {"HTTP__PORT": "s3cret-value"}
        return hermetic_settings(tiny.TinySettings, tiny.SERVICE_DIR, environ=environ)

    assert make_cli(load=from_environment).main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert "http.port" in err
    assert "s3cret-value" not in err
