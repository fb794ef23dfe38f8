"""The production server: uvicorn with a graceful, bounded shutdown on SIGTERM.

On the first SIGTERM/SIGINT readiness turns 503 at once; after ``shutdown.drain_seconds`` (time
for a load balancer to stop routing here) the listener closes, requests in flight get up to
``shutdown.grace_seconds`` to finish, then telemetry is flushed and the process exits 0.
A second signal skips the drain; a third stops at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import uvicorn

from chassis.logging import get_logger
from chassis.service import Service

log = get_logger("chassis.server")


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service
        self._signals = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not calling super(): uvicorn would re-raise the signal after shutting down, turning a
        # clean drain into a "killed by SIGTERM" exit status.
        self._signals += 1
        if self._signals == 1:
            drain = self.service.settings.shutdown.drain_seconds
            self.service.shutdown.begin()
            log.info("shutdown begun", signal=signal.Signals(sig).name, drain_seconds=drain)
            timer = threading.Timer(drain, self._stop_listening)
            timer.daemon = True
            timer.start()
        elif self._signals == 2:
            self._stop_listening()
        else:
            self.force_exit = True

    def _stop_listening(self) -> None:
        self.should_exit = True


def serve(service: Service, *, host: str | None = None, port: int | None = None) -> None:
    settings = service.settings
    config = uvicorn.Config(
        service,
        host=host or settings.http.host,
        port=settings.http.port if port is None else port,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(max(1, settings.shutdown.grace_seconds)),
        timeout_keep_alive=5,
    )
    GracefulServer(config, service).run()
