"""The notifiers' payloads (exact, and within each vendor's limits) and how they read answers.

Sample data (two alerts of model ``fraud``: a mean drift on ``amount``, warning, and a
categorical drift on ``country``, critical and new) comes from ``vendors``; so do the
vendor contract checks (:func:`vendors.slack_problems`, :func:`vendors.pagerduty_problems`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import vendors
from vendors import AMOUNT_ID, COUNTRY_ID, CREATED_MS, amount_alert, country_alert, notification

from detector.alerts import rfc3339
from detector.router.model import (
    ACCEPTED,
    MAX_BODY_CHARS,
    Integration,
    IntegrationKind,
    Outcome,
    Review,
    RoutedAlert,
)
from detector.router.notify import (
    AlertmanagerNotifier,
    Notifier,
    PagerDutyNotifier,
    SlackNotifier,
    WebhookNotifier,
    build_notifier,
)
from detector.router.notify.alertmanager import fingerprint
from detector.router.notify.evidence import (
    evidence_line,
    evidence_row,
    retry_after_seconds,
    title,
    window_text,
)
from detector.router.notify.slack import id_elements

SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXXtokenXXXX"
PD_URL = "https://events.pagerduty.com/v2/enqueue"
ROUTING_KEY = "0123456789abcdef0123456789abcdef"
HOOK_URL = "https://hooks.example.com/drift"
AM_URL = "http://alertmanager:9093/api/v2/alerts"
IDS_TEXT = f"alert ids: {AMOUNT_ID}, {COUNTRY_ID}"
AMOUNT_EVIDENCE = (
    '{"statistic":"mean","effect_size":0.61,'
    '"reference":{"count":512,"mean":41.2,"std":38.0,"quantiles":{"p05":6.1}},'
    '"current":{"count":512,"mean":64.5,"std":40.1,"quantiles":{"p05":9.8}}}'
)
COUNTRY_EVIDENCE = (
    '{"statistic":"share","effect_size":1.5,"category":"US","total_variation":0.45,'
    '"reference":{"count":400,"frequencies":{"US":0.5,"DE":0.5}},'
    '"current":{"count":400,"frequencies":{"US":0.05,"DE":0.95}}}'
)
AMOUNT_LABELS = {
    "alertname": "DriftDetected",
    "model": "fraud",
    "feature": "amount",
    "drift_type": "mean",
    "severity": "warning",
    "model_version": "2026-11-01",
}
COUNTRY_LABELS = {
    "alertname": "DriftDetected",
    "model": "fraud",
    "feature": "country",
    "drift_type": "categorical",
    "severity": "critical",
    "model_version": "2026-11-01",
}


def body_of(request_body: bytes) -> Any:
    return json.loads(request_body)


# --- shared evidence helpers ---------------------------------------------------------------


class TestEvidence:
    def test_line_of_a_numeric_alert(self) -> None:
        alert = RoutedAlert.from_json(amount_alert())
        assert evidence_line(alert) == (
            "amount mean (warning): n=512 mean=41.2 std=38 → n=512 mean=64.5 std=40.1, "
            "effect 0.61, trigger predictions/3@918273 (e-99812)"
        )

    def test_row_of_a_categorical_alert(self) -> None:
        row = evidence_row(RoutedAlert.from_json(country_alert()))
        assert row.as_dict() == {
            "alert_id": COUNTRY_ID,
            "feature": "country",
            "drift_type": "categorical",
            "severity": "critical",
            "reference": "n=400 share(US)=50.0%",
            "current": "n=400 share(US)=5.0%",
            "effect_size": 1.5,
            "trigger": "predictions/1@77 (e-100)",
        }

    def test_rate_windows_and_odd_values(self) -> None:
        assert window_text({"rate": 0.012}) == "rate=1.2%"
        assert window_text({"count": 3, "mean": None, "std": 1e300}) == "n=3 mean=n/a std=1e+300"
        assert window_text(None) == "n/a"
        assert window_text({"count": 10, "frequencies": {"a": 1.0}}, "b") == "n=10 share(b)=0.0%"

    def test_an_alert_without_evidence_or_trigger_still_reads(self) -> None:
        alert = RoutedAlert.from_json(
            {"alert_id": "x", "model": "m", "emitted_at": "2026-11-26T10:00:00Z"}
        )
        assert evidence_line(alert) == "? ? (?): n/a → n/a, effect n/a, trigger ?"

    def test_title(self) -> None:
        firing = notification("slack", SLACK_URL)
        assert title(firing) == "[FIRING:2] fraud (model version 2026-11-01): drift"
        mixed = notification(
            "slack", SLACK_URL, [amount_alert(), country_alert(model_version="2026-12-01")]
        )
        assert title(mixed) == "[FIRING:2] fraud (model versions 2026-11-01, 2026-12-01): drift"
        unversioned = notification("slack", SLACK_URL, [amount_alert(model_version=None)])
        assert title(unversioned) == "[FIRING:1] fraud: drift"

    def test_format_ms(self) -> None:
        assert rfc3339(CREATED_MS) == "2026-11-26T10:06:00.000Z"
        assert rfc3339(CREATED_MS + 3) == "2026-11-26T10:06:00.003Z"

    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            ("120", 120.0),
            (" 7 ", 7.0),
            ("1.5", 1.5),
            ("Thu, 26 Nov 2026 10:06:30 GMT", 30.0),
            ("Thu, 26 Nov 2026 10:05:00 GMT", 0.0),  # already past
            ("-5", None),
            ("soon", None),
            ("", None),
        ],
    )
    def test_retry_after_seconds_or_http_date(self, value: str, seconds: float | None) -> None:
        assert retry_after_seconds({"Retry-After": value}, now=CREATED_MS / 1000) == seconds

    def test_retry_after_header_name_is_case_insensitive(self) -> None:
        assert retry_after_seconds({"retry-after": "3"}) == 3.0
        assert retry_after_seconds({"RETRY-AFTER": "3"}) == 3.0
        assert retry_after_seconds({}) is None


# --- Slack ---------------------------------------------------------------------------------


def slack_ids(payload: dict[str, Any]) -> set[str]:
    """The ids the context elements name."""
    named: set[str] = set()
    for block in payload["blocks"]:
        if block["type"] == "context":
            for element in block["elements"]:
                text = element["text"].removeprefix("alert ids: ").removesuffix(",")
                named.update(text.split(", "))
    return named


class TestSlack:
    def notifier(self, **options: Any) -> SlackNotifier:
        return SlackNotifier(notification("slack", SLACK_URL, options=options).integration)

    def test_firing_payload(self) -> None:
        n = notification("slack", SLACK_URL, options={"channel": "#ml-alerts"})
        request = SlackNotifier(n.integration).request(n)
        assert request.method == "POST"
        assert request.url == SLACK_URL
        assert request.headers == {"Content-Type": "application/json"}
        assert body_of(request.body) == {
            "text": (
                "[FIRING:2] fraud (model version 2026-11-01): drift on amount (mean), "
                "country (categorical)"
            ),
            "blocks": [
                {
                    "type": "header",
                    "text": {
                        "type": "plain_text",
                        "text": "[FIRING:2] fraud (model version 2026-11-01): drift",
                    },
                },
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": (
                            "*amount* · mean drift · warning\n"
                            "reference n=512 mean=41.2 std=38 → current n=512 mean=64.5 std=40.1\n"
                            "effect size 0.61 · trigger `predictions/3@918273 (e-99812)`"
                        ),
                    },
                },
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": (
                            "*country* · categorical drift · critical · new\n"
                            "reference n=400 share(US)=50.0% → current n=400 share(US)=5.0%\n"
                            "effect size 1.5 · trigger `predictions/1@77 (e-100)`"
                        ),
                    },
                },
                {"type": "context", "elements": [{"type": "plain_text", "text": IDS_TEXT}]},
            ],
            "channel": "#ml-alerts",
        }

    def test_acknowledged_payload_says_who_and_why(self) -> None:
        reviews = {
            AMOUNT_ID: Review("acknowledged", "ana", "retraining <today>", "t"),
            COUNTRY_ID: Review("acknowledged", "ana", "retraining <today>", "t"),
        }
        n = notification("slack", SLACK_URL, status="acknowledged", reviews=reviews)
        blocks = body_of(SlackNotifier(n.integration).request(n).body)["blocks"]
        assert blocks[0]["text"]["text"] == (
            "[ACKNOWLEDGED:2] fraud (model version 2026-11-01): drift"
        )
        assert blocks[1] == {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*Acknowledged* by ana: retraining &lt;today&gt; (2 alerts)",
            },
        }
        assert blocks[2] == {
            "type": "context",
            "elements": [{"type": "plain_text", "text": IDS_TEXT}],
        }

    def test_resolved_payload_says_resolved_and_names_the_ids(self) -> None:
        n = notification("slack", SLACK_URL, status="resolved")
        assert body_of(SlackNotifier(n.integration).request(n).body) == {
            "text": (
                "[RESOLVED] fraud (model version 2026-11-01): drift on amount (mean), "
                "country (categorical)"
            ),
            "blocks": [
                {
                    "type": "header",
                    "text": {
                        "type": "plain_text",
                        "text": "[RESOLVED] fraud (model version 2026-11-01): drift",
                    },
                },
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": (
                            "*Resolved*: 2 alerts no longer firing: amount (mean), "
                            "country (categorical)"
                        ),
                    },
                },
                {"type": "context", "elements": [{"type": "plain_text", "text": IDS_TEXT}]},
            ],
        }

    def test_mrkdwn_control_characters_are_escaped(self) -> None:
        n = notification("slack", SLACK_URL, [amount_alert(feature="<b&q>")])
        payload = body_of(SlackNotifier(n.integration).request(n).body)
        assert payload["blocks"][1]["text"]["text"].startswith("*&lt;b&amp;q&gt;* · mean drift")

    @pytest.mark.parametrize("n_alerts", [48, 49, 200, 5000])
    def test_many_alerts_fit_block_kit_and_all_ids_are_named(self, n_alerts: int) -> None:
        bodies = vendors.many_alerts(n_alerts)
        n = notification("slack", SLACK_URL, bodies)
        payload = body_of(SlackNotifier(n.integration).request(n).body)
        assert vendors.slack_problems(payload) == []
        blocks = payload["blocks"]
        assert len(blocks) <= 50
        contexts = [b for b in blocks if b["type"] == "context"]
        assert contexts[0]["elements"][0]["text"].startswith("alert ids: ")
        assert blocks[-len(contexts) :] == contexts  # the ids come last
        assert slack_ids(payload) == {body["alert_id"] for body in bodies}
        assert len(payload["text"]) <= 1000 and "\n" not in payload["text"]
        sections = [b for b in blocks if b["type"] == "section"]
        if n_alerts <= 48:  # 50 - header - one context block
            assert len(sections) == n_alerts
        else:
            rest = n_alerts - (len(sections) - 1)
            assert sections[-1]["text"]["text"].startswith(f"*…and {rest} more alerts*")
            assert "critical: " in sections[-1]["text"]["text"]

    def test_beyond_24000_ids_the_last_element_counts_the_rest(self) -> None:
        bodies = vendors.many_alerts(30_000)
        n = notification("slack", SLACK_URL, bodies)
        payload = body_of(SlackNotifier(n.integration).request(n).body)
        assert vendors.slack_problems(payload) == []
        blocks = payload["blocks"]
        assert [b["type"] for b in blocks[:2]] == ["header", "section"]
        assert len(blocks) == 50
        last = blocks[-1]["elements"][-1]["text"]
        missing = int(last.split()[2])
        assert last == f"… and {missing} more alert ids (Slack's 50-block limit)"
        ids = [b["alert_id"] for b in bodies]
        assert slack_ids(payload) - {last} == set(ids[: len(ids) - missing])

    def test_id_elements_split_within_2000_characters(self) -> None:
        ids = [f"id-{i:04d}" for i in range(1000)] + ["x" * 3000]
        texts = id_elements(ids)
        assert all(len(text) <= 2000 for text in texts)
        assert texts[0].startswith("alert ids: id-0000, id-0001")
        assert all(text.endswith(",") for text in texts[:-1])
        joined = " ".join(texts)
        assert all(i in joined for i in ids[:-1])
        assert texts[-1].endswith("x…")

    def test_long_header_is_cut_to_150(self) -> None:
        n = notification("slack", SLACK_URL, [amount_alert(model="m" * 400)])
        payload = body_of(SlackNotifier(n.integration).request(n).body)
        header = payload["blocks"][0]["text"]["text"]
        assert len(header) == 150 and header.endswith("…")
        assert vendors.slack_problems(payload) == []

    def test_the_webhook_url_is_scrubbed_even_if_not_listed_as_a_secret(self) -> None:
        outcome = self.notifier().classify(
            404, {}, f"no_service for {SLACK_URL}; token XXXXsecretXXXXtokenXXXX".encode()
        )
        assert outcome.body == "no_service for ***; token ***"

    def test_listed_secrets_are_scrubbed_and_the_body_cut(self) -> None:
        n = notification("slack", SLACK_URL, secrets=("hunter2",))
        outcome = SlackNotifier(n.integration).classify(500, {}, b"hunter2 " + b"x" * 5000)
        assert outcome.body.startswith("*** xxx")
        assert len(outcome.body) == MAX_BODY_CHARS


# --- PagerDuty -----------------------------------------------------------------------------


class TestPagerDuty:
    options = {"routing_key": ROUTING_KEY}

    def notifier(self) -> PagerDutyNotifier:
        return PagerDutyNotifier(
            notification("pagerduty", PD_URL, options=self.options).integration
        )

    def test_trigger_payload(self) -> None:
        n = notification("pagerduty", PD_URL, options=self.options)
        request = PagerDutyNotifier(n.integration).request(n)
        assert (request.method, request.url) == ("POST", PD_URL)
        assert request.headers == {"Content-Type": "application/json"}
        assert body_of(request.body) == {
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": "e391fef4bf1f46e1979af55691a717ca",
            "client": "drift-detector",
            "payload": {
                "summary": (
                    "[FIRING:2] fraud (model version 2026-11-01): drift on amount (mean), "
                    "country (categorical)"
                ),
                "source": "drift-detector",
                "severity": "critical",
                "timestamp": "2026-11-26T10:04:11.520Z",
                "component": "fraud",
                "group": "model=fraud",
                "class": "mean,categorical",
                "custom_details": {
                    "alert_ids": [AMOUNT_ID, COUNTRY_ID],
                    "evidence": [
                        {
                            "alert_id": AMOUNT_ID,
                            "feature": "amount",
                            "drift_type": "mean",
                            "severity": "warning",
                            "reference": "n=512 mean=41.2 std=38",
                            "current": "n=512 mean=64.5 std=40.1",
                            "effect_size": 0.61,
                            "trigger": "predictions/3@918273 (e-99812)",
                        },
                        {
                            "alert_id": COUNTRY_ID,
                            "feature": "country",
                            "drift_type": "categorical",
                            "severity": "critical",
                            "reference": "n=400 share(US)=50.0%",
                            "current": "n=400 share(US)=5.0%",
                            "effect_size": 1.5,
                            "trigger": "predictions/1@77 (e-100)",
                        },
                    ],
                },
            },
        }
        assert n.dedup_key == "e391fef4bf1f46e1979af55691a717ca"

    def test_resolve_payload(self) -> None:
        n = notification("pagerduty", PD_URL, status="resolved", options=self.options)
        assert body_of(PagerDutyNotifier(n.integration).request(n).body) == {
            "routing_key": ROUTING_KEY,
            "event_action": "resolve",
            "dedup_key": "e391fef4bf1f46e1979af55691a717ca",
        }

    def test_acknowledge_payload(self) -> None:
        n = notification("pagerduty", PD_URL, status="acknowledged", options=self.options)
        assert body_of(PagerDutyNotifier(n.integration).request(n).body) == {
            "routing_key": ROUTING_KEY,
            "event_action": "acknowledge",
            "dedup_key": "e391fef4bf1f46e1979af55691a717ca",
        }

    def test_warning_only_and_source_option(self) -> None:
        options = {**self.options, "source": "drift-router-eu"}
        n = notification("pagerduty", PD_URL, [amount_alert()], options=options)
        payload = body_of(PagerDutyNotifier(n.integration).request(n).body)["payload"]
        assert (payload["severity"], payload["source"]) == ("warning", "drift-router-eu")

    def test_200_alerts_fit(self) -> None:
        bodies = vendors.many_alerts(200)
        n = notification("pagerduty", PD_URL, bodies, options=self.options)
        raw = PagerDutyNotifier(n.integration).request(n).body
        event = body_of(raw)
        assert len(raw) < 512 * 1024
        assert vendors.pagerduty_problems(event, len(raw)) == []
        assert len(event["payload"]["summary"]) <= 1024
        details = event["payload"]["custom_details"]
        assert details["alert_ids"] == [b["alert_id"] for b in bodies]
        assert len(details["evidence"]) == 200
        assert "evidence_rows_dropped" not in details

    def test_rows_beyond_512_kb_are_dropped_and_counted_all_ids_kept(self) -> None:
        bodies = vendors.many_alerts(3000, feature_chars=180)
        n = notification("pagerduty", PD_URL, bodies, options=self.options)
        raw = PagerDutyNotifier(n.integration).request(n).body
        event = body_of(raw)
        assert 500 * 1024 < len(raw) < 512 * 1024  # dropped no more than needed
        assert vendors.pagerduty_problems(event, len(raw)) == []
        details = event["payload"]["custom_details"]
        assert details["alert_ids"] == [b["alert_id"] for b in bodies]
        kept = details["evidence"]
        assert 0 < len(kept) < 3000
        assert details["evidence_rows_dropped"] == 3000 - len(kept)
        assert [row["alert_id"] for row in kept] == details["alert_ids"][: len(kept)]
        summary = event["payload"]["summary"]
        assert len(summary) == 1024 and summary.endswith("…")

    def test_routing_key_is_required(self) -> None:
        integration = Integration("ml/pagerduty/0", "ml", "pagerduty", PD_URL)
        with pytest.raises(ValueError, match="routing_key is required"):
            PagerDutyNotifier(integration)

    def test_routing_key_is_scrubbed_even_if_not_listed_as_a_secret(self) -> None:
        body = f'{{"errors":["routing key {ROUTING_KEY} unknown"]}}'.encode()
        outcome = self.notifier().classify(400, {}, body)
        assert ROUTING_KEY not in outcome.body
        assert outcome.body == '{"errors":["routing key *** unknown"]}'


# --- generic webhook -----------------------------------------------------------------------


class TestWebhook:
    def test_firing_payload(self) -> None:
        n = notification("webhook", HOOK_URL, options={"external_url": "https://router.example"})
        request = WebhookNotifier(n.integration).request(n)
        assert (request.method, request.url) == ("POST", HOOK_URL)
        assert request.headers == {"Content-Type": "application/json"}
        assert body_of(request.body) == {
            "version": "4",
            "groupKey": '{}:{model="fraud"}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "ml",
            "groupLabels": {"model": "fraud"},
            "commonLabels": {
                "alertname": "DriftDetected",
                "model": "fraud",
                "model_version": "2026-11-01",
            },
            "commonAnnotations": {},
            "externalURL": "https://router.example",
            "alerts": [
                {
                    "status": "firing",
                    "labels": AMOUNT_LABELS,
                    "annotations": {
                        "summary": (
                            "mean drift on fraud/amount: mean 41.2 -> 64.5 (effect 0.61, ADWIN)"
                        ),
                        "alert_id": AMOUNT_ID,
                        "evidence": AMOUNT_EVIDENCE,
                    },
                    "startsAt": "2026-11-26T10:04:11.520Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "",
                    "fingerprint": "df5834c178ae22e1",
                },
                {
                    "status": "firing",
                    "labels": COUNTRY_LABELS,
                    "annotations": {
                        "summary": (
                            "categorical drift on fraud/country: share of 'US' 50.0% -> 5.0%"
                        ),
                        "alert_id": COUNTRY_ID,
                        "evidence": COUNTRY_EVIDENCE,
                    },
                    "startsAt": "2026-11-26T10:05:00.000Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "",
                    "fingerprint": "065e510de0a4ca3b",
                },
            ],
        }

    def test_resolved_ends_at_the_notification_time(self) -> None:
        n = notification("webhook", HOOK_URL, [amount_alert()], status="resolved")
        payload = body_of(WebhookNotifier(n.integration).request(n).body)
        assert payload["status"] == "resolved"
        assert payload["externalURL"] == ""
        assert [(a["status"], a["endsAt"]) for a in payload["alerts"]] == [
            ("resolved", "2026-11-26T10:06:00.000Z")
        ]
        # one alert: every annotation is common
        assert payload["commonAnnotations"] == payload["alerts"][0]["annotations"]

    def test_fingerprint_is_alertmanagers(self) -> None:
        # as a real Alertmanager 0.25 reported it for these labels
        assert fingerprint({"alertname": "X", "model": "m"}) == "39d60e56e335f5fc"

    def test_unset_model_version_is_not_a_label(self) -> None:
        n = notification("webhook", HOOK_URL, [amount_alert(model_version=None)])
        labels = body_of(WebhookNotifier(n.integration).request(n).body)["alerts"][0]["labels"]
        assert "model_version" not in labels


# --- Alertmanager --------------------------------------------------------------------------


class TestAlertmanager:
    def test_firing_payload(self) -> None:
        options = {"evidence_url": "https://drift.example/alerts/{alert_id}"}
        n = notification("alertmanager", AM_URL, options=options)
        request = AlertmanagerNotifier(n.integration).request(n)
        assert (request.method, request.url) == ("POST", AM_URL)
        assert request.headers == {"Content-Type": "application/json"}
        assert body_of(request.body) == [
            {
                "labels": AMOUNT_LABELS,
                "annotations": {
                    "summary": "mean drift on fraud/amount: mean 41.2 -> 64.5 (effect 0.61, ADWIN)",
                    "alert_id": AMOUNT_ID,
                    "evidence": AMOUNT_EVIDENCE,
                    "evidence_url": f"https://drift.example/alerts/{AMOUNT_ID}",
                },
                "generatorURL": f"https://drift.example/alerts/{AMOUNT_ID}",
                "startsAt": "2026-11-26T10:04:11.520Z",
                "endsAt": "2026-11-26T10:11:00.000Z",
            },
            {
                "labels": COUNTRY_LABELS,
                "annotations": {
                    "summary": "categorical drift on fraud/country: share of 'US' 50.0% -> 5.0%",
                    "alert_id": COUNTRY_ID,
                    "evidence": COUNTRY_EVIDENCE,
                    "evidence_url": f"https://drift.example/alerts/{COUNTRY_ID}",
                },
                "generatorURL": f"https://drift.example/alerts/{COUNTRY_ID}",
                "startsAt": "2026-11-26T10:05:00.000Z",
                "endsAt": "2026-11-26T10:11:00.000Z",
            },
        ]

    def test_resolved_ends_now_and_starts_no_later(self) -> None:
        future = amount_alert(detected_at="2026-11-26T11:00:00Z")  # a fast producer clock
        n = notification("alertmanager", AM_URL, [country_alert(), future], status="resolved")
        payload = body_of(AlertmanagerNotifier(n.integration).request(n).body)
        assert [(a["startsAt"], a["endsAt"]) for a in payload] == [
            ("2026-11-26T10:05:00.000Z", "2026-11-26T10:06:00.000Z"),
            ("2026-11-26T10:06:00.000Z", "2026-11-26T10:06:00.000Z"),
        ]
        assert all("evidence_url" not in a["annotations"] for a in payload)
        assert all("generatorURL" not in a for a in payload)

    def test_evidence_url_quotes_the_id(self) -> None:
        options = {"evidence_url": "https://e.example/?id={alert_id}"}
        n = notification("alertmanager", AM_URL, [amount_alert("a/b c")], options=options)
        payload = body_of(AlertmanagerNotifier(n.integration).request(n).body)
        assert payload[0]["annotations"]["evidence_url"] == "https://e.example/?id=a%2Fb%20c"

    def test_evidence_url_needs_the_placeholder(self) -> None:
        n = notification("alertmanager", AM_URL, options={"evidence_url": "https://e.example/"})
        with pytest.raises(ValueError, match="alert_id"):
            AlertmanagerNotifier(n.integration)


# --- answers (the status table every notifier shares) --------------------------------------

#: Each kind's URL and options.
KINDS: dict[IntegrationKind, tuple[str, dict[str, Any]]] = {
    "slack": (SLACK_URL, {}),
    "pagerduty": (PD_URL, {"routing_key": ROUTING_KEY}),
    "webhook": (HOOK_URL, {}),
    "alertmanager": (AM_URL, {}),
}


def notifier_of(kind: IntegrationKind, secrets: tuple[str, ...] = ()) -> Notifier:
    url, options = KINDS[kind]
    return build_notifier(notification(kind, url, options=options, secrets=secrets).integration)


class TestAnswers:
    """Each notifier says which answers it accepts; every other answer reads the same."""

    @pytest.mark.parametrize(
        ("kind", "status", "body"),
        [
            ("slack", 200, b"ok"),
            ("pagerduty", 202, b"x"),
            ("webhook", 200, b"x"),
            ("webhook", 201, b"x"),
            ("webhook", 204, b"x"),
            ("alertmanager", 200, b"x"),
        ],
    )
    def test_accepted(self, kind: IntegrationKind, status: int, body: bytes) -> None:
        assert notifier_of(kind).classify(status, {}, body) == ACCEPTED

    @pytest.mark.parametrize(
        ("kind", "status", "headers", "body", "expected"),
        [
            # https://api.slack.com/messaging/webhooks#handling_errors
            ("slack", 200, {}, b"ok", ACCEPTED),
            ("slack", 200, {}, b"ok\n", ACCEPTED),
            (
                "slack",
                200,
                {},
                b"missing_text",
                Outcome(False, False, "invalid_response", 200, "missing_text"),
            ),
            (
                "slack",
                429,
                {"Retry-After": "30"},
                b"rate_limited",
                Outcome(False, True, "rate_limited", 429, "rate_limited", 30.0),
            ),
            ("slack", 429, {}, b"", Outcome(False, True, "rate_limited", 429, "", None)),
            ("slack", 500, {}, b"oops", Outcome(False, True, "http_5xx", 500, "oops")),
            (
                "slack",
                503,
                {"retry-after": "5"},
                b"",
                Outcome(False, True, "http_5xx", 503, "", 5.0),
            ),
            (
                "slack",
                400,
                {},
                b"invalid_payload",
                Outcome(False, False, "http_4xx", 400, "invalid_payload"),
            ),
            (
                "slack",
                403,
                {},
                b"invalid_token",
                Outcome(False, False, "http_4xx", 403, "invalid_token"),
            ),
            ("slack", 404, {}, b"no_service", Outcome(False, False, "http_4xx", 404, "no_service")),
            (
                "slack",
                410,
                {},
                b"channel_is_archived",
                Outcome(False, False, "http_4xx", 410, "channel_is_archived"),
            ),
            ("slack", 302, {}, b"", Outcome(False, False, "invalid_response", 302, "")),
            # https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
            ("pagerduty", 202, {}, b'{"status":"success"}', ACCEPTED),
            (
                "pagerduty",
                200,
                {},
                b"{}",
                Outcome(False, False, "invalid_response", 200, "{}"),
            ),
            (
                "pagerduty",
                400,
                {},
                b'{"status":"invalid event"}',
                Outcome(False, False, "http_4xx", 400, '{"status":"invalid event"}'),
            ),
            ("pagerduty", 403, {}, b"", Outcome(False, False, "http_4xx", 403, "")),
            ("pagerduty", 404, {}, b"", Outcome(False, False, "http_4xx", 404, "")),
            ("pagerduty", 429, {}, b"", Outcome(False, True, "rate_limited", 429, "", None)),
            (
                "pagerduty",
                429,
                {"Retry-After": "60"},
                b"",
                Outcome(False, True, "rate_limited", 429, "", 60.0),
            ),
            ("pagerduty", 500, {}, b"", Outcome(False, True, "http_5xx", 500, "")),
            (
                "pagerduty",
                502,
                {},
                b"bad gateway",
                Outcome(False, True, "http_5xx", 502, "bad gateway"),
            ),
        ],
    )
    def test_vendor_answers(
        self,
        kind: IntegrationKind,
        status: int,
        headers: dict[str, str],
        body: bytes,
        expected: Outcome,
    ) -> None:
        """Slack's and PagerDuty's documented answers, as each vendor sends them."""
        assert notifier_of(kind).classify(status, headers, body) == expected

    @pytest.mark.parametrize(
        ("kind", "status"), [("slack", 200), ("pagerduty", 200), ("alertmanager", 202)]
    )
    def test_another_2xx_is_an_invalid_response(self, kind: IntegrationKind, status: int) -> None:
        expected = Outcome(False, False, "invalid_response", status, "x")
        assert notifier_of(kind).classify(status, {}, b"x") == expected

    @pytest.mark.parametrize("kind", list(KINDS))
    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            (301, Outcome(False, False, "invalid_response", 301, "x")),
            (400, Outcome(False, False, "http_4xx", 400, "x")),
            (404, Outcome(False, False, "http_4xx", 404, "x")),
            (415, Outcome(False, False, "http_4xx", 415, "x")),
            (429, Outcome(False, True, "rate_limited", 429, "x")),
            (500, Outcome(False, True, "http_5xx", 500, "x")),
            (503, Outcome(False, True, "http_5xx", 503, "x")),
            (504, Outcome(False, True, "http_5xx", 504, "x")),
        ],
    )
    def test_status_table(self, kind: IntegrationKind, status: int, expected: Outcome) -> None:
        assert notifier_of(kind).classify(status, {}, b"x") == expected

    @pytest.mark.parametrize("kind", list(KINDS))
    def test_listed_secrets_are_scrubbed(self, kind: IntegrationKind) -> None:
        outcome = notifier_of(kind, secrets=("pa55word",)).classify(
            401, {}, b"basic auth pa55word refused"
        )
        assert outcome.body == "basic auth *** refused"


# --- build_notifier ------------------------------------------------------------------------


class TestBuildNotifier:
    @pytest.mark.parametrize(
        ("kind", "url", "options", "cls"),
        [
            ("slack", SLACK_URL, {}, SlackNotifier),
            ("pagerduty", PD_URL, {"routing_key": ROUTING_KEY}, PagerDutyNotifier),
            ("webhook", HOOK_URL, {}, WebhookNotifier),
            ("alertmanager", AM_URL, {}, AlertmanagerNotifier),
        ],
    )
    def test_by_kind(self, kind: Any, url: str, options: dict[str, Any], cls: type) -> None:
        integration = Integration(f"ml/{kind}/0", "ml", kind, url, options=options)
        notifier = build_notifier(integration)
        assert isinstance(notifier, cls)
        assert notifier.integration is integration

    def test_unknown_kind(self) -> None:
        integration = Integration("ml/email/0", "ml", "email", "x")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown integration kind 'email'"):
            build_notifier(integration)

    def test_every_notifier_names_every_alert_id(self) -> None:
        for kind, url, options in [
            ("slack", SLACK_URL, {}),
            ("pagerduty", PD_URL, {"routing_key": ROUTING_KEY}),
            ("webhook", HOOK_URL, {}),
            ("alertmanager", AM_URL, {}),
        ]:
            n = notification(kind, url, options=options)  # type: ignore[arg-type]
            body = build_notifier(n.integration).request(n).body.decode()
            assert AMOUNT_ID in body and COUNTRY_ID in body, kind
