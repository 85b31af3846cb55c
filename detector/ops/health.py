"""Liveness and readiness of the sidecar, and the HTTP endpoint that serves them.

:class:`Health` is told what the consumer loop does (heartbeats, group membership,
partition assignment, state restores, progress and lag) and answers two questions:

- alive (``/healthz``): the loop beat within ``liveness_timeout_s`` and nothing fatal was
  reported. A failure means "restart me".
- ready (``/readyz``): alive, joined to the consumer group, every assigned partition has its
  state restored, and no assigned partition with pending messages (lag > 0) went longer than
  ``stall_threshold_s`` without progress. An instance with no partitions (more instances
  than partitions) is ready: it is idle, not broken.

The stall clock of a partition starts at its last progress or when it became pending,
whichever is later, so a partition that was idle for an hour is not stalled the moment a
message arrives. The clock is injectable (monotonic seconds) so tests need no sleeps.

:class:`HttpServer` serves ``GET /healthz``, ``/readyz`` (200 or 503, JSON body with
``status`` and ``reasons``) and ``/metrics`` from a daemon thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, Self

import orjson
import structlog

from detector.ops.metrics import CONTENT_TYPE_LATEST

#: Monotonic seconds.
Clock = Callable[[], float]

#: (topic, partition).
TopicPartition = tuple[str, int]

JSON_CONTENT_TYPE = "application/json"


class MetricsSource(Protocol):
    """What /metrics serves: the sidecar's or the router's metrics."""

    def render(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Check:
    """The answer to one health question: ``ok``, why not, and a JSON-able body."""

    ok: bool
    reasons: tuple[str, ...]
    body: dict[str, Any]


@dataclass(slots=True)
class _Partition:
    since: float  # assignment, restore or last progress, whichever is latest
    restored: bool = False
    lag: int = 0
    pending_since: float | None = None  # when lag last went from 0 to > 0


def _name(tp: TopicPartition) -> str:
    return f"{tp[0]}/{tp[1]}"


class Health:
    """Thread-safe health state: the consumer loop writes, the HTTP thread reads."""

    def __init__(
        self,
        *,
        stall_threshold_s: float = 60.0,
        liveness_timeout_s: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """``liveness_timeout_s`` defaults to ``stall_threshold_s``."""
        if stall_threshold_s <= 0:
            raise ValueError("stall_threshold_s must be positive")
        self.stall_threshold_s = stall_threshold_s
        self.liveness_timeout_s = (
            stall_threshold_s if liveness_timeout_s is None else liveness_timeout_s
        )
        if self.liveness_timeout_s <= 0:
            raise ValueError("liveness_timeout_s must be positive")
        self._clock = clock
        self._lock = threading.Lock()
        self._last_beat = clock()  # start-up counts as a beat: a grace period
        self._joined = False
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._fatal: str | None = None

    # --- what the consumer loop reports -------------------------------------------------------

    def beat(self) -> None:
        """Call every loop iteration (and during long restores, per batch restored)."""
        now = self._clock()
        with self._lock:
            self._last_beat = now

    def set_joined(self, joined: bool = True) -> None:
        """Group joined (first assignment) or left (close, fatal error)."""
        with self._lock:
            self._joined = joined
            if not joined:
                self._partitions.clear()

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions added by a rebalance (eager or incremental); implies the group joined.

        They are not ready until :meth:`restored` is called for each.
        """
        now = self._clock()
        with self._lock:
            self._joined = True
            for tp in partitions:
                self._partitions[(tp[0], tp[1])] = _Partition(since=now)

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions revoked or lost; unknown ones are ignored."""
        with self._lock:
            for tp in partitions:
                self._partitions.pop((tp[0], tp[1]), None)

    def restored(self, topic: str, partition: int) -> None:
        """The partition's detector state is restored; its stall clock starts now."""
        now = self._clock()
        with self._lock:
            state = self._partitions.get((topic, partition))
            if state is not None:
                state.restored = True
                state.since = now

    def progress(self, topic: str, partition: int, lag: int | None = None) -> None:
        """The partition made progress (a batch processed); ``lag`` if known after it."""
        now = self._clock()
        with self._lock:
            state = self._partitions.get((topic, partition))
            if state is None:
                return
            state.since = now
            if lag is not None:
                self._set_lag(state, lag, now)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        """Messages pending on the partition (high watermark minus position)."""
        now = self._clock()
        with self._lock:
            state = self._partitions.get((topic, partition))
            if state is not None:
                self._set_lag(state, lag, now)

    @staticmethod
    def _set_lag(state: _Partition, lag: int, now: float) -> None:
        lag = max(lag, 0)
        if lag > 0 and state.lag == 0:
            state.pending_since = now
        elif lag == 0:
            state.pending_since = None
        state.lag = lag

    def fail(self, reason: str) -> None:
        """A fatal condition (fenced producer, unrecoverable Kafka error): not alive any more."""
        with self._lock:
            if self._fatal is None:
                self._fatal = reason

    # --- the answers --------------------------------------------------------------------------

    def liveness(self) -> Check:
        now = self._clock()
        with self._lock:
            return self._liveness(now)

    def _liveness(self, now: float) -> Check:
        since_beat = now - self._last_beat
        reasons: list[str] = []
        if self._fatal is not None:
            reasons.append(f"fatal: {self._fatal}")
        if since_beat > self.liveness_timeout_s:
            reasons.append(
                f"consumer loop has not run for {since_beat:.1f}s"
                f" (limit {self.liveness_timeout_s:g}s)"
            )
        body: dict[str, Any] = {
            "status": "unavailable" if reasons else "ok",
            "reasons": reasons,
            "since_beat_s": round(since_beat, 3),
        }
        return Check(ok=not reasons, reasons=tuple(reasons), body=body)

    def readiness(self) -> Check:
        now = self._clock()
        with self._lock:
            alive = self._liveness(now)
            reasons = list(alive.reasons)
            if not self._joined:
                reasons.append("consumer group not joined")
            partitions: dict[str, Any] = {}
            for tp in sorted(self._partitions):
                state = self._partitions[tp]
                start = state.since
                if state.pending_since is not None:
                    start = max(start, state.pending_since)
                idle = now - start
                partitions[_name(tp)] = {
                    "restored": state.restored,
                    "lag": state.lag,
                    "since_progress_s": round(now - state.since, 3),
                }
                if not state.restored:
                    reasons.append(f"partition {_name(tp)}: state not restored")
                elif state.lag > 0 and idle > self.stall_threshold_s:
                    reasons.append(
                        f"partition {_name(tp)}: no progress for {idle:.1f}s"
                        f" with {state.lag} pending messages"
                        f" (limit {self.stall_threshold_s:g}s)"
                    )
            body: dict[str, Any] = {
                "status": "unavailable" if reasons else "ok",
                "reasons": reasons,
                "joined": self._joined,
                "partitions": partitions,
            }
            return Check(ok=not reasons, reasons=tuple(reasons), body=body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def bind(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A threading HTTP server bound to ``host``:``port`` (IPv4 or IPv6; 0: a free port),
    whose request threads do not keep the process alive: this endpoint's, and the review
    console's."""
    server_class = _Server6 if ":" in host else _Server
    return server_class((host, port), handler)


class ThreadedServer:
    """A bound :func:`bind` server served in a daemon thread: ``start``/``stop`` (or a
    ``with`` block), ``serve_forever``/``shutdown`` to serve on the caller's thread. The
    socket is bound in the constructor (so a busy port fails at start-up, and ``port`` is
    known at once); ``port=0`` picks a free port. ``/healthz`` and the review console."""

    thread_name = "detector-http"

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = bind(host, port, handler)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop serve_forever (from another thread or a signal handler's thread)."""
        self._server.shutdown()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self.serve_forever, name=self.thread_name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice, or without start()."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class HttpServer(ThreadedServer):
    """``GET /healthz``, ``/readyz`` and ``/metrics`` on ``host``:``port``, in a daemon thread.

    Note that ``server.port: 0`` in the config means "no HTTP endpoint": the runner then does
    not build an HttpServer at all.
    """

    def __init__(
        self,
        health: Health,
        metrics: MetricsSource | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.health = health
        self.metrics = metrics
        super().__init__(host, port, self._handler_class())

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of ``path``; the handler's logic, testable."""
        route = path.split("?", 1)[0].rstrip("/") or "/"
        if route in ("/healthz", "/readyz"):
            check = self.health.liveness() if route == "/healthz" else self.health.readiness()
            return (200 if check.ok else 503), JSON_CONTENT_TYPE, orjson.dumps(check.body)
        if route == "/metrics" and self.metrics is not None:
            return 200, CONTENT_TYPE_LATEST, self.metrics.render()
        body = orjson.dumps({"status": "not found", "paths": ["/healthz", "/readyz", "/metrics"]})
        return 404, JSON_CONTENT_TYPE, body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "drift-detector"
            sys_version = ""

            def do_GET(self) -> None:
                self._reply(send_body=True)

            def do_HEAD(self) -> None:
                self._reply(send_body=False)

            def _reply(self, *, send_body: bool) -> None:
                try:
                    status, content_type, body = owner.respond(self.path)
                except Exception as exc:  # a bug must not kill the server thread
                    status, content_type = 500, JSON_CONTENT_TYPE
                    body = orjson.dumps({"status": "error", "reasons": [type(exc).__name__]})
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds would flood the log

        return Handler


@contextlib.contextmanager
def serving(
    health: Health,
    metrics: MetricsSource,
    *,
    host: str,
    port: int,
    failed: Callable[[str], None],
) -> Iterator[HttpServer | None]:
    """Serve /healthz, /readyz and /metrics around a main loop (port 0: no endpoint).

    An exception leaving the loop is reported to ``failed`` (so /healthz says why) before
    the endpoint stops.
    """
    http = None
    if port:
        http = HttpServer(health, metrics, host=host, port=port)
        http.start()
        structlog.get_logger().info("http endpoint", url=http.url)
    try:
        yield http
    except BaseException as exc:
        failed(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if http is not None:
            http.stop()
