"""Fixtures of the deployment tests (helpers: deploy_support.py)."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from deploy_support import (
    PrometheusServer,
    find_helm,
    interpolate,
    load_compose,
    require,
)

from chassis.testing.plugin import running_in_ci


@pytest.fixture(scope="session")
def helm() -> str:
    path = find_helm()
    if path is None:
        message = "`helm` is not installed: go install helm.sh/helm/v3/cmd/helm@v3.22.0 (.ci/run)"
        if running_in_ci():
            pytest.fail(f"CI requires it: {message}", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def compose_raw() -> dict[str, Any]:
    """compose.yaml as written (YAML anchors and merge keys resolved, variables not)."""
    return load_compose()


@pytest.fixture(scope="session")
def compose(compose_raw: dict[str, Any]) -> dict[str, Any]:
    """compose.yaml as Compose sees it with no variable set: every default applied."""
    resolved: dict[str, Any] = interpolate(compose_raw, {})
    return resolved


@pytest.fixture(scope="session")
def empty_prometheus() -> Iterator[PrometheusServer]:
    """A real Prometheus with an empty TSDB, to parse and evaluate PromQL."""
    binary = require("prometheus")
    with tempfile.TemporaryDirectory(prefix="deploy-prometheus-") as directory:
        server = PrometheusServer(binary, Path(directory))
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()
