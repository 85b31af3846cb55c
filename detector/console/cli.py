"""``detector console``: the review page (docs/audit.md, "The review console")."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from detector.errors import UsageError

#: Where the console listens by default (the console overlay's proxy upstream).
DEFAULT_PORT = 8090


def add_commands(sub: Any) -> None:
    console = sub.add_parser(
        "console",
        help="the review page: open alerts, their evidence, notifications and decisions",
        description="Serve the review console over the audit log: open alerts per model, "
        "each alert's evidence, notifications and decisions, and forms to acknowledge, "
        "resolve, comment or reopen with a reason. The reviewer is named by a bearer token "
        "(--token-file) or by a header an authenticating proxy sets (--trusted-header); "
        "a request with neither is refused (401).",
    )
    console.add_argument("--config", help="YAML config file, as for `detector run`")
    console.add_argument("--bootstrap-servers", help="Kafka bootstrap servers")
    console.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; behind a proxy, only where it alone "
        "reaches the console)",
    )
    console.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0: a free port"
    )
    console.add_argument(
        "--trusted-header",
        action="append",
        default=[],
        metavar="NAME",
        help="a request header naming the reviewer, set by an authenticating proxy "
        "(oauth2-proxy: X-Forwarded-User or X-Auth-Request-User); repeat for several, the "
        "first present wins",
    )
    console.add_argument(
        "--token-file",
        metavar="FILE",
        help="name:token lines; `Authorization: Bearer <token>` names the reviewer",
    )
    console.set_defaults(func=_cmd_console)


def _cmd_console(args: argparse.Namespace) -> int:
    from detector.config import load_settings
    from detector.console.app import Console
    from detector.console.auth import Authenticator, AuthError, load_tokens
    from detector.console.server import ConsoleServer
    from detector.console.source import KafkaAuditSource
    from detector.log import configure_logging

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: expected 0 to 65535, got {args.port}")
    try:
        tokens = load_tokens(args.token_file) if args.token_file else ()
        auth = Authenticator(tokens, args.trusted_header)
    except AuthError as exc:
        raise UsageError(str(exc)) from None
    overrides: dict[tuple[str, ...], Any] = {("kafka", "bootstrap_servers"): args.bootstrap_servers}
    settings = load_settings(args.config, overrides=overrides)
    configure_logging(settings.log)
    try:
        server = ConsoleServer(
            Console(KafkaAuditSource(settings), auth), host=args.host, port=args.port
        )
    except OSError as exc:
        raise UsageError(f"--host {args.host} --port {args.port}: {exc.strerror}") from None

    def _stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()  # not from this thread

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"review console on {server.url}", flush=True)
    server.serve_forever()
    server.stop()
    return 0


__all__ = ["DEFAULT_PORT", "add_commands"]
