"""The notifiers' requests, sent with httpx to local vendor fakes (which enforce each
vendor's contract) and to a real Alertmanager; and the fakes' own contract checks."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
import vendors
from vendors import (
    AMOUNT_ID,
    COUNTRY_ID,
    AlertmanagerProcess,
    PagerDutyServer,
    SlackServer,
    WebhookServer,
    amount_alert,
    country_alert,
    notification,
)

from detector.alerts import rfc3339
from detector.router.model import ACCEPTED, HttpRequest, Notification, Outcome
from detector.router.notify import build_notifier
from detector.router.notify.alertmanager import fingerprint

ROUTING_KEY = "0123456789abcdef0123456789abcdef"


def send(request: HttpRequest) -> httpx.Response:
    with httpx.Client(timeout=10.0) as client:
        return client.request(
            request.method, request.url, headers=dict(request.headers), content=request.body
        )


def deliver(n: Notification) -> tuple[httpx.Response, Outcome]:
    """Send the notifier's request once; the answer and what the notifier makes of it."""
    notifier = build_notifier(n.integration)
    response = send(notifier.request(n))
    return response, notifier.classify(response.status_code, response.headers, response.content)


def post_json(url: str, payload: Any) -> httpx.Response:
    with httpx.Client(timeout=10.0) as client:
        return client.post(url, json=payload)


# --- Slack ---------------------------------------------------------------------------------


class TestSlack:
    def test_firing_and_resolved_are_accepted(self, slack_server: SlackServer) -> None:
        firing = notification("slack", slack_server.webhook_url, options={"channel": "#ml"})
        resolved = notification("slack", slack_server.webhook_url, status="resolved")
        for n in (firing, resolved):
            response, outcome = deliver(n)
            assert (response.status_code, response.text) == (200, "ok")
            assert outcome == ACCEPTED
        received = slack_server.wait_for(2)
        assert [r.path for r in received] == [slack_server.path] * 2
        first, second = slack_server.messages
        assert first["channel"] == "#ml"
        assert first["blocks"][0]["text"]["text"].startswith("[FIRING:2] fraud")
        assert second["blocks"][0]["text"]["text"].startswith("[RESOLVED] fraud")
        for message in (first, second):
            ids = message["blocks"][-1]["elements"][0]["text"]
            assert AMOUNT_ID in ids and COUNTRY_ID in ids
        assert received[0].headers["content-type"] == "application/json"
        assert slack_server.violations == []

    @pytest.mark.parametrize("n_alerts", [200, 3000])
    def test_many_alerts_pass_block_kit(self, slack_server: SlackServer, n_alerts: int) -> None:
        bodies = vendors.many_alerts(n_alerts)
        _, outcome = deliver(notification("slack", slack_server.webhook_url, bodies))
        assert outcome == ACCEPTED, slack_server.requests[-1].note
        (message,) = slack_server.messages
        assert len(message["blocks"]) <= 50
        named = " ".join(
            e["text"] for b in message["blocks"] if b["type"] == "context" for e in b["elements"]
        )
        assert all(b["alert_id"] in named for b in bodies)

    def test_a_500_once_is_retryable_then_accepted(self, slack_server: SlackServer) -> None:
        slack_server.fail_next(500, "internal_error")
        n = notification("slack", slack_server.webhook_url)
        _, first = deliver(n)
        assert (first.accepted, first.retryable, first.reason) == (False, True, "http_5xx")
        _, second = deliver(n)
        assert second == ACCEPTED
        assert [r.status for r in slack_server.requests] == [500, 200]

    def test_a_scripted_429_carries_retry_after(self, slack_server: SlackServer) -> None:
        slack_server.fail_next(429, "rate_limited", retry_after=7)
        _, outcome = deliver(notification("slack", slack_server.webhook_url))
        assert outcome == Outcome(False, True, "rate_limited", 429, "rate_limited", 7.0)


