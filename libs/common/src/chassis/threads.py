"""Worker threads for blocking handlers, awaited from the event loop with little ceremony.

``loop.run_in_executor`` over a ``ThreadPoolExecutor`` hands every call through two futures: a
``concurrent.futures.Future`` (a condition variable and its lock, taken at each state change)
chained by callbacks to an asyncio future. :class:`HandlerThreads` puts the call and an asyncio
future on a queue; the worker that takes it resolves the future on the loop directly. It is an
``Executor`` too (``submit``, ``shutdown``), with ``ThreadPoolExecutor``'s semantics: at most
``max_workers`` threads, started as needed, idle ones reused, and at interpreter exit the calls
already queued run before the threads are joined.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

from chassis.private_apis import register_before_thread_join

T = TypeVar("T")


_live: weakref.WeakSet[HandlerThreads] = weakref.WeakSet()


def _at_exit() -> None:
    """Before the interpreter joins its threads (as ``concurrent.futures`` does for its own):
    each pool finishes what was queued, then its threads stop."""
    for pool in list(_live):
        pool.shutdown(wait=True)


# Before non-daemon threads are joined at exit (atexit would run after, waiting forever on idle
# workers): threading's private hook, as concurrent.futures uses it (chassis.private_apis).
_DAEMON = not register_before_thread_join(_at_exit)


class HandlerThreads(Executor):
    def __init__(self, max_workers: int, thread_name_prefix: str = "handler") -> None:
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self.max_workers = max_workers
        self.thread_name_prefix = thread_name_prefix
        self._queue: SimpleQueue[_Work | None] = SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False
        _live.add(self)

    def call(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``function(*args)`` on a worker thread, as a future of the running loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(_LoopWork(loop, future, function, args))
        return future

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        self._put(_ExecutorWork(future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            sentinel = not self._shutdown
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        work = self._queue.get_nowait()
                    except Empty:
                        break
                    if work is None:
                        sentinel = True
                    else:
                        work.cancel()
            if sentinel:
                self._queue.put(None)  # each worker passes it on to the next, then exits
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join()

    def _put(self, work: _Work) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._queue.put(work)
            if self._idle.acquire(blocking=False) or len(self._threads) >= self.max_workers:
                return  # an idle worker takes it, or the next one to finish does
            thread = threading.Thread(
                target=self._work,
                name=f"{self.thread_name_prefix}_{len(self._threads)}",
                daemon=_DAEMON,
            )
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        queue, idle = self._queue, self._idle
        while True:
            work = queue.get()
            if work is None:
                queue.put(None)
                return
            work.run()
            del work
            idle.release()


class _Work:
    __slots__ = ()

    def run(self) -> None:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError


class _LoopWork(_Work):
    __slots__ = ("args", "function", "future", "loop")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        function: Callable[..., Any],
        args: tuple[Any, ...],
    ) -> None:
        self.loop = loop
        self.future = future
        self.function = function
        self.args = args

    def run(self) -> None:
        try:
            result = self.function(*self.args)
        except BaseException as exc:
            self._settle(_reject, exc)
        else:
            self._settle(_resolve, result)

    def cancel(self) -> None:
        self._settle(_cancel, None)

    def _settle(self, how: Callable[[asyncio.Future[Any], Any], None], value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self.loop.call_soon_threadsafe(how, self.future, value)


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _reject(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _cancel(future: asyncio.Future[Any], _: Any) -> None:
    future.cancel()


class _ExecutorWork(_Work):
    __slots__ = ("args", "fn", "future", "kwargs")

    def __init__(
        self,
        future: Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)

    def cancel(self) -> None:
        self.future.cancel()
