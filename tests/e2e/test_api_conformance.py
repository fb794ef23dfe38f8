"""Each service's API against its own OpenAPI document, under generated input.

schemathesis (its command line, as a user would run it) derives requests from every operation
of books, shop and chat, valid ones and broken ones (wrong types, missing fields, bytes that are
not UTF-8, unexpected methods), sends them to the running services and checks every answer: no
5xx, only documented status codes, content types, headers and bodies that match the spec, bad
input refused with a 4xx, the right Allow header on a 405. Deterministic (fixed seed), bounded
(examples per operation and a time box), and only against the local stack: generated input is
not sent to somebody's running stack. A service's secured operations get a token with every
scope its document names, so their bodies are exercised too; schemathesis' ignored_auth check
then also proves that each of them refuses a request without it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_stack import SERVICES, LocalStack

SCHEMATHESIS = Path(sys.executable).with_name("st")
EXAMPLES_PER_OPERATION = 25
SECONDS_PER_SERVICE = 45
# positive_data_acceptance expects every schema-valid body to be accepted; shop answers 422 to
# an order for a book that does not exist, which no schema can express.
EXCLUDED_CHECKS = "positive_data_acceptance"
# An event stream never ends on its own; test_live.py and the order-notice scenario cover it.
ENDLESS_OPERATIONS = ("follow_room",)


def security_requirements(document: dict[str, Any]) -> list[list[str]]:
    """The scope lists of every operation's security requirements."""
    return [
        scopes
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
        for requirement in operation.get("security", document.get("security", []))
        for scopes in requirement.values()
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_the_api_answers_generated_requests_as_its_spec_says(
    local_stack: LocalStack, service: str, tmp_path: Path
) -> None:
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{local_stack.url(service)}/openapi.json",
        "--checks=all",
        f"--exclude-checks={EXCLUDED_CHECKS}",
        *(f"--exclude-operation-id={operation}" for operation in ENDLESS_OPERATIONS),
        "--phases=examples,fuzzing,stateful",
        f"--max-examples={EXAMPLES_PER_OPERATION}",
        "--seed=20261128",
        "--generation-deterministic",
        "--workers=1",
        "--request-timeout=10",
        f"--max-time={SECONDS_PER_SERVICE}",
        "--no-color",
    ]
    document = local_stack.http.get(f"{local_stack.url(service)}/openapi.json").json()
    scopes = {scope for requirement in security_requirements(document) for scope in requirement}
    if scopes:
        token = local_stack.token_for(service, sorted(scopes))
        command += ["--header", f"Authorization: Bearer {token}"]
    result = subprocess.run(  # in tmp_path: schemathesis keeps its example database in its cwd
        command,
        capture_output=True,
        text=True,
        timeout=SECONDS_PER_SERVICE + 60,
        check=False,
        cwd=tmp_path,
    )

    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-6000:]}{result.stderr}"
