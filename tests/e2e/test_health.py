"""PostgreSQL down: every service says not ready (naming its database) but stays alive; when
PostgreSQL is back they are ready again without a restart."""

from __future__ import annotations

from e2e_stack import SERVICES, LocalStack, wait_until


def test_database_outage_turns_readiness_down_not_liveness(local_stack: LocalStack) -> None:
    stack = local_stack
    assert stack.postgres is not None
    pids = {name: process.pid for name, process in stack.processes.items()}

    stack.postgres.stop()
    for service in SERVICES:
        wait_until(
            lambda s=service: stack.readiness(s).status_code == 503,  # type: ignore[misc]
            timeout=15,
            interval=0.2,
            message=f"{service} stayed ready without its database",
        )
        body = stack.readiness(service).json()
        assert body["status"] == "DOWN", body
        assert body["checks"]["database"]["status"] == "DOWN", body
        assert body["checks"]["database"]["critical"] is True, body
        assert stack.http.get(f"{stack.url(service)}/health/live").status_code == 200

    stack.postgres.start()
    for service in SERVICES:
        wait_until(
            lambda s=service: stack.readiness(s).status_code == 200,  # type: ignore[misc]
            timeout=30,
            interval=0.2,
            message=lambda s=service: f"{s} not ready again: {stack.readiness(s).text}",  # type: ignore[misc]
        )
        again = stack.readiness(service).json()
        assert again["checks"]["database"]["status"] == "UP", (service, again["checks"]["database"])
    assert stack.canary_book is not None
    assert stack.http.get(f"{stack.url('books')}/books/{stack.canary_book}").status_code == 200
    assert stack.order([(stack.canary_book, 1)]).status_code == 201
    assert {name: process.pid for name, process in stack.processes.items()} == pids
