from pathlib import Path

import pytest
from pydantic import Field

from chassis import ConfigError, DependencySection, Section, Settings, load_settings

SECRET = "hunter2-Sup3rS3cret"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    write(
        tmp_path / "config.yml",
        """
service: {name: svc, version: 1.0.0}
http: {port: 8100, host: 0.0.0.0}
logging: {level: debug}
database: {url: "sqlite:///./from-yaml.db", pool_size: 3}
dependencies:
  books: {base_url: "http://books-yaml:8000", read_timeout_seconds: 4}
""",
    )
    write(tmp_path / "config.production.yml", "http: {port: 8200}\nlogging: {level: warning}\n")
    return tmp_path


def test_defaults_apply_when_no_source_sets_a_key(tmp_path: Path) -> None:
    write(tmp_path / "config.yml", "service: {name: svc}\n")

    settings = load_settings(Settings, tmp_path, environ={})

    assert settings.service.name == "svc"
    assert settings.environment == "development"
    assert settings.http.port == 8000
    assert settings.logging.format == "json"
    assert settings.database.url.get_secret_value() == "sqlite:///./service.db"
    assert settings.health.check_timeout_seconds == 2.0
    assert settings.dependencies == {}


def test_config_yml_overrides_the_defaults(config_dir: Path) -> None:
    settings = load_settings(Settings, config_dir, environ={})

    assert settings.http.port == 8100
    assert settings.http.host == "0.0.0.0"
    assert settings.http.max_body_bytes == 64 * 1024  # sibling keys keep their defaults
    assert settings.database.pool_size == 3
    assert settings.dependencies["books"].read_timeout_seconds == 4
    assert settings.dependencies["books"].connect_timeout_seconds == 0.5


def test_profile_file_overrides_config_yml_and_names_the_environment(config_dir: Path) -> None:
    settings = load_settings(Settings, config_dir, environ={"ENVIRONMENT": "production"})

    assert settings.environment == "production"
    assert settings.http.port == 8200
    assert settings.http.host == "0.0.0.0"  # merged, not replaced
    assert settings.logging.level == "warning"


def test_environment_overrides_the_profile_file(config_dir: Path) -> None:
    environ = {"ENVIRONMENT": "production", "HTTP__PORT": "8300", "LOGGING__LEVEL": "error"}

    settings = load_settings(Settings, config_dir, environ=environ)

    assert settings.http.port == 8300
    assert settings.logging.level == "error"
    assert settings.http.host == "0.0.0.0"


def test_nested_environment_keys_build_a_dependency(config_dir: Path) -> None:
    environ = {
        "DEPENDENCIES__BOOKS__BASE_URL": "http://books:8000",
        "DEPENDENCIES__CHAT__BASE_URL": "http://chat:8000",
        "DEPENDENCIES__CHAT__CRITICAL": "true",
    }

    settings = load_settings(Settings, config_dir, environ=environ)

    books = settings.dependencies["books"]
    assert isinstance(books, DependencySection)
    assert books.base_url == "http://books:8000"
    assert books.read_timeout_seconds == 4  # the rest of the YAML entry survives
    assert settings.dependencies["chat"].base_url == "http://chat:8000"
    assert settings.dependencies["chat"].critical is True


def test_a_variable_sets_a_dependency_whose_name_has_a_hyphen(tmp_path: Path) -> None:
    """A variable cannot spell "-": GIFT_CARDS is the gift-cards the config file declares."""
    write(
        tmp_path / "config.yml",
        "service: {name: shop}\ndependencies:\n  gift-cards: {base_url: 'http://x:1'}\n",
    )
    environ = {
        "DEPENDENCIES__GIFT_CARDS__BASE_URL": "http://gift-cards:8000",
        "DEPENDENCIES__NEW_ONE__BASE_URL": "http://new:8000",
    }

    settings = load_settings(Settings, tmp_path, environ=environ)

    assert settings.dependencies["gift-cards"].base_url == "http://gift-cards:8000"
    assert "gift_cards" not in settings.dependencies
    assert settings.dependencies["new_one"].base_url == "http://new:8000"  # none to match


def test_secret_file_overrides_the_plain_variable(config_dir: Path, tmp_path: Path) -> None:
    secret = write(tmp_path / "port", "8400\n")
    environ = {"HTTP__PORT": "8300", "HTTP__PORT_FILE": str(secret)}

    settings = load_settings(Settings, config_dir, environ=environ)

    assert settings.http.port == 8400


def test_database_url_sets_the_database_url(config_dir: Path) -> None:
    url = f"postgresql+psycopg2://app:{SECRET}@db:5432/app"

    settings = load_settings(Settings, config_dir, environ={"DATABASE_URL": url})

    assert settings.database.url.get_secret_value() == url
    assert SECRET not in repr(settings)
    assert settings.database.pool_size == 3


def test_database_url_file_wins_over_database_url(config_dir: Path, tmp_path: Path) -> None:
    url = f"postgresql+psycopg2://app:{SECRET}@db:5432/app"
    secret = write(tmp_path / "database-url", url + "\n")
    environ = {"DATABASE_URL": "sqlite:///./plain.db", "DATABASE_URL_FILE": str(secret)}

    settings = load_settings(Settings, config_dir, environ=environ)

    assert settings.database.url.get_secret_value() == url  # stripped of the newline


