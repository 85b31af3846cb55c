"""Local stand-ins for the router's receivers, enforcing each vendor's documented contract.

* :class:`SlackServer`: an incoming webhook (``POST /services/T000/B000/<secret>``) with
  Block Kit checks and Slack's rate limit;
* :class:`PagerDutyServer`: the Events API v2 (``POST /v2/enqueue``), keeping incidents;
* :class:`WebhookServer`: any JSON POST;
* :class:`AlertmanagerProcess`: the real ``prometheus-alertmanager`` binary;
* sample alerts and notifications (:func:`amount_alert`, :func:`country_alert`,
  :func:`many_alerts`, :func:`notification`) for the notifier tests.

The three fakes are :class:`http.server.ThreadingHTTPServer` s on 127.0.0.1 (port 0) in a
daemon thread, used as context managers (``with SlackServer() as slack: slack.url``). Each
records every request (:class:`Received`: method, path, headers, body, parsed JSON,
``time.monotonic()`` arrival, the answer) in ``requests`` and the 2xx-answered ones in
``accepted``; tests wait on arrivals with :meth:`VendorServer.wait_for` (a condition
variable, no sleeping). :meth:`VendorServer.fail_next` scripts answers (a 500 once, a 429
with ``Retry-After``). A request arriving before a ``Retry-After`` the fake announced has
passed is recorded in ``violations``.

Import from any test as ``import vendors`` (tests/ is on ``sys.path``). The fixtures
``slack_server``, ``pagerduty_server``, ``webhook_server`` (function scope) and
``alertmanager`` (session scope) are defined here as ``<name>_fixture`` functions; a test
module imports the ones it uses, and its tests then take them by their fixture name (the
``_fixture`` suffix keeps the parameter from shadowing the import, ruff's F811)::

    from vendors import alertmanager_fixture, slack_server_fixture  # noqa: F401

    def test_x(slack_server: vendors.SlackServer) -> None: ...
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest

from detector.broker import free_port
from detector.router.model import (
    Integration,
    IntegrationKind,
    Notification,
    Review,
    RoutedAlert,
    Status,
)
from detector.router.notify.evidence import retry_after_seconds

# --- recording HTTP server -----------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One request as a fake saw it, and what it answered."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    json: Any  # the parsed body; None when it is not JSON
    at: float  # time.monotonic() on arrival
    status: int
    answer: bytes
    note: str = ""  # why the fake refused it (its contract checks), for assertion messages

    @property
    def accepted(self) -> bool:
        return 200 <= self.status <= 299


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    note: str = ""


def _encode(body: str | bytes | Mapping[str, Any] | list[Any]) -> tuple[bytes, str]:
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(body).encode(), "application/json"


def reply(
    status: int,
    body: str | bytes | Mapping[str, Any] | list[Any] = b"",
    *,
    retry_after: int | float | str | None = None,
    note: str = "",
) -> Reply:
    """An answer; ``retry_after`` (seconds or an HTTP date) becomes ``Retry-After``."""
    raw, content_type = _encode(body)
    headers = {"Content-Type": content_type}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Reply(status, raw, headers, note)


class _NotJson:
    pass


NOT_JSON: Any = _NotJson()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = self.server.vendor.handle(self.command, self.path, headers, body)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, vendor: VendorServer) -> None:
        self.vendor = vendor
        super().__init__(("127.0.0.1", 0), _Handler)


class VendorServer:
    """Base of the fakes: recording, scripted answers, ``Retry-After`` bookkeeping."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.accepted: list[Received] = []
        self.violations: list[str] = []
        self.changed = threading.Condition()
        self._scripted: deque[Reply] = deque()
        self._not_before: float | None = None  # monotonic; announced by a Retry-After
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> Self:
        self._httpd = _Server(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, no trailing slash."""
        assert self._httpd is not None, "not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # test controls

    def fail_next(
        self,
        status: int,
        body: str | bytes | Mapping[str, Any] | list[Any] = b"",
        retry_after: int | float | str | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests (to a valid path) with ``status`` and
        ``body`` instead of checking them; ``retry_after`` sets ``Retry-After``."""
        with self.changed:
            for _ in range(times):
                self._scripted.append(reply(status, body, retry_after=retry_after, note="scripted"))

    def wait_for(self, n_accepted: int, timeout: float = 10.0) -> list[Received]:
        """Block until ``n_accepted`` requests were accepted; their list, or AssertionError."""
        return self._wait(
            self.accepted,
            n_accepted,
            timeout,
            lambda: (
                f"{len(self.accepted)} accepted of {len(self.requests)} requests within "
                f"{timeout} s, wanted {n_accepted}; "
                f"answers {[(r.status, r.note) for r in self.requests]}"
            ),
        )

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[Received]:
        """Block until ``n`` requests arrived (whatever the answer)."""
        return self._wait(
            self.requests,
            n,
            timeout,
            lambda: f"{len(self.requests)} requests within {timeout} s, wanted {n}",
        )

    def _wait(
        self, received: list[Received], n: int, timeout: float, shortfall: Callable[[], str]
    ) -> list[Received]:
        """Block until ``received`` holds ``n`` requests; a copy of it, or AssertionError
        saying ``shortfall()`` (evaluated under the lock)."""
        with self.changed:
            if not self.changed.wait_for(lambda: len(received) >= n, timeout):
                raise AssertionError(f"{type(self).__name__}: {shortfall()}")
            return list(received)

    # request handling

    def check_path(self, method: str, path: str) -> Reply | None:
        """An answer for a request the endpoint does not serve (404, 405); None if it does."""
        return None

    def answer(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, data: Any
    ) -> Reply:
        """The fake's own answer to a served request (``data`` is NOT_JSON when not JSON)."""
        raise NotImplementedError

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        at = time.monotonic()
        try:
            data: Any = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            data = NOT_JSON
        with self.changed:
            answer = self.check_path(method, path)
            if answer is None:
                if self._not_before is not None and at < self._not_before:
                    self.violations.append(
                        f"{method} {path} arrived {self._not_before - at:.3f} s before the "
                        "announced Retry-After had passed"
                    )
                if self._scripted:
                    answer = self._scripted.popleft()
                else:
                    answer = self.answer(method, path, headers, body, data)
                self._announce(at, answer)
            received = Received(
                method=method,
                path=path,
                headers=dict(headers),
                body=body,
                json=None if data is NOT_JSON else data,
                at=at,
                status=answer.status,
                answer=answer.body,
                note=answer.note,
            )
            self.requests.append(received)
            if received.accepted:
                self.accepted.append(received)
            self.changed.notify_all()
        return answer

    def _announce(self, at: float, answer: Reply) -> None:
        seconds = retry_after_seconds(answer.headers)
        if seconds is None:
            return
        until = at + seconds
        self._not_before = until if self._not_before is None else max(self._not_before, until)


# --- Slack ---------------------------------------------------------------------------------

#: https://api.slack.com/reference/block-kit/blocks
SLACK_BLOCK_TYPES = frozenset(
    {
        "section",
        "header",
        "context",
        "divider",
        "actions",
        "image",
        "input",
        "file",
        "rich_text",
        "video",
    }
)
SLACK_MAX_BLOCKS = 50
SLACK_MAX_HEADER_CHARS = 150
SLACK_MAX_SECTION_CHARS = 3000
SLACK_MAX_FIELDS = 10
SLACK_MAX_FIELD_CHARS = 2000
SLACK_MAX_CONTEXT_ELEMENTS = 10
SLACK_MAX_CONTEXT_TEXT_CHARS = 2000
SLACK_MAX_BLOCK_ID_CHARS = 255


def _text_object(obj: Any, where: str, limit: int, kinds: frozenset[str]) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: not a text object"]
    problems = []
    if obj.get("type") not in kinds:
        problems.append(f"{where}.type: {obj.get('type')!r} not in {sorted(kinds)}")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        problems.append(f"{where}.text: missing or empty")
    elif len(text) > limit:
        problems.append(f"{where}.text: {len(text)} characters, more than {limit}")
    unknown = set(obj) - {"type", "text", "emoji", "verbatim"}
    if unknown:
        problems.append(f"{where}: unknown fields {sorted(unknown)}")
    return problems


_PLAIN = frozenset({"plain_text"})
_ANY_TEXT = frozenset({"plain_text", "mrkdwn"})


def slack_problems(payload: Any) -> list[str]:
    """Why Slack would refuse this webhook payload (``invalid_payload``); [] if it would not."""
    if not isinstance(payload, dict):
        return ["payload is not a JSON object"]
    problems: list[str] = []
    text, blocks = payload.get("text"), payload.get("blocks")
    if text is not None and not isinstance(text, str):
        problems.append("text: not a string")
    if not text and not blocks:
        problems.append("neither text nor blocks")
    if "channel" in payload and not isinstance(payload["channel"], str):
        problems.append("channel: not a string")
    if blocks is None:
        return problems
    if not isinstance(blocks, list):
        return [*problems, "blocks: not a list"]
    if len(blocks) > SLACK_MAX_BLOCKS:
        problems.append(f"blocks: {len(blocks)}, more than {SLACK_MAX_BLOCKS}")
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict):
            problems.append(f"{where}: not an object")
            continue
        kind = block.get("type")
        if kind not in SLACK_BLOCK_TYPES:
            problems.append(f"{where}.type: unknown block type {kind!r}")
            continue
        block_id = block.get("block_id")
        if block_id is not None and (
            not isinstance(block_id, str) or len(block_id) > SLACK_MAX_BLOCK_ID_CHARS
        ):
            problems.append(f"{where}.block_id: invalid")
        if kind == "header":
            problems += _text_object(
                block.get("text"), f"{where}.text", SLACK_MAX_HEADER_CHARS, _PLAIN
            )
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"{where}: a section needs text or fields")
            if "text" in block:
                problems += _text_object(
                    block["text"], f"{where}.text", SLACK_MAX_SECTION_CHARS, _ANY_TEXT
                )
            if "fields" in block:
                fields = block["fields"]
                if not isinstance(fields, list) or not 1 <= len(fields) <= SLACK_MAX_FIELDS:
                    problems.append(f"{where}.fields: 1 to {SLACK_MAX_FIELDS} text objects")
                else:
                    for j, item in enumerate(fields):
                        problems += _text_object(
                            item, f"{where}.fields[{j}]", SLACK_MAX_FIELD_CHARS, _ANY_TEXT
                        )
        elif kind == "context":
            elements = block.get("elements")
            if (
                not isinstance(elements, list)
                or not 1 <= len(elements) <= SLACK_MAX_CONTEXT_ELEMENTS
            ):
                count = len(elements) if isinstance(elements, list) else "no"
                problems.append(
                    f"{where}.elements: {count} elements, 1 to {SLACK_MAX_CONTEXT_ELEMENTS} allowed"
                )
                continue
            for j, element in enumerate(elements):
                if isinstance(element, dict) and element.get("type") == "image":
                    if not element.get("image_url") or not element.get("alt_text"):
                        problems.append(
                            f"{where}.elements[{j}]: image needs image_url and alt_text"
                        )
                    continue
                problems += _text_object(
                    element, f"{where}.elements[{j}]", SLACK_MAX_CONTEXT_TEXT_CHARS, _ANY_TEXT
                )
    return problems