class TestSlackFake:
    @pytest.mark.parametrize(
        ("payload", "problem"),
        [
            ({"channel": "#x"}, "neither text nor blocks"),
            (
                {"text": "t", "blocks": [{"type": "divider"}] * 51},
                "blocks: 51, more than 50",
            ),
            ({"text": "t", "blocks": [{"type": "banner"}]}, "unknown block type 'banner'"),
            (
                {"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]},
                "151 characters, more than 150",
            ),
            (
                {"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}]},
                "'mrkdwn' not in ['plain_text']",
            ),
            (
                {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}}]},
                "3001 characters, more than 3000",
            ),
            (
                {
                    "blocks": [
                        {
                            "type": "context",
                            "elements": [{"type": "plain_text", "text": "c"}] * 11,
                        }
                    ]
                },
                "11 elements, 1 to 10 allowed",
            ),
        ],
    )
    def test_block_kit_violations_are_invalid_payload(
        self, slack_server: SlackServer, payload: dict[str, Any], problem: str
    ) -> None:
        response = post_json(slack_server.webhook_url, payload)
        assert (response.status_code, response.text) == (400, "invalid_payload")
        (received,) = slack_server.requests
        assert problem in received.note
        assert slack_server.accepted == []

    def test_a_body_that_is_not_json_is_invalid_payload(self, slack_server: SlackServer) -> None:
        with httpx.Client() as client:
            response = client.post(slack_server.webhook_url, content=b"text=hello")
        assert (response.status_code, response.text) == (400, "invalid_payload")

    def test_an_unknown_webhook_is_no_service_and_permanent(
        self, slack_server: SlackServer
    ) -> None:
        wrong = slack_server.url + "/services/T000/B000/revoked"
        response, outcome = deliver(notification("slack", wrong))
        assert (response.status_code, response.text) == (404, "no_service")
        assert outcome == Outcome(False, False, "http_4xx", 404, "no_service")

    def test_a_burst_is_rate_limited_with_retry_after(self, slack_server: SlackServer) -> None:
        n = notification("slack", slack_server.webhook_url)
        outcomes = [deliver(n)[1] for _ in range(slack_server.burst + 1)]
        assert outcomes[:-1] == [ACCEPTED] * slack_server.burst
        limited = outcomes[-1]
        assert (limited.reason, limited.retryable, limited.status) == ("rate_limited", True, 429)
        last = slack_server.requests[-1]
        assert last.status == 429
        assert limited.retry_after_s is not None and limited.retry_after_s >= 1
        assert float(int(limited.retry_after_s)) == limited.retry_after_s  # whole seconds
        # Honouring Retry-After: the next message goes through, and nothing came early.
        time.sleep(limited.retry_after_s)
        assert deliver(n)[1] == ACCEPTED
        assert slack_server.violations == []

    def test_a_request_before_retry_after_is_a_violation(self) -> None:
        with SlackServer(burst=1) as slack:
            n = notification("slack", slack.webhook_url)
            assert deliver(n)[1] == ACCEPTED
            assert deliver(n)[1].reason == "rate_limited"
            assert slack.violations == []
            deliver(n)  # at once, ignoring Retry-After
            assert len(slack.violations) == 1
            assert "before the announced Retry-After" in slack.violations[0]


# --- PagerDuty -----------------------------------------------------------------------------


