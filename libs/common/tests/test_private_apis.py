"""chassis.private_apis against the installed packages.

Each test checks one private name of another package still does what the chassis relies on.
When one fails, an upgrade changed it: pin the package back, or rework the caller named in the
message (or let it use the public API again). The last tests check that the lint keeps other
modules from adding private names of their own.
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import structlog
from connexion.lifecycle import ConnexionRequest
from connexion.middleware.request_validation import RequestValidationOperation
from connexion.middleware.swagger_ui import SwaggerUIAPI
from connexion.validators import JSONRequestBodyValidator

from chassis.otlp import OTLPSpanExporter
from chassis.private_apis import (
    exporter_internals,
    is_request_too_large,
    register_before_thread_join,
    request_too_large_error,
    set_parsed_query,
    structlog_configuration,
)

ROOT = Path(__file__).resolve().parents[3]
OTLP_HTTP = "opentelemetry-exporter-otlp-proto-http"


def test_threading_runs_the_hook_before_it_joins_the_threads() -> None:
    """A non-daemon thread waiting on an event only the hook sets: the interpreter exits only
    if threading runs the hook before joining threads (it would wait forever otherwise)."""
    program = (
        "import threading\n"
        "from chassis.private_apis import register_before_thread_join\n"
        "done = threading.Event()\n"
        "threading.Thread(target=done.wait).start()\n"
        "print(register_before_thread_join(done.set))\n"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"Python {sys.version.split()[0]}: threading._register_atexit no longer runs before "
            "threads are joined; chassis.threads' pools would hang the exit"
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True", (
        f"Python {sys.version.split()[0]} has no threading._register_atexit: chassis.threads "
        "falls back to daemon threads, which exit without finishing queued calls"
    )
    assert register_before_thread_join(lambda: None) is True


def test_the_otlp_exporter_keeps_what_chassis_otlp_uses() -> None:
    exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", max_request_size=10)
    internals = exporter_internals(exporter)
    assert internals is not None, (
        f"{OTLP_HTTP} {version(OTLP_HTTP)}: the span exporter lost _client, _metrics, "
        "_max_request_size or _shutdown; chassis.otlp would fall back to the SDK's encoder"
    )
    assert internals.max_request_size == 10
    assert internals.shut_down is False
    assert callable(internals.client.export)
    assert callable(internals.metrics.export_operation)
    exporter.shutdown()
    shut = exporter_internals(exporter)
    assert shut is not None
    assert shut.shut_down is True


def test_the_otlp_size_check_is_the_exporters() -> None:
    assert is_request_too_large(b"x" * 11, 10), f"{OTLP_HTTP} {version(OTLP_HTTP)}"
    assert not is_request_too_large(b"x" * 10, 10)
    assert not is_request_too_large(b"x" * 11, 0), "0 disables the limit"


def test_the_otlp_size_error_is_the_exporters() -> None:
    error = request_too_large_error("too big")
    assert type(error).__name__ == "RequestPayloadTooLargeError", (
        f"{OTLP_HTTP} {version(OTLP_HTTP)}"
    )
    assert str(error) == "too big"


def test_structlog_keeps_its_configuration_where_chassis_logging_reads_it() -> None:
    config = structlog_configuration()
    assert config is not None, (
        f"structlog {version('structlog')} has no _config._CONFIG: chassis.logging falls back "
        "to get_config(), a dict built on every check of a cached logger"
    )
    public = structlog.get_config()
    assert (
        config.default_processors,
        config.default_wrapper_class,
        config.logger_factory,
        config.default_context_class,
    ) == (
        public["processors"],
        public["wrapper_class"],
        public["logger_factory"],
        public["context_class"],
    )


def instance_attributes(cls: type) -> set[str]:
    """The ``self.<name> =`` assignments in a class and its bases' code."""
    found = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("connexion"):
            source = inspect.getsource(klass)
            found |= set(re.findall(r"self\.(_\w+)\s*(?::[^=\n]+)?=", source))
    return found


@pytest.mark.parametrize(
    ("base", "methods", "attributes", "user"),
    [
        (RequestValidationOperation, set(), {"_operation", "_validator_map"}, "validation"),
        (JSONRequestBodyValidator, {"_validate"}, {"_required"}, "validation"),
        (SwaggerUIAPI, {"_spec_for_prefix", "_get_swagger_ui_home"}, set(), "middleware.api_docs"),
    ],
    ids=["RequestValidationOperation", "JSONRequestBodyValidator", "SwaggerUIAPI"],
)
def test_connexion_keeps_the_private_members_chassis_subclasses_use(
    base: type, methods: set[str], attributes: set[str], user: str
) -> None:
    missing = {name for name in methods if not callable(getattr(base, name, None))}
    missing |= attributes - instance_attributes(base)
    assert not missing, (
        f"connexion {version('connexion')}: {base.__name__} lost {sorted(missing)}; "
        f"chassis.{user} overrides or reads them"
    )


def test_connexion_takes_a_parsed_query_given_beforehand() -> None:
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"a=1", "headers": []}
    request = ConnexionRequest(scope, uri_parser=None)
    set_parsed_query(request, {"given": ["yes"]})
    assert request.query_params == {"given": ["yes"]}, (
        f"connexion {version('connexion')}: ConnexionRequest no longer keeps its parsed query "
        "in _query_params; chassis.validation's shortcut for an empty query does nothing"
    )


@pytest.mark.parametrize(
    "code",
    [
        "from opentelemetry.exporter.otlp.proto.http._common import _is_request_too_large\n",
        "import threading\nthreading._register_atexit(print)\n",
    ],
    ids=["import", "attribute"],
)
def test_the_lint_refuses_a_private_name_outside_private_apis(code: str) -> None:
    where = ROOT / "libs" / "common" / "src" / "chassis" / "a_new_module.py"
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "json"]
    result = subprocess.run(
        [*command, "--stdin-filename", str(where), "-"],
        input=code, capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert codes & {"PLC2701", "SLF001"}, codes