class SlackServer(VendorServer):
    """A Slack incoming webhook (https://api.slack.com/messaging/webhooks).

    ``POST /services/T000/B000/<secret>`` (:attr:`webhook_url`); another path is 404
    ``no_service``, another method 405. Invalid JSON or Block Kit (:func:`slack_problems`)
    is 400 ``invalid_payload``. Rate limit: Slack allows "1 message per second, with short
    bursts" per webhook without saying how short; here a token bucket of ``rate_per_s``
    (1) refilling up to ``burst`` tokens (default 3: a firing and a resolved message in a row
    pass, a burst of four does not). Without a token: 429 ``rate_limited`` with
    ``Retry-After`` in whole seconds until the next token. Success: 200 ``ok``.
    """

    def __init__(
        self, *, rate_per_s: float = 1.0, burst: int = 3, secret: str | None = None
    ) -> None:
        super().__init__()
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self.secret = secret or secrets.token_hex(12)
        self.path = f"/services/T000/B000/{self.secret}"
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._refilled = time.monotonic()

    @property
    def webhook_url(self) -> str:
        return self.url + self.path

    @property
    def messages(self) -> list[Any]:
        """The accepted payloads, in order."""
        with self.changed:
            return [r.json for r in self.accepted]

    def check_path(self, method: str, path: str) -> Reply | None:
        if path != self.path:
            return reply(404, "no_service", note=f"unknown webhook path {path}")
        if method != "POST":
            return reply(405, "invalid_method", note=method)
        return None

    def answer(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, data: Any
    ) -> Reply:
        if data is NOT_JSON:
            return reply(400, "invalid_payload", note="body is not JSON")
        problems = slack_problems(data)
        if problems:
            return reply(400, "invalid_payload", note="; ".join(problems))
        now = time.monotonic()
        self._tokens = min(
            float(self.burst), self._tokens + (now - self._refilled) * self.rate_per_s
        )
        self._refilled = now
        if self._tokens < 1.0:
            wait = max(1, math.ceil((1.0 - self._tokens) / self.rate_per_s))
            return reply(429, "rate_limited", retry_after=wait, note="rate limited")
        self._tokens -= 1.0
        return reply(200, "ok")