def test_unrelated_variables_are_ignored(config_dir: Path) -> None:
    environ = {"PATH": "/bin", "HOME": "/root", "HTTP_PROXY": "http://proxy", "NO__SUCH": "1"}

    settings = load_settings(Settings, config_dir, environ=environ)

    assert settings.http.port == 8100


def test_a_bare_variable_named_like_a_section_is_ignored(config_dir: Path) -> None:
    # Images and CI set SERVICE=..., HTTP=..., LOGGING=... for their own reasons.
    environ = {"SERVICE": "books", "HTTP": "on", "DEPENDENCIES": "x", "ENVIRONMENT": "staging"}
    (config_dir / "config.staging.yml").write_text("{}\n")

    settings = load_settings(Settings, config_dir, environ=environ)

    assert settings.http.port == 8100
    assert settings.environment == "staging"  # a scalar top-level key still reads its variable


def test_unknown_yaml_key_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "config.yml", "service: {name: svc}\nhttp: {prot: 8000}\n")

    with pytest.raises(ConfigError) as error:
        load_settings(Settings, tmp_path, environ={})

    assert "http.prot" in str(error.value)


def test_unknown_environment_key_inside_a_section_is_refused(config_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"http\.prot \(env HTTP__PROT\)"):
        load_settings(Settings, config_dir, environ={"HTTP__PROT": "1"})


def test_bad_type_names_the_key_and_variable_but_never_the_value(config_dir: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(Settings, config_dir, environ={"HTTP__PORT": SECRET})

    message = str(error.value)
    assert "http.port" in message
    assert "HTTP__PORT" in message
    assert "integer" in message
    assert SECRET not in message
    assert error.value.__cause__ is None
    assert error.value.__suppress_context__


def test_every_bad_key_is_reported(config_dir: Path) -> None:
    environ = {"HTTP__PORT": "70000", "LOGGING__FORMAT": "xml", "SHUTDOWN__GRACE_SECONDS": "0"}

    with pytest.raises(ConfigError) as error:
        load_settings(Settings, config_dir, environ=environ)

    for key in ("http.port", "logging.format", "shutdown.grace_seconds"):
        assert key in str(error.value)


def test_missing_service_name_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"service \(env SERVICE\)"):
        load_settings(Settings, tmp_path, environ={})


def test_missing_profile_file_is_an_error(config_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.staging\.yml"):
        load_settings(Settings, config_dir, environ={"ENVIRONMENT": "staging"})


def test_invalid_yaml_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "config.yml", "service: [unclosed\n")

    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(Settings, tmp_path, environ={})


def test_yaml_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "config.yml", "- a\n- b\n")

    with pytest.raises(ConfigError, match="mapping"):
        load_settings(Settings, tmp_path, environ={})


def test_unreadable_secret_file_names_the_key(config_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret"

    with pytest.raises(ConfigError) as error:
        load_settings(Settings, config_dir, environ={"DATABASE_URL_FILE": str(missing)})

    assert str(error.value).startswith("database.url:")
    assert str(missing) in str(error.value)


def test_settings_are_frozen(config_dir: Path) -> None:
    settings = load_settings(Settings, config_dir, environ={})

    with pytest.raises(ValueError, match="frozen"):
        settings.http.port = 1  # type: ignore[misc]


class FeatureSection(Section):
    flag: bool = False
    ratio: float = Field(default=0.5, ge=0, le=1)


class ServiceSettings(Settings):
    feature: FeatureSection = FeatureSection()


def test_a_settings_subclass_reads_its_own_section(config_dir: Path) -> None:
    write(config_dir / "config.yml", "service: {name: svc}\nfeature: {ratio: 0.25}\n")

    settings = load_settings(ServiceSettings, config_dir, environ={"FEATURE__FLAG": "true"})

    assert settings.feature == FeatureSection(flag=True, ratio=0.25)
    assert settings.http.port == 8000


def test_a_settings_subclass_validates_its_own_section(config_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"feature\.ratio \(env FEATURE__RATIO\)"):
        load_settings(ServiceSettings, config_dir, environ={"FEATURE__RATIO": "2"})


def test_the_base_class_does_not_know_a_subclass_section(config_dir: Path) -> None:
    settings = load_settings(Settings, config_dir, environ={"FEATURE__FLAG": "true"})

    assert not hasattr(settings, "feature")


def test_load_settings_reads_the_process_environment_by_default(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP__PORT", "8500")

    assert load_settings(Settings, config_dir).http.port == 8500


def test_a_yaml_error_names_the_place_but_never_echoes_the_line(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text(
        "service:\n  name: svc\ndatabase:\n  url: postgresql://app:S3cretPw@db/books: x\n"
    )

    with pytest.raises(ConfigError) as raised:
        load_settings(Settings, tmp_path, environ={})

    assert "line 4" in str(raised.value)
    assert "S3cretPw" not in str(raised.value)
