"""HandlerThreads: a thread pool awaited from the loop, with ThreadPoolExecutor's semantics."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError

import pytest

from chassis.threads import HandlerThreads

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("tests_threads", default="unset")


@pytest.fixture
def pool() -> Iterator[HandlerThreads]:
    threads = HandlerThreads(2, thread_name_prefix="tests-pool")
    yield threads
    threads.shutdown(wait=True, cancel_futures=True)


def test_a_call_runs_on_a_worker_thread_and_returns_its_result(pool: HandlerThreads) -> None:
    async def main() -> tuple[str, int]:
        return await pool.call(lambda a, b: (threading.current_thread().name, a + b), 1, 2)

    name, total = asyncio.run(main())

    assert total == 3
    assert name.startswith("tests-pool_")


def test_an_exception_reaches_the_awaiting_coroutine(pool: HandlerThreads) -> None:
    def fail() -> None:
        raise LookupError("nope")

    async def main() -> None:
        await pool.call(fail)

    with pytest.raises(LookupError, match="nope"):
        asyncio.run(main())


def test_a_copied_context_travels_with_the_call(pool: HandlerThreads) -> None:
    async def main() -> str:
        VAR.set("request")
        return await pool.call(contextvars.copy_context().run, VAR.get)

    assert asyncio.run(main()) == "request"


def test_no_more_threads_than_max_workers_and_idle_ones_are_reused(pool: HandlerThreads) -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def work() -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.01)
        with lock:
            running -= 1
        return threading.current_thread().name

    async def main() -> set[str]:
        names = await asyncio.gather(*(pool.call(work) for _ in range(20)))
        names += [await pool.call(work) for _ in range(5)]
        return set(names)

    names = asyncio.run(main())

    assert most == 2
    assert len(names) == 2
    assert len(pool._threads) == 2


def test_a_cancelled_await_leaves_the_loop_alone(pool: HandlerThreads) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow() -> int:
        started.set()
        release.wait(5)
        return 1

    async def main() -> None:
        task = asyncio.ensure_future(pool.call(slow))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        assert await pool.call(int, "7") == 7  # the worker finished and is free again

    asyncio.run(main())


def test_it_is_an_executor_too(pool: HandlerThreads) -> None:
    assert pool.submit(pow, 2, 10).result(5) == 1024
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(5)

    async def main() -> int:
        return await asyncio.get_running_loop().run_in_executor(pool, abs, -5)

    assert asyncio.run(main()) == 5


def test_shutdown_finishes_queued_calls_or_cancels_them() -> None:
    pool = HandlerThreads(1)
    gate = threading.Event()
    first = pool.submit(gate.wait, 5)
    queued = pool.submit(lambda: "ran")
    gate.set()
    pool.shutdown(wait=True)
    assert first.result() is True
    assert queued.result() == "ran"
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(int)

    pool = HandlerThreads(1)
    gate.clear()
    blocking = pool.submit(gate.wait, 5)
    cancelled = pool.submit(lambda: "never")
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    with pytest.raises(CancelledError):
        cancelled.result(5)
    assert blocking.result(5) is True
    pool.shutdown(wait=True)  # twice is fine
    assert all(not thread.is_alive() for thread in pool._threads)


def test_max_workers_must_be_positive() -> None:
    with pytest.raises(ValueError):
        HandlerThreads(0)