class TestPagerDuty:
    def notification(self, server: PagerDutyServer, **kwargs: Any) -> Notification:
        return notification(
            "pagerduty",
            server.enqueue_url,
            options={"routing_key": ROUTING_KEY},
            secrets=(ROUTING_KEY,),
            **kwargs,
        )

    def test_trigger_update_resolve_is_one_incident(
        self, pagerduty_server: PagerDutyServer
    ) -> None:
        first = self.notification(pagerduty_server, bodies=[amount_alert()])
        both = self.notification(pagerduty_server)
        resolved = self.notification(pagerduty_server, status="resolved")
        for n in (first, both, resolved):
            response, outcome = deliver(n)
            assert response.status_code == 202, response.text
            assert response.json() == {
                "status": "success",
                "message": "Event processed",
                "dedup_key": n.dedup_key,
            }
            assert outcome == ACCEPTED
        assert len(pagerduty_server.wait_for(3)) == 3
        (incident,) = pagerduty_server.incidents
        assert incident.dedup_key == first.dedup_key
        assert incident.status == "resolved"
        assert [e["event_action"] for e in incident.events] == ["trigger", "trigger", "resolve"]
        details = incident.last_trigger["payload"]["custom_details"]
        assert details["alert_ids"] == [AMOUNT_ID, COUNTRY_ID]
        assert incident.last_trigger["payload"]["severity"] == "critical"

    def test_trigger_acknowledge_resolve(self, pagerduty_server: PagerDutyServer) -> None:
        """A group people acknowledged, then resolved (detector review): one incident."""
        for status in ("firing", "acknowledged", "resolved"):
            assert deliver(self.notification(pagerduty_server, status=status))[1] == ACCEPTED
        (incident,) = pagerduty_server.incidents
        assert [e["event_action"] for e in incident.events] == [
            "trigger",
            "acknowledge",
            "resolve",
        ]
        assert incident.status == "resolved"

    def test_a_trigger_after_resolve_opens_a_new_incident(
        self, pagerduty_server: PagerDutyServer
    ) -> None:
        for status in ("firing", "resolved", "firing"):
            assert deliver(self.notification(pagerduty_server, status=status))[1] == ACCEPTED
        assert [i.status for i in pagerduty_server.incidents] == ["resolved", "triggered"]

    def test_a_large_group_stays_under_512_kb(self, pagerduty_server: PagerDutyServer) -> None:
        bodies = vendors.many_alerts(3000, feature_chars=180)
        response, outcome = deliver(self.notification(pagerduty_server, bodies=bodies))
        assert outcome == ACCEPTED, response.text
        (received,) = pagerduty_server.accepted
        assert len(received.body) < 512 * 1024
        details = received.json["payload"]["custom_details"]
        assert len(details["alert_ids"]) == 3000
        assert details["evidence_rows_dropped"] > 0

    def test_a_31_character_routing_key_is_refused(self, pagerduty_server: PagerDutyServer) -> None:
        short_key = ROUTING_KEY[:31]
        n = notification(
            "pagerduty",
            pagerduty_server.enqueue_url,
            options={"routing_key": short_key},
            secrets=(short_key,),
        )
        response, outcome = deliver(n)
        assert response.status_code == 400
        assert response.json() == {
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)"],
        }
        assert (outcome.accepted, outcome.retryable, outcome.reason) == (False, False, "http_4xx")
        assert pagerduty_server.incidents == []

    @pytest.mark.parametrize(
        ("event", "error"),
        [
            ({"event_action": "trigger"}, "'payload' is missing"),
            ({"event_action": "page"}, "'event_action' is invalid"),
            ({"event_action": "resolve"}, "'dedup_key' is required for resolve"),
            (
                {
                    "event_action": "trigger",
                    "payload": {"summary": "s" * 1025, "source": "x", "severity": "info"},
                },
                "'payload.summary' is too long",
            ),
            (
                {
                    "event_action": "trigger",
                    "payload": {"summary": "s", "source": "x", "severity": "fatal"},
                },
                "'payload.severity' is invalid",
            ),
            (
                {
                    "event_action": "trigger",
                    "dedup_key": "d" * 256,
                    "payload": {"summary": "s", "source": "x", "severity": "info"},
                },
                "'dedup_key' must be a string of at most 255 characters",
            ),
            (
                {
                    "event_action": "trigger",
                    "payload": {
                        "summary": "s",
                        "source": "x",
                        "severity": "info",
                        "custom_details": {"pad": "x" * 600_000},
                    },
                },
                "Event object is too large",
            ),
        ],
    )
    def test_invalid_events_are_refused(
        self, pagerduty_server: PagerDutyServer, event: dict[str, Any], error: str
    ) -> None:
        response = post_json(pagerduty_server.enqueue_url, {"routing_key": ROUTING_KEY, **event})
        assert response.status_code == 400
        assert any(error in e for e in response.json()["errors"]), response.json()

    def test_a_scripted_429_is_retryable(self, pagerduty_server: PagerDutyServer) -> None:
        pagerduty_server.fail_next(429, {"status": "throttle event"}, retry_after=2)
        n = self.notification(pagerduty_server)
        _, outcome = deliver(n)
        assert (outcome.reason, outcome.retryable, outcome.retry_after_s) == (
            "rate_limited",
            True,
            2.0,
        )
        assert pagerduty_server.incidents == []


# --- generic webhook -----------------------------------------------------------------------


class TestWebhook:
    def test_the_payload_is_stored_as_sent(self, webhook_server: WebhookServer) -> None:
        url = webhook_server.url + "/hooks/drift"
        n = notification("webhook", url)
        notifier = build_notifier(n.integration)
        response, outcome = deliver(n)
        assert response.status_code == 200 and outcome == ACCEPTED
        (received,) = webhook_server.wait_for(1)
        assert received.path == "/hooks/drift"
        assert received.json == json.loads(notifier.request(n).body)
        assert received.body == notifier.request(n).body
        assert [a["annotations"]["alert_id"] for a in received.json["alerts"]] == [
            AMOUNT_ID,
            COUNTRY_ID,
        ]

    def test_scripted_failures(self, webhook_server: WebhookServer) -> None:
        webhook_server.fail_next(503, "busy", retry_after=1)
        webhook_server.fail_next(410, "gone")
        n = notification("webhook", webhook_server.url + "/hook")
        assert deliver(n)[1] == Outcome(False, True, "http_5xx", 503, "busy", 1.0)
        assert deliver(n)[1] == Outcome(False, False, "http_4xx", 410, "gone")
        assert deliver(n)[1] == ACCEPTED
        assert len(webhook_server.wait_for(1)) == 1