# --- PagerDuty -----------------------------------------------------------------------------

PD_PATH = "/v2/enqueue"
PD_MAX_BODY_BYTES = 512 * 1024
PD_ACTIONS = frozenset({"trigger", "acknowledge", "resolve"})
PD_SEVERITIES = frozenset({"critical", "error", "warning", "info"})


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def pagerduty_problems(event: Any, size: int = 0) -> list[str]:
    """Why the Events API v2 would refuse this event (``size``: the encoded body's bytes)."""
    if size >= PD_MAX_BODY_BYTES:
        return [f"Event object is too large: {size} bytes (limit {PD_MAX_BODY_BYTES})"]
    if not isinstance(event, dict):
        return ["Event object is not a JSON object"]
    problems = []
    routing_key = event.get("routing_key")
    if not isinstance(routing_key, str) or len(routing_key) != 32:
        problems.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in PD_ACTIONS:
        problems.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > 255):
        problems.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and _blank(dedup_key):
        problems.append(f"'dedup_key' is required for {action}")
    for name in ("client", "client_url"):
        if name in event and not isinstance(event[name], str):
            problems.append(f"'{name}' must be a string")
    if action != "trigger":
        return problems
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return [*problems, "'payload' is missing or not an object"]
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        problems.append("'payload.summary' is missing or blank")
    elif len(summary) > 1024:
        problems.append(f"'payload.summary' is too long ({len(summary)} > 1024 characters)")
    if _blank(payload.get("source")):
        problems.append("'payload.source' is missing or blank")
    if payload.get("severity") not in PD_SEVERITIES:
        problems.append(
            "'payload.severity' is invalid (must be one of critical, error, warning, info)"
        )
    timestamp = payload.get("timestamp")
    if timestamp is not None:
        try:
            datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
        except ValueError:
            problems.append("'payload.timestamp' is not an ISO 8601 timestamp")
    for name in ("component", "group", "class"):
        if name in payload and not isinstance(payload[name], str):
            problems.append(f"'payload.{name}' must be a string")
    for name in ("images", "links"):
        if name in event and not isinstance(event[name], list):
            problems.append(f"'{name}' must be a list")
    return problems


