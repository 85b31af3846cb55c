"""The console's requests and responses (pure: the audit log is an :class:`AuditSource`).

Every request is authenticated first (:mod:`detector.console.auth`): without an identity
the answer is 401 with an empty body, whatever the path, so an anonymous client learns
nothing, not even which alerts exist. Every response carries :data:`SECURITY_HEADERS`: a
Content-Security-Policy that allows no script at all and styles only from the console's
own stylesheet, no framing, no referrer, no caching.

The log is read anew on each page (:meth:`AuditSource.records`): it is small (an audit
record per alert, assignment, notification and decision), and a decision has to read it
whole anyway to be checked against the decisions before it, so a page never shows a state
older than the last decision. Decisions are written one at a time per process (a lock):
two at once would fence each other's transactional producer.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, unquote, urlsplit

from detector.console import views
from detector.console.auth import Authenticator, Csrf, Headers, same_origin

#: On every response.
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; img-src 'self' data:; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
HTML = "text/html; charset=utf-8"
#: The longest reason taken (an audit record is read by people).
MAX_REASON = 2000
#: The largest request body read (a form is a few hundred bytes).
MAX_BODY = 64 * 1024


class AuditSource(Protocol):
    """Where the console reads the audit log and writes decisions."""

    def records(self) -> list[tuple[int, int, bytes | None]]:
        """Every record of the audit topic: (partition, offset, value), each partition's
        in offset order. Raises ``AuditLogError`` when the topic cannot be read."""
        ...

    def decide(self, action: str, alert_id: str, reason: str, by: str) -> int:
        """Record a decision with ``by`` as its author; its offset. Raises ``ReviewError``
        when the decision does not apply, ``AuditLogError`` when it cannot be written."""
        ...


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the request line's path and query
    headers: Headers
    body: bytes = b""

    @staticmethod
    def of(
        method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes = b""
    ) -> Request:
        """A request from its header lines (names in any case, repeats kept)."""
        collected: dict[str, list[str]] = {}
        for name, value in headers:
            collected.setdefault(name.lower(), []).append(value)
        return Request(method.upper(), target, collected, body)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    def all_headers(self) -> list[tuple[str, str]]:
        """Its headers with :data:`SECURITY_HEADERS` (and Content-Type, -Length)."""
        out = list(SECURITY_HEADERS)
        if self.content_type is not None:
            out.append(("Content-Type", self.content_type))
        out.append(("Content-Length", str(len(self.body))))
        return out + self.headers


def _templates() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("detector.console", "templates"),
        autoescape=select_autoescape(("html",), default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["url"] = lambda value: quote(str(value), safe="")
    return env


def default_plot(alert: dict[str, Any]) -> str | None:
    """The alert's evidence as SVG (the tuning report's plots), or None without
    matplotlib."""
    try:
        from detector.audit.figures import evidence_svg
    except ImportError:
        return None
    try:
        return str(evidence_svg(alert))
    except ImportError:  # matplotlib is an extra: drift-detector[tuning]
        return None


class Console:
    """Requests to responses: ``handle`` is all the server calls."""

    def __init__(
        self,
        source: AuditSource,
        auth: Authenticator,
        *,
        csrf: Csrf | None = None,
        plot: Callable[[dict[str, Any]], str | None] = default_plot,
    ) -> None:
        self.source = source
        self.auth = auth
        self.csrf = csrf or Csrf()
        self.plot = plot
        self._templates = _templates()
        self._writing = threading.Lock()

    def handle(self, request: Request) -> Response:
        who = self.auth.identify(request.headers)
        if who is None:
            challenge = [("WWW-Authenticate", 'Bearer realm="detector console"')]
            return Response(401, headers=challenge if self.auth.bearer else [])
        from detector.kafka.audit import AuditLogError

        path = urlsplit(request.target).path
        try:
            if path == "/static/console.css":
                return self._only_get(request) or self._stylesheet()
            if path == "/":
                return self._only_get(request) or self._index(request, who)
            if path.startswith("/alerts/") and path.count("/") == 2:
                alert_id = unquote(path.removeprefix("/alerts/"))
                if request.method == "POST":
                    return self._decide(request, who, alert_id)
                return self._only_get(request, "GET, POST") or self._alert(who, alert_id)
        except AuditLogError as exc:
            title = "audit log unavailable"
            return self._page(503, "message.html", who, title=title, text=str(exc))
        return self._page(404, "message.html", who, title="not found", text=f"no page {path}")

    # -- pages ---------------------------------------------------------------------------

    def _page(self, status: int, template: str, who: str, **context: Any) -> Response:
        html = self._templates.get_template(template).render(who=who, **context)
        return Response(status, html.encode(), HTML)

    def _only_get(self, request: Request, allow: str = "GET") -> Response | None:
        if request.method == "GET":
            return None
        return Response(405, b"", None, [("Allow", allow)])

    def _stylesheet(self) -> Response:
        css = resources.files("detector.console").joinpath("static/console.css").read_bytes()
        return Response(200, css, "text/css; charset=utf-8")

    def _index(self, request: Request, who: str) -> Response:
        query = parse_qs(urlsplit(request.target).query)
        state = query.get("state", ["unresolved"])[-1]
        if state not in views.FILTERS:
            text = f"state: one of {', '.join(views.FILTERS)}"
            return self._page(400, "message.html", who, title="bad request", text=text)
        page = views.overview(self.source.records(), state)
        return self._page(200, "index.html", who, page=page, filters=list(views.FILTERS))

    def _alert(self, who: str, alert_id: str, *, status: int = 200, message: str = "") -> Response:
        page = views.alert_page(self.source.records(), alert_id)
        if page is None:
            text = f"no alert {alert_id} in the audit log"
            return self._page(404, "message.html", who, title="not found", text=text)
        svg = self.plot(page.review.alert)
        plot = None
        if svg is not None:
            plot = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
        return self._page(
            status,
            "alert.html",
            who,
            page=page,
            plot=plot,
            message=message,
            csrf=self.csrf.token(who),
            labels=views.LABELS,
        )

    # -- the forms -----------------------------------------------------------------------

    def _decide(self, request: Request, who: str, alert_id: str) -> Response:
        from detector.audit.review import ReviewError

        form = _form(request)
        token = form.get("csrf", "")
        if not same_origin(request.headers) or not token or not self.csrf.valid(who, token):
            text = "the form is not one of this console's pages (missing or wrong CSRF token)"
            return self._page(403, "message.html", who, title="forbidden", text=text)
        action, reason = form.get("action", ""), form.get("reason", "").strip()
        if not reason or len(reason) > MAX_REASON:
            message = f"the reason is longer than {MAX_REASON} characters"
            if not reason:
                message = "say why: the reason is what an auditor reads"
            return self._alert(who, alert_id, status=400, message=message)
        try:
            with self._writing:
                self.source.decide(action, alert_id, reason, who)
        except ReviewError as exc:
            return self._alert(who, alert_id, status=409, message=str(exc))
        return Response(303, headers=[("Location", f"/alerts/{quote(alert_id, safe='')}")])


def _form(request: Request) -> dict[str, str]:
    """The fields of an url-encoded form (the last value of each; {} for anything else)."""
    kind = request.headers.get("content-type", [""])[0].split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    try:
        text = request.body.decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=16, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[-1] for name, values in fields.items()}


__all__ = [
    "HTML",
    "MAX_BODY",
    "MAX_REASON",
    "SECURITY_HEADERS",
    "AuditSource",
    "Console",
    "Request",
    "Response",
    "default_plot",
]
