"""The production server: uvicorn with a graceful, bounded shutdown on SIGTERM.

On the first SIGTERM/SIGINT readiness turns 503 at once; after ``shutdown.drain_seconds`` (time
for a load balancer to stop routing here) the listener closes, requests in flight get up to
``shutdown.grace_seconds`` to finish, then telemetry is flushed and the process exits 0.
A second signal skips the drain; a third stops at once.

Connections are served by uvicorn's httptools protocol under the connection guard
(:mod:`chassis.http_guard`): head size limits, head and body timeouts, a connection cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
from types import FrameType

import uvicorn

from chassis.http_guard import guarded_protocol
from chassis.logging import get_logger
from chassis.service import Service

log = get_logger("chassis.server")


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service
        self._signals = 0

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        settle_heap()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not calling super(): uvicorn would re-raise the signal after shutting down, turning a
        # clean drain into a "killed by SIGTERM" exit status.
        # This runs as a signal handler on the event loop's thread, between any two bytecodes:
        # it must not log or take locks the interrupted code may hold (the log writer's lock
        # would deadlock), so it only flips state and hands the rest to the loop.
        self._signals += 1
        if self._signals == 1:
            self.service.shutdown.begin()
            asyncio.get_running_loop().call_soon_threadsafe(self._drain, sig)
        elif self._signals == 2:
            self.should_exit = True
        else:
            self.force_exit = True

    def _drain(self, sig: int) -> None:
        drain = self.service.settings.shutdown.drain_seconds
        asyncio.get_running_loop().call_later(drain, self._stop_listening)
        # After the stop is scheduled: a log nobody reads any more (its supervisor died, the
        # pipe is closed) fails this write, and must not keep the process alive.
        with contextlib.suppress(OSError):
            log.info("shutdown begun", signal=signal.Signals(sig).name, drain_seconds=drain)

    def _stop_listening(self) -> None:
        self.should_exit = True


YOUNG_GENERATION = 10_000


def settle_heap() -> None:
    """Garbage collection for a long-running server, once everything is loaded.

    The start-up heap (modules, the OpenAPI document, SQLAlchemy and connexion structures: about
    100,000 objects) lives as long as the process, yet every full collection walked it again:
    frozen, collections see only what serving allocates. And each traced request keeps a few
    dozen objects alive until its spans are exported, which at CPython's default threshold of 700
    ran a young collection every couple of dozen requests; most of them are gone before a
    collection at 10,000. A threshold someone set already is left as it is.
    """
    gc.collect()
    gc.freeze()
    threshold, *older = gc.get_threshold()
    if threshold == 700:  # CPython's default
        gc.set_threshold(YOUNG_GENERATION, *older)


def serve(service: Service, *, host: str | None = None, port: int | None = None) -> None:
    settings = service.settings
    config = uvicorn.Config(
        service,
        host=host or settings.http.host,
        port=settings.http.port if port is None else port,
        http=guarded_protocol(settings.http),
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(max(1, settings.shutdown.grace_seconds)),
        timeout_keep_alive=5,
    )
    GracefulServer(config, service).run()
