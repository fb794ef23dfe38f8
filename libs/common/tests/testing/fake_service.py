"""A stand-in for a service's console script: ``fake_service.py serve --host H --port N``.

It logs a plain line and JSON lines to stdout, answers ``/health/ready`` (503 until
FAKE_READY_AFTER seconds have passed, then 200) and exits 0 on SIGTERM. FAKE_EXIT=<code> makes
it exit at once with that code; FAKE_IGNORE_SIGTERM=1 makes it ignore SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    print("starting (not JSON)", flush=True)
    if "FAKE_EXIT" in os.environ:
        log("bad configuration")
        sys.exit(int(os.environ["FAKE_EXIT"]))
    ready_at = time.monotonic() + float(os.environ.get("FAKE_READY_AFTER", "0"))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ready = self.path == "/health/ready" and time.monotonic() >= ready_at
            self.send_response(200 if ready else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    def stop(*_: Any) -> None:
        log("service stopped")
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if os.environ.get("FAKE_IGNORE_SIGTERM") else stop)
    server = HTTPServer((arguments.host, arguments.port), Handler)
    log("listening", port=arguments.port, pid=os.getpid())
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
