"""The review console without a broker: who may use it (401), its forms' CSRF checks (403),
the security headers of every response, escaping, and refused decisions (409), through its
real HTTP server with the audit log held in memory (an AuditSource of real audit records)."""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from detector.audit.chain import GENESIS, Chain, canonical, digest
from detector.audit.review import CHAIN, decision_body, fold
from detector.cli import main
from detector.console.app import SECURITY_HEADERS, Console
from detector.console.auth import Authenticator, AuthError, Csrf, parse_tokens, same_origin
from detector.console.server import ConsoleServer

AT = 1_796_616_000_000
ANA = "ana-token-0123456789abcdef"
BEN = "ben-token-0123456789abcdef"
FORM = "application/x-www-form-urlencoded"


def _alert(alert_id: str, feature: str = "amount", model: str = "fraud") -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "model": model,
        "model_version": "v3",
        "feature": feature,
        "drift_type": "mean",
        "detector": {"name": "ADWIN", "params": {"delta": 0.002}, "block_size": 64},
        "severity": "critical",
        "detected_at": f"2026-12-07T10:00:0{len(alert_id) % 10}.000Z",
        "emitted_at": "2026-12-07T10:00:09.000Z",
        "trigger": {"topic": "preds", "partition": 0, "offset": 17, "event_id": "e17"},
        "evidence": {
            "reference": {"count": 512, "mean": 0.1234567, "std": 1.0},
            "current": {"count": 512, "mean": 1.5, "std": 1.1},
            "statistic": "mean",
            "effect_size": 1.37,
        },
        "summary": f"{model}/{feature}: the mean rose",
    }


class MemoryLog:
    """An audit log in memory: a sidecar chain's alerts and the review chain's decisions,
    checked as ``append_decision`` checks them."""

    def __init__(self, *alerts: dict[str, Any]) -> None:
        self.sidecar = Chain("sidecar/0", "pod-0")
        self.review = Chain(CHAIN, "")
        self.values = [self.sidecar.append("alert", a, AT) for a in alerts]

    def records(self) -> list[tuple[int, int, bytes | None]]:
        return [(0, offset, value) for offset, value in enumerate(self.values)]

    def decide(self, action: str, alert_id: str, reason: str, by: str) -> int:
        body = decision_body(fold(self.values), action, alert_id, reason)
        self.review.writer = by
        self.values.append(self.review.append("review", body, AT + len(self.values)))
        return len(self.values) - 1

    def decisions(self) -> list[tuple[str, str, str, str]]:
        return [
            (d.by, d.action, alert_id, d.reason)
            for alert_id, review in fold(self.values).items()
            for d in review.decisions
        ]