# --- a real Alertmanager -------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


class TestAlertmanager:
    def notification(
        self, am: AlertmanagerProcess, model: str, created_ms: int, **kwargs: Any
    ) -> Notification:
        detected = rfc3339(created_ms - 60_000)
        return notification(
            "alertmanager",
            am.alerts_url,
            [
                amount_alert(model=model, detected_at=detected),
                country_alert(model=model, detected_at=detected),
            ],
            options={"evidence_url": "https://drift.example/alerts/{alert_id}"},
            created_ms=created_ms,
            group_labels={"model": model},
            **kwargs,
        )

    def test_firing_then_resolved(self, alertmanager: AlertmanagerProcess) -> None:
        model = f"fraud-{uuid.uuid4().hex[:8]}"
        created = now_ms()
        response, outcome = deliver(self.notification(alertmanager, model, created))
        assert response.status_code == 200, response.text
        assert outcome == ACCEPTED

        stored = sorted(alertmanager.alerts(model=model), key=lambda a: a["labels"]["feature"])
        assert [a["labels"] for a in stored] == [
            {
                "alertname": "DriftDetected",
                "model": model,
                "feature": "amount",
                "drift_type": "mean",
                "severity": "warning",
                "model_version": "2026-11-01",
            },
            {
                "alertname": "DriftDetected",
                "model": model,
                "feature": "country",
                "drift_type": "categorical",
                "severity": "critical",
                "model_version": "2026-11-01",
            },
        ]
        amount, country = stored
        assert amount["annotations"]["alert_id"] == AMOUNT_ID
        assert country["annotations"]["alert_id"] == COUNTRY_ID
        assert amount["annotations"]["evidence_url"] == f"https://drift.example/alerts/{AMOUNT_ID}"
        assert amount["generatorURL"] == f"https://drift.example/alerts/{AMOUNT_ID}"
        assert amount["annotations"]["summary"].startswith("mean drift on fraud/amount")
        assert amount["annotations"]["evidence"].startswith('{"statistic":"mean"')
        for alert in stored:
            assert alert["status"]["state"] == "active"
            assert alert["startsAt"] == rfc3339(created - 60_000)
            assert alert["endsAt"] == rfc3339(created + 300_000)
            # the webhook notifier's fingerprint is Alertmanager's own
            assert alert["fingerprint"] == fingerprint(alert["labels"])

        response, outcome = deliver(
            self.notification(alertmanager, model, now_ms(), status="resolved")
        )
        assert response.status_code == 200 and outcome == ACCEPTED
        assert alertmanager.alerts(model=model) == []

    def test_200_alerts_are_all_stored(self, alertmanager: AlertmanagerProcess) -> None:
        model = f"fraud-{uuid.uuid4().hex[:8]}"
        bodies = vendors.many_alerts(200, model=model)
        n = notification("alertmanager", alertmanager.alerts_url, bodies, created_ms=now_ms())
        assert deliver(n)[1] == ACCEPTED
        stored = alertmanager.alerts(model=model)
        assert sorted(a["annotations"]["alert_id"] for a in stored) == sorted(
            b["alert_id"] for b in bodies
        )

    def test_a_refused_alert_is_a_permanent_failure(
        self, alertmanager: AlertmanagerProcess
    ) -> None:
        n = notification("alertmanager", alertmanager.alerts_url)
        notifier = build_notifier(n.integration)
        response = post_json(
            alertmanager.alerts_url,
            [{"labels": {}, "startsAt": "2026-11-26T10:00:00Z", "endsAt": "2026-11-26T09:00:00Z"}],
        )
        outcome = notifier.classify(response.status_code, response.headers, response.content)
        assert response.status_code == 400
        assert (outcome.accepted, outcome.retryable, outcome.reason) == (False, False, "http_4xx")
        assert outcome.body
