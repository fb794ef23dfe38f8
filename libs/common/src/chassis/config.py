"""Typed, layered configuration (design §6).

Sources, in rising precedence:

    chassis defaults (the model)
    < config.yml in the service folder
    < config.<ENVIRONMENT>.yml (the profile chosen by the ENVIRONMENT variable)
    < environment variables (nested keys joined by ``__``, e.g. DATABASE__POOL_SIZE)
    < ``*_FILE`` variables naming a file that holds the value (docker/k8s secrets)

``DATABASE_URL`` (and ``DATABASE_URL_FILE``) set ``database.url``. A bad value stops start-up
with a :class:`ConfigError` naming the key and what was expected, never echoing the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

PROFILE_VARIABLE = "ENVIRONMENT"
CONFIG_FILE = "config.yml"
NESTING = "__"
FILE_SUFFIX = "_FILE"
ALIASES = {"DATABASE_URL": ("database", "url")}
# The `iss` of chassis.dev_issuer's tokens, which auth.issuer accepts unless set otherwise.
DEV_ISSUER = "bookshop-dev"


class ConfigError(Exception):
    """The configuration is invalid; the message names every bad key."""


class Section(BaseModel):
    """Base of every settings section: unknown keys are typos, so they are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceSection(Section):
    name: str = Field(min_length=1)
    version: str = "0.0.0"
    namespace: str = "bookshop"


class HttpSection(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    # Deeper JSON is a 400 before any parser recurses into it (Python's own limit is ~1000).
    max_json_depth: int = Field(default=64, ge=2, le=500)
    validate_responses: bool = False
    # Worker threads for plain `def` handlers; default: database.pool_size.
    handler_threads: int | None = Field(default=None, ge=1, le=512)
    # The connection guard (chassis.http_guard): limits a client cannot talk its way past.
    max_header_line_bytes: int = Field(default=16 * 1024, ge=1024)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)


class LoggingSection(Section):
    level: str = Field(default="INFO", pattern=r"(?i)^(debug|info|warning|error|critical)$")
    format: str = Field(default="json", pattern=r"^(json|console)$")
    # One line per request; probes and scrapes (health, /metrics) at DEBUG, so `level: DEBUG`
    # shows them (chassis.middleware.telemetry.PROBE_ROUTES).
    access_log: bool = True


class DatabaseSection(Section):
    url: SecretStr = SecretStr("sqlite:///./service.db")
    pool_size: int = Field(default=10, ge=1)
    max_overflow: int = Field(default=10, ge=0)
    pool_timeout_seconds: float = Field(default=5.0, gt=0)
    connect_timeout_seconds: int = Field(default=3, ge=1)
    echo: bool = False


class HealthSection(Section):
    check_timeout_seconds: float = Field(default=2.0, gt=0)


class ShutdownSection(Section):
    drain_seconds: float = Field(default=0.0, ge=0)
    grace_seconds: float = Field(default=20.0, gt=0)


class RetrySection(Section):
    max_attempts: int = Field(default=3, ge=1, le=10)
    base_seconds: float = Field(default=0.05, ge=0)
    cap_seconds: float = Field(default=1.0, ge=0)


class BreakerSection(Section):
    enabled: bool = True
    window_size: int = Field(default=20, ge=1)
    minimum_calls: int = Field(default=10, ge=1)
    failure_rate_threshold: float = Field(default=0.5, gt=0, le=1)
    slow_call_rate_threshold: float = Field(default=1.0, gt=0, le=1)
    slow_call_ratio: float = Field(default=0.8, gt=0, description="of the read timeout")
    open_seconds: float = Field(default=10.0, gt=0)
    half_open_calls: int = Field(default=3, ge=1)


class FaultsSection(Section):
    """Fault injection (chassis.middleware.faults): never enabled without a token."""

    enabled: bool = False
    token: SecretStr | None = None

    @model_validator(mode="after")
    def _token_when_enabled(self) -> FaultsSection:
        if self.enabled and (self.token is None or len(self.token.get_secret_value()) < 12):
            raise ValueError("token: a token of at least 12 characters is required when enabled")
        return self


class AuthSection(Section):
    """Bearer JWTs for the operations the OpenAPI document secures (chassis.auth)."""

    enabled: bool = True
    # PEM; AUTH__PUBLIC_KEY_FILE names a file holding it. Required when operations are secured.
    public_key: str | None = None
    issuer: str = DEV_ISSUER
    audience: str | None = None  # default: service.name
    leeway_seconds: float = Field(default=30.0, ge=0, le=300)


