import pytest

import chassis


def isort_style(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions, each A-Z."""
    if name.isupper():
        return (0, name)
    return (1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_unique() -> None:
    assert len(set(chassis.__all__)) == len(chassis.__all__)
    assert chassis.__all__ == sorted(chassis.__all__, key=isort_style)


def test_every_public_name_resolves() -> None:
    for name in chassis.__all__:
        assert getattr(chassis, name) is not None, name


def test_the_lazy_exports_are_exactly_all() -> None:
    assert set(chassis._EXPORTS) == set(chassis.__all__)


def test_nothing_public_is_left_out_of_all() -> None:
    for name in chassis.__all__:
        getattr(chassis, name)  # every lazy name is now a module global
    public = {
        name
        for name, value in vars(chassis).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("chassis.")
    }

    assert public <= set(chassis.__all__)


def test_a_name_not_exported_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Database'"):
        chassis.Database  # noqa: B018


def test_the_core_names_are_public() -> None:
    core = {
        "Service",
        "Settings",
        "Section",
        "load_settings",
        "ConfigError",
        "ServiceCli",
        "SetupLockedError",
        "current_session",
        "current_service",
        "get_logger",
        "HealthCheck",
        "FunctionCheck",
        "CheckResult",
        "UP",
        "DEGRADED",
        "DOWN",
        "ProblemError",
        "NotFoundError",
        "ConflictError",
        "ServiceUnavailable",
        "DatabaseUnavailable",
    }

    assert core <= set(chassis.__all__)
