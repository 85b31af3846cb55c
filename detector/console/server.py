"""The console's HTTP server: the standard library's threading server (as ``/healthz`` is
served, :func:`detector.ops.health.bind`), each request handed to
:meth:`detector.console.app.Console.handle`."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any

import structlog

from detector.console.app import MAX_BODY, Console, Request, Response
from detector.ops.health import ThreadedServer

log = structlog.get_logger()


class ConsoleServer(ThreadedServer):
    """``console`` on ``host``:``port`` (bound in the constructor; 0: a free port)."""

    thread_name = "console"

    def __init__(self, console: Console, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.console = console
        super().__init__(host, port, _handler(console))


def _handler(console: Console) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "drift-detector-console"
        sys_version = ""

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def _serve(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self._send(Response(413 if length > 0 else 400), "-")
                return
            body = self.rfile.read(length) if length else b""
            request = Request.of(self.command, self.path, self.headers.items(), body)
            try:
                response = console.handle(request)
            except Exception as exc:  # a bug must not kill the server thread, nor show
                log.error("console request failed", path=self.path, error=type(exc).__name__)
                response = Response(500)
            self._send(response, console.auth.identify(request.headers) or "-")

        def _send(self, response: Response, who: str) -> None:
            self.send_response(response.status)
            for name, value in response.all_headers():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
            log.info(
                "console request",
                method=self.command,
                path=self.path.split("?", 1)[0],
                status=response.status,
                by=who,
            )

        def log_message(self, format: str, *args: Any) -> None:
            pass  # logged in _send, through structlog

    return Handler


__all__ = ["ConsoleServer"]