@dataclass
class Incident:
    """A PagerDuty incident as the fake keeps it: its dedup key, state and events."""

    dedup_key: str
    status: str  # "triggered", "acknowledged" or "resolved"
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status != "resolved"

    @property
    def last_trigger(self) -> dict[str, Any]:
        return next(e for e in reversed(self.events) if e.get("event_action") == "trigger")


class PagerDutyServer(VendorServer):
    """The PagerDuty Events API v2 (https://developer.pagerduty.com/api-reference/368ae3d938c9e-send-an-event-to-pager-duty).

    ``POST /v2/enqueue`` (:attr:`enqueue_url`); a valid event (:func:`pagerduty_problems`)
    is 202 ``{"status":"success","message":"Event processed","dedup_key":...}``; an invalid
    one 400 ``{"status":"invalid event","message":"Event object is invalid","errors":[...]}``.
    429 only when scripted (:meth:`fail_next`). Incidents are kept: a trigger opens one per
    dedup key (or updates the open one), acknowledge and resolve change the open one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.incidents: list[Incident] = []

    @property
    def enqueue_url(self) -> str:
        return self.url + PD_PATH

    def incident(self, dedup_key: str) -> Incident:
        """The latest incident with this dedup key (AssertionError if there is none)."""
        with self.changed:
            found = [i for i in self.incidents if i.dedup_key == dedup_key]
            assert found, (
                f"no incident {dedup_key}; incidents: {[i.dedup_key for i in self.incidents]}"
            )
            return found[-1]

    def check_path(self, method: str, path: str) -> Reply | None:
        if path != PD_PATH:
            return reply(404, {"status": "not found", "message": "Not found"}, note=path)
        if method != "POST":
            return reply(405, {"status": "method not allowed"}, note=method)
        return None

    def answer(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, data: Any
    ) -> Reply:
        if data is NOT_JSON:
            problems = ["Event object is not valid JSON"]
        else:
            problems = pagerduty_problems(data, len(body))
        if problems:
            return reply(
                400,
                {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": problems,
                },
                note="; ".join(problems),
            )
        action = data["event_action"]
        dedup_key = data.get("dedup_key") or secrets.token_hex(16)
        open_ = [i for i in self.incidents if i.dedup_key == dedup_key and i.open]
        current = open_[-1] if open_ else None
        if action == "trigger":
            if current is None:
                current = Incident(dedup_key, "triggered")
                self.incidents.append(current)
            current.events.append(data)
        elif current is not None:
            current.status = "acknowledged" if action == "acknowledge" else "resolved"
            current.events.append(data)
        return reply(
            202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
        )


# --- generic webhook -----------------------------------------------------------------------


class WebhookServer(VendorServer):
    """Any JSON POST, on any path: 200 (a body that is not JSON: 400; another method: 405)."""

    @property
    def payloads(self) -> list[Any]:
        """The accepted JSON bodies, in order."""
        with self.changed:
            return [r.json for r in self.accepted]

    def check_path(self, method: str, path: str) -> Reply | None:
        return None if method == "POST" else reply(405, "method not allowed", note=method)

    def answer(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, data: Any
    ) -> Reply:
        if data is NOT_JSON:
            return reply(400, "body is not JSON", note="body is not JSON")
        return reply(200, "")


# --- Alertmanager --------------------------------------------------------------------------

ALERTMANAGER_BINARY = "/usr/bin/prometheus-alertmanager"
ALERTMANAGER_CONFIG = """\
route:
  receiver: "null"