class Client:
    """Raw HTTP requests to the console (http.client: no redirects followed)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, dict[str, str], str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read().decode()
        finally:
            connection.close()

    def get(self, path: str, token: str | None = ANA, **headers: str) -> Any:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("GET", path, headers)

    def post(
        self, path: str, fields: dict[str, str], token: str | None = ANA, **headers: Any
    ) -> Any:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        headers.setdefault("Content-Type", FORM)
        return self.request("POST", path, headers, urlencode(fields).encode())


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found is not None, page
    return found.group(1)


@pytest.fixture
def log() -> MemoryLog:
    return MemoryLog(_alert("a1"), _alert("a2", feature="<script>alert(1)</script>"))


@pytest.fixture
def client(log: MemoryLog) -> Iterator[Client]:
    auth = Authenticator([("ana", ANA), ("ben", BEN)], ["X-Forwarded-User"])
    plot = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    with ConsoleServer(Console(log, auth, plot=lambda alert: plot)) as server:
        yield Client(server.port)


class TestIdentity:
    def test_token_file_lines(self) -> None:
        text = f"# reviewers\n\nana:{ANA}\n ben : {BEN} \n"
        assert parse_tokens(text, "tokens") == (("ana", ANA), ("ben", BEN))

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            (f"ana {ANA}\n", "tokens line 1: expected name:token (a name, a colon, the token)"),
            (f"#\n:{ANA}\n", "tokens line 2: expected name:token (a name, a colon, the token)"),
            ("ana:short\n", "tokens line 1: the token of ana is shorter than 16 characters"),
            (
                f"ana:{ANA}\nben:{ANA}\n",
                "tokens line 2: the token of ben is on an earlier line too",
            ),
            ("# nobody\n", "tokens: no name:token line"),
        ],
    )
    def test_bad_token_files_are_refused_by_line(self, text: str, message: str) -> None:
        with pytest.raises(AuthError) as caught:
            parse_tokens(text, "tokens")
        assert str(caught.value) == message
        assert ANA not in message

    def test_bearer_tokens_and_trusted_headers(self) -> None:
        auth = Authenticator(
            [("ana", ANA), ("ben", BEN)], ["X-Forwarded-User", "X-Auth-Request-User"]
        )
        assert auth.identify({"authorization": [f"Bearer {ANA}"]}) == "ana"
        assert auth.identify({"authorization": [f"bearer {BEN}"]}) == "ben"
        assert auth.identify({"authorization": [f"Bearer {ANA}x"]}) is None
        assert auth.identify({"authorization": [f"Basic {ANA}"]}) is None
        assert auth.identify({"authorization": [f"Bearer {ANA}", f"Bearer {BEN}"]}) is None
        # A wrong token is refused, not passed on to the headers.
        headers = {"authorization": ["Bearer nope"], "x-forwarded-user": ["cy"]}
        assert auth.identify(headers) is None
        assert auth.identify({"x-forwarded-user": [" cy@example.com "]}) == "cy@example.com"
        assert auth.identify({"x-auth-request-user": ["dee"]}) == "dee"
        both = {"x-forwarded-user": ["cy"], "x-auth-request-user": ["dee"]}
        assert auth.identify(both) == "cy"  # the first listed
        assert auth.identify({"x-forwarded-user": ["cy", "mallory"]}) is None
        assert auth.identify({"x-forwarded-user": ["cy\nby: mallory"]}) is None
        assert auth.identify({"x-forwarded-user": ["x" * 129]}) is None
        assert auth.identify({"x-forwarded-user": [""]}) is None
        assert auth.identify({}) is None

    def test_headers_are_not_trusted_unless_named(self) -> None:
        auth = Authenticator([("ana", ANA)])
        assert auth.identify({"x-forwarded-user": ["cy"]}) is None
        assert (
            Authenticator(trusted_headers=["X-Forwarded-User"]).identify(
                {"authorization": [f"Bearer {ANA}"]}
            )
            is None
        )

    def test_neither_is_refused(self) -> None:
        with pytest.raises(AuthError) as caught:
            Authenticator()
        assert str(caught.value) == (
            "no way to name the reviewer: give --token-file FILE (name:token lines) or, behind "
            "an authenticating proxy, --trusted-header NAME"
        )

    def test_csrf_tokens_are_per_identity_and_per_process(self) -> None:
        csrf = Csrf(b"k" * 32)
        assert csrf.valid("ana", csrf.token("ana"))
        assert not csrf.valid("ben", csrf.token("ana"))
        assert not csrf.valid("ana", Csrf().token("ana"))
        assert not csrf.valid("ana", "")

    @pytest.mark.parametrize(
        ("headers", "ok"),
        [
            ({}, True),
            ({"sec-fetch-site": ["same-origin"], "origin": ["http://h:1"], "host": ["h:1"]}, True),
            ({"origin": ["https://console.example.com"], "host": ["console.example.com"]}, True),
            ({"sec-fetch-site": ["cross-site"]}, False),
            ({"sec-fetch-site": ["same-site"]}, False),
            ({"origin": ["http://evil.example"], "host": ["h:1"]}, False),
            ({"origin": ["null"], "host": ["h:1"]}, False),
            # Referrer-Policy: no-referrer makes a browser's form say Origin: null.
            ({"sec-fetch-site": ["same-origin"], "origin": ["null"], "host": ["h:1"]}, True),
            ({"sec-fetch-site": ["cross-site"], "origin": ["http://h:1"], "host": ["h:1"]}, False),
        ],
    )
    def test_same_origin(self, headers: dict[str, list[str]], ok: bool) -> None:
        assert same_origin(headers) is ok


class TestPages:
    def test_no_identity_no_page(self, client: Client) -> None:
        for path in ("/", "/alerts/a1", "/static/console.css", "/nowhere"):
            status, headers, body = client.get(path, token=None)
            assert (status, body) == (401, "")
            assert headers["WWW-Authenticate"] == 'Bearer realm="detector console"'
        assert client.get("/", token="wrong-token-0123456789")[0] == 401
        status, _, body = client.post("/alerts/a1", {"action": "ack", "reason": "x"}, token=None)
        assert (status, body) == (401, "")

    def test_the_front_page_lists_open_alerts_per_model(
        self, client: Client, log: MemoryLog
    ) -> None:
        log.decide("resolve", "a1", "seasonal", "ben")
        status, _, page = client.get("/")
        assert status == 200
        assert 'signed in as <strong id="identity">ana</strong>' in page
        assert re.findall(r'data-alert-id="([^"]+)"', page) == ["a2"]
        assert "1 open, 0 acknowledged, 1 resolved" in page
        resolved = client.get("/?state=resolved")[2]
        assert re.findall(r'data-alert-id="([^"]+)"', resolved) == ["a1"]
        assert "resolve by ben: seasonal" in resolved
        status, _, page = client.get("/?state=nope")
        assert status == 400
        assert "state: one of unresolved, open, acknowledged, resolved, all" in page

    def test_user_strings_are_escaped(self, client: Client) -> None:
        for path in ("/", "/alerts/a2"):
            status, _, page = client.get(path)
            assert status == 200
            assert "<script>" not in page
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        status, _, page = client.get("/alerts/%3Cscript%3E")
        assert status == 404
        assert "<script>" not in page and "no alert &lt;script&gt; in the audit log" in page

    def test_an_alert_page(self, client: Client) -> None:
        status, _, page = client.get("/alerts/a1")
        assert status == 200
        assert re.findall(r'<form method="post" action="/alerts/a1" id="form-(\w+)"', page) == [
            "ack",
            "resolve",
            "comment",
        ]
        assert "<tr><th>mean</th><td>0.1235</td><td>1.5</td></tr>" in page
        assert '<img id="plot" src="data:image/svg+xml;base64,' in page
        assert "<tr><th>trigger</th><td>preds[0] offset 17, event e17</td></tr>" in page
        assert client.get("/alerts/zzz")[0] == 404

    def test_the_notifications_that_named_the_alert(self, client: Client, log: MemoryLog) -> None:
        router = Chain("router/0", "router-0")
        sent = {
            "receiver": "oncall",
            "integration": "slack",
            "status": "firing",
            "group_key": "fraud",
            "group_labels": {"model": "fraud"},
            "alert_ids": ["a1"],
            "new_alert_ids": ["a1"],
            "accepted": True,
            "reason": "",
            "http_status": 200,
            "attempts": 1,
        }
        failed = {**sent, "receiver": "<b>pager</b>", "integration": "pagerduty"}
        failed |= {"accepted": False, "reason": "HTTP 400", "http_status": 400, "attempts": 3}
        log.values.append(router.append("notification", sent, AT + 5))
        log.values.append(router.append("notification", failed, AT + 6))
        later = {"audit": 1, "chain": "control", "seq": 0, "kind": "state_snapshot", "at": "x"}
        later |= {"by": "ops", "body": {"model": "fraud"}, "prev": GENESIS}
        log.values.append(canonical({**later, "hash": digest(later)}))  # a kind added later
        page = client.get("/alerts/a1")[2]
        rows = re.findall(
            r"<tr><td>(2026[^<]*)</td>(.*?)</tr>", page.split('id="notifications"')[1]
        )
        assert rows[:2] == [
            (
                "2026-12-07T04:00:00.005Z",
                "<td>oncall</td><td>slack</td><td>firing</td><td>accepted (HTTP 200)</td><td>1</td>",
            ),
            (
                "2026-12-07T04:00:00.006Z",
                "<td>&lt;b&gt;pager&lt;/b&gt;</td><td>pagerduty</td><td>firing</td><td>given up: HTTP 400 (HTTP 400)</td><td>3</td>",
            ),
        ]
        assert "No notification about this alert" in client.get("/alerts/a2")[2]

    def test_security_headers_on_every_response(self, client: Client, log: MemoryLog) -> None:
        csrf = _csrf(client.get("/alerts/a1")[2])
        answers = [
            client.get("/"),
            client.get("/alerts/a1"),
            client.get("/static/console.css"),
            client.get("/nowhere"),
            client.get("/?state=nope"),
            client.get("/", token=None),
            client.request("DELETE", "/", {"Authorization": f"Bearer {ANA}"}),
            client.post("/alerts/a1", {"action": "ack", "reason": "x"}),
            client.post("/alerts/a1", {"action": "ack", "reason": "on it", "csrf": csrf}),
            client.post("/alerts/a1", {"action": "ack", "reason": "again", "csrf": csrf}),
            client.request("POST", "/alerts/a1", {"Content-Length": str(10**6)}),
        ]
        assert [status for status, _, _ in answers] == [
            200,
            200,
            200,
            404,
            400,
            401,
            405,
            403,
            303,
            409,
            413,
        ]
        for _, headers, _ in answers:
            assert {k: headers.get(k) for k, _ in SECURITY_HEADERS} == dict(SECURITY_HEADERS)
        assert dict(SECURITY_HEADERS)["Content-Security-Policy"] == (
            "default-src 'none'; img-src 'self' data:; style-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        assert answers[0][1]["Content-Type"] == "text/html; charset=utf-8"
        assert answers[2][1]["Content-Type"] == "text/css; charset=utf-8"
        assert answers[6][1]["Allow"] == "GET"


class TestDecisions:
    def test_a_decision_is_recorded_by_the_identity(self, client: Client, log: MemoryLog) -> None:
        csrf = _csrf(client.get("/alerts/a1")[2])
        fields = {"action": "ack", "reason": "looking at the feed", "csrf": csrf, "by": "mallory"}
        status, headers, body = client.post(
            "/alerts/a1",
            fields,
            Origin=f"http://127.0.0.1:{client.port}",
            **{"Sec-Fetch-Site": "same-origin"},
        )
        assert (status, headers["Location"], body) == (303, "/alerts/a1", "")
        assert log.decisions() == [("ana", "ack", "a1", "looking at the feed")]
        page = client.get("/alerts/a1")[2]
        assert '<strong id="state" class="state acknowledged">acknowledged</strong>' in page
        assert "<td>ana</td><td>ack</td><td>looking at the feed</td>" in page
        assert re.findall(r'id="form-(\w+)"', page) == ["resolve", "comment", "reopen"]

    def test_the_proxys_header_names_the_reviewer(self, client: Client, log: MemoryLog) -> None:
        who = {"X-Forwarded-User": "cy@example.com"}
        page = client.request("GET", "/alerts/a1", who)[2]
        fields = {"action": "comment", "reason": "upstream change", "csrf": _csrf(page)}
        status = client.post("/alerts/a1", fields, token=None, **who)[0]
        assert status == 303
        assert log.decisions() == [("cy@example.com", "comment", "a1", "upstream change")]

    def test_forms_without_the_token_or_from_elsewhere_are_forbidden(
        self, client: Client, log: MemoryLog
    ) -> None:
        csrf = _csrf(client.get("/alerts/a1")[2])
        ben_csrf = _csrf(client.get("/alerts/a1", token=BEN)[2])
        ok = {"action": "ack", "reason": "on it"}
        refused = [
            client.post("/alerts/a1", ok),
            client.post("/alerts/a1", {**ok, "csrf": ""}),
            client.post("/alerts/a1", {**ok, "csrf": "0" * 64}),
            client.post("/alerts/a1", {**ok, "csrf": ben_csrf}),  # another reviewer's
            client.post("/alerts/a1", {**ok, "csrf": csrf}, Origin="http://evil.example"),
            client.post("/alerts/a1", {**ok, "csrf": csrf}, **{"Sec-Fetch-Site": "cross-site"}),
            client.post("/alerts/a1", {**ok, "csrf": csrf}, **{"Content-Type": "text/plain"}),
        ]
        for status, _, page in refused:
            assert status == 403
            assert (
                "the form is not one of this console&#39;s pages (missing or wrong CSRF token)"
                in page
            )
        assert log.decisions() == []

    def test_refused_decisions_say_why(self, client: Client, log: MemoryLog) -> None:
        log.decide("ack", "a1", "mine", "ben")
        csrf = _csrf(client.get("/alerts/a1")[2])
        status, _, page = client.post("/alerts/a1", {"action": "ack", "reason": "x", "csrf": csrf})
        assert status == 409
        message = re.search(r'<p class="message" id="message" role="alert">(.*)</p>', page)
        assert message is not None
        assert message.group(1) == (
            "alert a1 is acknowledged (by ben at 2026-12-07T04:00:00.002Z): cannot ack it"
        )
        assert client.post("/alerts/zzz", {"action": "ack", "reason": "x", "csrf": csrf})[0] == 404
        status, _, page = client.post(
            "/alerts/a1", {"action": "resolve", "reason": " ", "csrf": csrf}
        )
        assert status == 400
        assert "say why: the reason is what an auditor reads" in page
        assert log.decisions() == [("ben", "ack", "a1", "mine")]


def test_the_command_needs_a_way_to_name_reviewers(tmp_path: Path, capsys: Any) -> None:
    assert main(["console", "--port", "0"]) == 2
    assert capsys.readouterr().err.startswith("detector: no way to name the reviewer: give ")
    tokens = tmp_path / "tokens"
    tokens.write_text("ana:short\n")
    assert main(["console", "--token-file", str(tokens)]) == 2
    assert capsys.readouterr().err == (
        f"detector: --token-file {tokens} line 1: the token of ana is shorter than 16 characters\n"
    )
    assert main(["console", "--token-file", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == (
        f"detector: --token-file {tmp_path / 'none'}: cannot read it (No such file or directory)\n"
    )


class _Unreadable(MemoryLog):
    def records(self) -> list[tuple[int, int, bytes | None]]:
        from detector.kafka.audit import AuditLogError

        raise AuditLogError("audit topic 'alerts.audit' does not exist")


def test_an_unreadable_log_is_a_503_page() -> None:
    auth = Authenticator([("ana", ANA)])
    with ConsoleServer(Console(_Unreadable(), auth)) as server:
        status, headers, page = Client(server.port).get("/")
    assert status == 503
    assert "audit topic &#39;alerts.audit&#39; does not exist" in page
    assert headers["Content-Security-Policy"] == dict(SECURITY_HEADERS)["Content-Security-Policy"]


def test_the_command_serves_until_sigterm(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ana:{ANA}\n")
    argv = ["console", "--port", "0", "--token-file", str(tokens)]
    argv += ["--bootstrap-servers", "127.0.0.1:9"]
    process = subprocess.Popen(
        [sys.executable, "-m", "detector", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.fullmatch(r"review console on http://127\.0\.0\.1:(\d+)\n", line)
        assert found is not None, line + process.stderr.read()
        client = Client(int(found.group(1)))
        assert client.get("/static/console.css")[0] == 200
        assert client.get("/", token=None)[0] == 401
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
