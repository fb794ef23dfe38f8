"""Every line every service process wrote during the e2e run keeps the log contract (design §5).

Each line of each process's output (stdout and stderr, as the stack writes them to one file per
service) is a JSON object with ``timestamp`` (RFC 3339 UTC), ``level``, ``logger``, ``message``
and ``service``; no line holds a bearer token (shop sends one to books with every reservation,
schemathesis with every books write); an access-log line's ``status`` is an integer; and probes
and scrapes (``/metrics``, ``/health/live``, ``/health/ready``, ``/healthcheck``) leave no access
line at INFO unless they fail (a 503 readiness is news), though they are still measured.

The check runs twice. The test runs late, where conftest.py puts scenario files that are not in
its ORDER: after the traffic of the other scenarios, before the shutdown scenario. The session
fixture checks again at the very end, once the services have stopped, so that the lines written
after the test (the shutdown scenario, the services' last words) are checked too; a failure
there shows as an error at the teardown of the session's last test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from e2e_stack import SHUTDOWN_GRACE_SECONDS, LocalStack, Stack

from chassis.testing import ServiceProcess

CONTRACT_FIELDS = ("timestamp", "level", "logger", "message", "service")
LEVELS = frozenset({"debug", "info", "warning", "error", "critical"})
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
ACCESS_LOGGER = "chassis.access"
# Written out rather than imported from the chassis: this is the contract the chassis must keep.
PROBES = frozenset({"/metrics", "/health/live", "/health/ready", "/healthcheck"})
DURATION_COUNT = "http_server_request_duration_seconds_count"
SHOWN = 25  # problems listed in a failure, of however many
# A signed JWT: base64url of '{"' starts both its header and its claims.
JWT = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]+")


def line_problems(service: str, number: int, data: bytes) -> list[str]:
    """What is wrong with line ``number`` of ``service``'s output, if anything."""
    where = f"{service} line {number}"
    try:
        raw = data.decode("utf-8")
        line = json.loads(raw)
    except ValueError:  # UnicodeDecodeError is one
        return [f"{where}: not UTF-8 JSON: {data[:200]!r}"]
    if not isinstance(line, dict):
        return [f"{where}: not a JSON object: {raw[:200]!r}"]
    if JWT.search(raw):  # never quoted: the finding would leak it into the test report
        return [f"{where}: holds a bearer token (a JWT)"]
    problems = [
        f"{where}: no {name}: {raw[:200]!r}"
        for name in CONTRACT_FIELDS
        if not isinstance(line.get(name), str) or not line[name]
    ]
    if problems:
        return problems
    if not RFC3339_UTC.match(line["timestamp"]):
        problems.append(f"{where}: timestamp {line['timestamp']!r} is not RFC 3339 UTC")
    if line["level"] not in LEVELS:
        problems.append(f"{where}: level {line['level']!r}")
    if line["service"] != service:
        problems.append(f"{where}: service {line['service']!r}")
    if line["logger"] == ACCESS_LOGGER:
        status = line.get("status")
        if type(status) is not int:
            problems.append(f"{where}: access-log status {status!r} is not an integer")
        if quiet_probe(line) and line["level"] != "debug":
            problems.append(f"{where}: a probe or scrape at {line['level']}: {raw[:200]!r}")
    return problems


def quiet_probe(line: Mapping[str, Any]) -> bool:
    """A probe or scrape that succeeded: its line belongs at DEBUG."""
    status = line.get("status")
    return line.get("route") in PROBES and isinstance(status, int) and status < 500


def log_problems(processes: Mapping[str, ServiceProcess]) -> list[str]:
    problems = []
    for name, process in processes.items():
        # Lines end at \n only (JSON Lines): str.splitlines() would also cut at U+2028, U+0085
        # and the like, which JSON leaves unescaped inside strings (a request path may hold one).
        for number, data in enumerate(process.log_path.read_bytes().split(b"\n"), start=1):
            if data.strip():
                problems.extend(line_problems(name, number, data))
    return problems


def report(problems: list[str]) -> str:
    shown = "\n".join(problems[:SHOWN])
    more = f"\n... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    return f"{len(problems)} log line problem(s):\n{shown}{more}"


def access_lines(process: ServiceProcess) -> list[dict[str, Any]]:
    return [line for line in process.log_lines() if line.get("logger") == ACCESS_LOGGER]


@pytest.fixture(scope="session")
def checked_again_at_the_end(stack: Stack) -> Iterator[None]:
    """After the whole session: stops the services (as the stack would a moment later) so that
    their last lines are written, then checks every line again."""
    yield
    if not isinstance(stack, LocalStack):
        return
    for process in stack.processes.values():
        process.terminate(SHUTDOWN_GRACE_SECONDS + 5)
    problems = log_problems(stack.processes)
    assert not problems, f"at the end of the e2e session: {report(problems)}"


@pytest.mark.usefixtures("checked_again_at_the_end")
def test_every_log_line_of_every_service_keeps_the_contract(local_stack: LocalStack) -> None:
    processes = local_stack.processes

    problems = log_problems(processes)

    assert not problems, report(problems)
    for name, process in processes.items():  # the check above saw real traffic
        routes = {line.get("route") for line in access_lines(process)}
        assert routes - PROBES, f"{name} wrote no access-log line for its API"


def test_probes_and_scrapes_are_measured_though_not_logged_at_info(
    local_stack: LocalStack,
) -> None:
    for name, process in local_stack.processes.items():
        metrics = local_stack.metrics(name)
        for route in ("/metrics", "/health/ready"):  # Prometheus' scrapes, readiness polls
            assert metrics.value(DURATION_COUNT, http_route=route) > 0, (name, route)
        logged = [
            line
            for line in access_lines(process)
            if quiet_probe(line) and line.get("level") != "debug"
        ]
        assert logged == [], f"{name} logged probes at INFO: {logged[:3]}"