class DependencySection(Section):
    base_url: str = Field(pattern=r"^https?://")
    # The bearer token this service presents to the neighbour (its service credential);
    # DEPENDENCIES__<NAME>__TOKEN_FILE names a file holding it. Never logged.
    token: SecretStr | None = None
    critical: bool = False
    connect_timeout_seconds: float = Field(default=0.5, gt=0)
    read_timeout_seconds: float = Field(default=2.0, gt=0)
    deadline_seconds: float = Field(default=5.0, gt=0)
    retry: RetrySection = RetrySection()
    breaker: BreakerSection = BreakerSection()


class Settings(BaseModel):
    """Chassis settings; a service subclasses this to add its own sections."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: ServiceSection
    environment: str = "development"
    http: HttpSection = HttpSection()
    logging: LoggingSection = LoggingSection()
    database: DatabaseSection = DatabaseSection()
    health: HealthSection = HealthSection()
    shutdown: ShutdownSection = ShutdownSection()
    faults: FaultsSection = FaultsSection()
    auth: AuthSection = AuthSection()
    dependencies: dict[str, DependencySection] = {}


SettingsT = TypeVar("SettingsT", bound=Settings)


def load_settings(
    settings_class: type[SettingsT],
    config_dir: Path,
    environ: Mapping[str, str] | None = None,
) -> SettingsT:
    """Build ``settings_class`` from every source of design §6, highest precedence last."""
    environ = os.environ if environ is None else environ
    profile = environ.get(PROFILE_VARIABLE)
    merged: dict[str, Any] = {}
    _deep_merge(merged, _read_yaml(config_dir / CONFIG_FILE))
    if profile:
        _deep_merge(merged, _read_yaml(config_dir / f"config.{profile}.yml", required=True))
        merged["environment"] = profile
    scalars = {
        name
        for name, field in settings_class.model_fields.items()
        if not _is_nested(field.annotation)
    }
    top_level = set(settings_class.model_fields)
    _deep_merge(merged, _with_file_names(_from_environment(environ, top_level, scalars), merged))
    try:
        return settings_class.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _read_yaml(path: Path, *, required: bool = False) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise ConfigError(f"profile file {path} does not exist")
        return {}
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        # Only the position and the kind of problem: the parser's snippet of the line may hold a
        # password.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path} must hold a mapping of keys, not {type(content).__name__}")
    return content


def _is_nested(annotation: Any) -> bool:
    """Sections and mappings are set key by key (SERVICE__NAME), never by a bare SERVICE."""
    return (isinstance(annotation, type) and issubclass(annotation, BaseModel)) or (
        get_origin(annotation) is dict
    )


def _from_environment(
    environ: Mapping[str, str], top_level: set[str], scalars: set[str]
) -> dict[str, Any]:
    """Plain variables first, then ``*_FILE`` ones, so secret files win."""
    values: dict[str, Any] = {}
    secret_files: list[tuple[tuple[str, ...], str]] = []
    for name, raw in environ.items():
        upper = name.upper()
        if upper.endswith(FILE_SUFFIX):
            path = _key_path(upper.removesuffix(FILE_SUFFIX), top_level, scalars)
            if path:
                secret_files.append((path, raw))
            continue
        path = _key_path(upper, top_level, scalars)
        if path:
            _set_path(values, path, raw)
    for path, file_name in secret_files:
        _set_path(values, path, _read_secret(file_name, ".".join(path)))
    return values


def _key_path(variable: str, top_level: set[str], scalars: set[str]) -> tuple[str, ...] | None:
    if variable in ALIASES:
        return ALIASES[variable]
    parts = tuple(part.lower() for part in variable.split(NESTING))
    if parts[0] not in top_level or not all(parts):
        return None
    if len(parts) == 1 and parts[0] not in scalars:
        return None  # e.g. SERVICE=books in an image must not replace the service section
    return parts


def _read_secret(file_name: str, key: str) -> str:
    try:
        return Path(file_name).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read secret file {file_name}: {exc.strerror}") from None


def _set_path(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[path[-1]] = value


def _with_file_names(values: dict[str, Any], files: Mapping[str, Any]) -> dict[str, Any]:
    """A variable cannot spell ``-``: DEPENDENCIES__GIFT_CARDS__BASE_URL sets the key the files
    name ``gift-cards`` (a service's name), not a new ``gift_cards``."""
    aligned: dict[str, Any] = {}
    for key, value in values.items():
        spelled = next((k for k in files if k != key and k.replace("-", "_") == key), key)
        inner = files.get(spelled)
        if isinstance(value, dict) and isinstance(inner, Mapping):
            value = _with_file_names(value, inner)
        aligned[spelled] = value
    return aligned


def _deep_merge(target: dict[str, Any], overlay: Mapping[str, Any]) -> None:
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value


def _describe(exc: ValidationError) -> str:
    """One line per bad key; values are never echoed because they may be secrets."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "<root>"
        variable = NESTING.join(str(part).upper() for part in error["loc"])
        lines.append(f"  {key} (env {variable}): {error['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)