receivers:
  - name: "null"
"""


class AlertmanagerMissing(RuntimeError):
    pass


def alertmanager_binary() -> str:
    """``$ALERTMANAGER_BINARY``, else /usr/bin/prometheus-alertmanager; raises
    AlertmanagerMissing with what to do when it is not there."""
    binary = os.environ.get("ALERTMANAGER_BINARY") or ALERTMANAGER_BINARY
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        hint = f" ({found} is on PATH: set ALERTMANAGER_BINARY={found})" if found else ""
        raise AlertmanagerMissing(
            f"the Alertmanager binary {binary} is missing or not executable{hint}. Install it "
            "with `make install` (Debian: apt-get install prometheus-alertmanager) or point "
            "ALERTMANAGER_BINARY at an alertmanager 0.25+ binary."
        )
    return binary


class AlertmanagerProcess:
    """A real Alertmanager (no clustering, a null receiver) in ``workdir``.

    ``with AlertmanagerProcess(tmp) as am: am.url, am.alerts_url, am.alerts()``.
    """

    def __init__(self, workdir: Path, *, startup_timeout_s: float = 30.0) -> None:
        self.workdir = workdir
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = workdir / "alertmanager.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alerts_url(self) -> str:
        """``POST`` target of the Alertmanager notifier."""
        return self.url + "/api/v2/alerts"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> Self:
        binary = alertmanager_binary()
        config = self.workdir / "am.yml"
        config.write_text(ALERTMANAGER_CONFIG)
        for _attempt in range(3):  # the free port may be taken before Alertmanager binds it
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [
                        binary,
                        f"--config.file={config}",
                        f"--storage.path={self.workdir}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--cluster.listen-address=",
                        "--log.level=info",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_ready():
                return self
            if "address already in use" not in self.log():
                break
        self.stop()
        raise AssertionError(
            f"Alertmanager did not become ready within {self.startup_timeout_s} s:\n{self.log()[-3000:]}"
        )

    def _wait_ready(self) -> bool:
        """Poll ``GET /-/ready`` (an external process's readiness: nothing to wait on)."""
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def alerts(self, **matchers: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (active, silenced, inhibited and unprocessed alerts; not
        resolved ones), filtered by label equality: ``am.alerts(model="fraud-1")``."""
        query = urllib.parse.urlencode(
            [("filter", f'{name}="{value}"') for name, value in matchers.items()]
        )
        url = self.alerts_url + (f"?{query}" if query else "")
        with urllib.request.urlopen(url, timeout=10) as response:
            alerts: list[dict[str, Any]] = json.loads(response.read())
        return alerts


# --- sample alerts and notifications ------------------------------------------------------

AMOUNT_ID = "0b7c5e0a-0000-5000-8000-000000000001"
COUNTRY_ID = "0b7c5e0a-0000-5000-8000-000000000002"
#: 2026-11-26T10:06:00.000Z: after both sample detections.
CREATED_MS = 1_795_687_560_000
RESOLVE_TIMEOUT_MS = 300_000
ROUTE_ID = "drift/fraud"
GROUP_KEY = '{}:{model="fraud"}'


def amount_alert(alert_id: str = AMOUNT_ID, **fields: Any) -> dict[str, Any]:
    """The README's mean-drift alert (warning), fields overridable."""
    body: dict[str, Any] = {
        "schema_version": 1,
        "alert_id": alert_id,
        "model": "fraud",
        "model_version": "2026-11-01",
        "feature": "amount",
        "drift_type": "mean",
        "detector": {"name": "ADWIN", "params": {"delta": 1e-05, "clock": 4}, "block_size": 16},
        "severity": "warning",
        "detected_at": "2026-11-26T10:04:11.520Z",
        "emitted_at": "2026-11-26T10:04:12.003Z",
        "trigger": {
            "topic": "predictions",
            "partition": 3,
            "offset": 918273,
            "event_id": "e-99812",
        },
        "evidence": {
            "statistic": "mean",
            "effect_size": 0.61,
            "reference": {"count": 512, "mean": 41.2, "std": 38.0, "quantiles": {"p05": 6.1}},
            "current": {"count": 512, "mean": 64.5, "std": 40.1, "quantiles": {"p05": 9.8}},
        },
        "summary": "mean drift on fraud/amount: mean 41.2 -> 64.5 (effect 0.61, ADWIN)",
    }
    body.update(fields)
    return body


def country_alert(alert_id: str = COUNTRY_ID, **fields: Any) -> dict[str, Any]:
    """A categorical-drift alert (critical), fields overridable."""
    body: dict[str, Any] = {
        "schema_version": 1,
        "alert_id": alert_id,
        "model": "fraud",
        "model_version": "2026-11-01",
        "feature": "country",
        "drift_type": "categorical",
        "detector": {"name": "ADWIN", "params": {"delta": 1e-05}, "block_size": 16},
        "severity": "critical",
        "detected_at": "2026-11-26T10:05:00.000Z",
        "emitted_at": "2026-11-26T10:05:00.250Z",
        "trigger": {"topic": "predictions", "partition": 1, "offset": 77, "event_id": "e-100"},
        "evidence": {
            "statistic": "share",
            "effect_size": 1.5,
            "category": "US",
            "total_variation": 0.45,
            "reference": {"count": 400, "frequencies": {"US": 0.5, "DE": 0.5}},
            "current": {"count": 400, "frequencies": {"US": 0.05, "DE": 0.95}},
        },
        "summary": "categorical drift on fraud/country: share of 'US' 50.0% -> 5.0%",
    }
    body.update(fields)
    return body


def many_alerts(n: int, *, model: str = "fraud", feature_chars: int = 0) -> list[dict[str, Any]]:
    """``n`` alerts alternating between the two samples, ids ``...-<i>``; with
    ``feature_chars``, features that long (to fill a body)."""
    bodies = []
    for i in range(n):
        make = amount_alert if i % 2 == 0 else country_alert
        feature = f"f{i:05d}".ljust(feature_chars, "x") if feature_chars else f"feature_{i}"
        bodies.append(make(f"0b7c5e0a-0000-5000-8000-{i:012d}", model=model, feature=feature))
    return bodies


def notification(
    kind: IntegrationKind,
    url: str,
    bodies: Sequence[Mapping[str, Any]] | None = None,
    *,
    status: Status = "firing",
    options: Mapping[str, Any] | None = None,
    secrets: tuple[str, ...] = (),
    new_ids: Iterable[str] | None = None,
    created_ms: int = CREATED_MS,
    resolve_timeout_ms: int = RESOLVE_TIMEOUT_MS,
    group_labels: Mapping[str, str] | None = None,
    group_key: str = GROUP_KEY,
    route_id: str = ROUTE_ID,
    reviews: Mapping[str, Review] | None = None,
) -> Notification:
    """A notification for one integration of receiver ``ml`` (default: the two samples,
    the country alert new)."""
    if bodies is None:
        bodies = [amount_alert(), country_alert()]
    alerts = tuple(RoutedAlert.from_json(dict(body)) for body in bodies)
    integration = Integration(
        id=f"ml/{kind}/0",
        receiver="ml",
        kind=kind,
        url=url,
        secrets=secrets,
        options=dict(options or {}),
    )
    return Notification(
        integration=integration,
        route_id=route_id,
        group_key=group_key,
        group_labels=dict(group_labels if group_labels is not None else {"model": "fraud"}),
        status=status,
        alerts=alerts,
        new_ids=frozenset(new_ids if new_ids is not None else [COUNTRY_ID]),
        created_ms=created_ms,
        resolve_timeout_ms=resolve_timeout_ms,
        reviews=dict(reviews or {}),
    )


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(name="slack_server")
def slack_server_fixture() -> Iterator[SlackServer]:
    with SlackServer() as server:
        yield server


@pytest.fixture(name="pagerduty_server")
def pagerduty_server_fixture() -> Iterator[PagerDutyServer]:
    with PagerDutyServer() as server:
        yield server


@pytest.fixture(name="webhook_server")
def webhook_server_fixture() -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        yield server


@pytest.fixture(name="alertmanager", scope="session")
def alertmanager_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertmanagerProcess]:
    """One real Alertmanager for the session: tests keep apart by their own label values
    (a unique ``model``). Fails (never skips) when the binary is missing."""
    missing = ""
    try:
        alertmanager_binary()
    except AlertmanagerMissing as exc:
        missing = str(exc)
    if missing:  # failed outside the except block: one clear line, no chained traceback
        pytest.fail(missing, pytrace=False)
    with AlertmanagerProcess(tmp_path_factory.mktemp("alertmanager")) as process:
        yield process
