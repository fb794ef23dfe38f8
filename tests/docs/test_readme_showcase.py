"""The README's tour, run verbatim: `make dev` in a terminal on its real ports (the ones the
README's commands name), the showcase block through bash, then Ctrl-C."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dev_stack import READY_BANNER, ROOT, DevStack, port_free, stack_environment

from chassis.testing import free_port
from chassis.testing.plugin import running_in_ci

README = ROOT / "README.md"
MARK = "<!-- showcase:"
README_PORTS = (8001, 8002, 8003)
STARTUP_SECONDS = 180
BLOCK_SECONDS = 240


def showcase_block(readme: str) -> str:
    """The fenced block right after the showcase mark."""
    after = readme[readme.index(MARK) :]
    found = re.search(r"```sh\n(.*?)```", after, re.DOTALL)
    assert found, "the showcase mark is not followed by a ```sh block"
    return found.group(1)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    busy = [port for port in README_PORTS if not port_free(port)]
    if busy:
        reason = f"the README's ports {busy} are in use (is `make dev` running?)"
        if running_in_ci():
            pytest.fail(f"CI requires the README tour: {reason}", pytrace=False)
        pytest.skip(reason)
    env = stack_environment(tmp_path_factory.mktemp("tour"), prometheus=free_port())
    stack = DevStack(env)
    try:
        stack.wait_for(READY_BANNER, STARTUP_SECONDS)
        yield stack
    finally:
        stack.stop()


@pytest.mark.timeout(STARTUP_SECONDS + BLOCK_SECONDS + 60)
def test_the_readme_tour_shows_what_it_promises(dev: DevStack) -> None:
    block = showcase_block(README.read_text(encoding="utf-8"))
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=ROOT,
        # A reader's shell: no ports or fault tokens of this run's, the stack's .dev (its key).
        env=stack_environment(Path(dev.env["DEV_DIR"])),
        capture_output=True,
        text=True,
        timeout=BLOCK_SECONDS,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    objects = [json.loads(line) for line in lines if line.startswith("{")]
    first_order, patched_book, *_ = objects
    assert first_order["status"] == "confirmed", first_order
    assert patched_book["price"] == "10.99", patched_book
    assert "401 without a token" in lines, lines

    broken = next(line for line in lines if line.startswith("books: "))
    fault = json.loads(broken.removeprefix("books: "))
    assert fault["outage"] is True, broken
    assert fault["status"] == 503, f"make break must report the status the outage answers: {broken}"

    statuses = [line for line in lines if re.fullmatch(r"\d{3} in [0-9.]+ s", line)]
    assert len(statuses) == 8, lines
    assert all(line.startswith("503 ") for line in statuses), statuses
    first, last = (float(line.split()[2]) for line in (statuses[0], statuses[-1]))
    assert last < first, f"an open breaker answers at once, without retries: {statuses}"

    degraded, *healed_orders, up = objects[2:]
    assert degraded["status"] == "DEGRADED", degraded
    assert degraded["checks"]["books"]["status"] != "UP", degraded
    assert "open" in json.dumps(degraded["checks"]["books"]), degraded
    assert [order["status"] for order in healed_orders] == ["confirmed", "confirmed"], objects
    assert up["status"] == "UP", up

    # What the terminal showed meanwhile: shop's 503s logged with a plain status, in the
    # console format `make dev` uses, and no probe or scrape among the access lines.
    console = dev.output
    assert re.search(r"\bstatus=503\b", console), dev.tail()
    assert "HTTPStatus" not in console, "an enum status reached the console log"
    assert not re.search(r"route=/(metrics|health/ready)\b.*status=200", console)
