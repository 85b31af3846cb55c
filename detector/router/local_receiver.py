"""A local Slack-like receiver for the demo and for trying the router on a laptop.

It answers like a Slack incoming webhook (``200 ok``) and keeps what it received. It checks
nothing; the tests use strict fakes of each vendor (``tests/vendors.py``) instead.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class LocalReceiver:
    """``with LocalReceiver() as receiver:`` serves on ``receiver.url`` (a free loopback port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.messages: list[Any] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    payload = orjson.loads(body)
                except orjson.JSONDecodeError:
                    payload = None
                with owner._lock:
                    owner.messages.append(payload)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/services/local/demo/receiver"

    def __enter__(self) -> LocalReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
