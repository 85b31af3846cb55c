"""`detector route` against a real broker, local vendor fakes and a real Alertmanager:
the whole path from prediction events to a page, grouping, resolution, retries and dead
letters, silences, a kill -9 in the middle of a burst, and secrets kept out of every output.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from support import (
    SidecarProcess,
    http_get,
    interleave,
    prediction_events,
    scrape,
    settings_for,
    sidecar_thread,
    write_config,
)
from vendors import (
    AlertmanagerProcess,
    PagerDutyServer,
    Reply,
    SlackServer,
    WebhookServer,
)

from detector.alerts import rfc3339
from detector.broker import free_port
from detector.cli import main
from detector.router.model import dedup_key

pytestmark = pytest.mark.integration

ROUTING_KEY = "0123456789abcdef0123456789abcdef"


def alert_record(
    model: str,
    *,
    feature: str = "amount",
    severity: str = "warning",
    emitted_ms: int | None = None,
    offset: int = 0,
) -> dict[str, Any]:
    """A drift alert v1 as the sidecar publishes it, emitted now unless told otherwise."""
    at = int(time.time() * 1000) if emitted_ms is None else emitted_ms
    return {
        "schema_version": 1,
        "alert_id": str(uuid.uuid4()),
        "model": model,
        "model_version": "v1",
        "feature": feature,
        "drift_type": "mean",
        "detector": {"name": "ADWIN", "params": {"delta": 1e-5}, "block_size": 16},
        "severity": severity,
        "detected_at": rfc3339(at),
        "emitted_at": rfc3339(at),
        "trigger": {"topic": "predictions", "partition": 0, "offset": offset, "event_id": "e"},
        "evidence": {
            "statistic": "mean",
            "effect_size": 0.7,
            "reference": {"count": 512, "mean": 1.0, "std": 1.0},
            "current": {"count": 512, "mean": 1.7, "std": 1.0},
        },
        "summary": f"mean drift on {model}/{feature}",
    }


def router_config(
    path: Path,
    bootstrap: str,
    alert_topic: str,
    group_id: str,
    *,
    receivers: list[dict[str, Any]],
    route: dict[str, Any],
    resolve_timeout: str = "1h",
    delivery: dict[str, Any] | None = None,
    port: int = 0,
) -> Path:
    tree: dict[str, Any] = {
        "resolve_timeout": resolve_timeout,
        "route": route,
        "receivers": receivers,
        "kafka": {
            "bootstrap_servers": bootstrap,
            "alert_topic": alert_topic,
            "group_id": group_id,
            "session_timeout_ms": 6000,
            "checkpoint_interval_s": 0.2,
        },
        "server": {"host": "127.0.0.1", "port": port},
        "log": {"level": "debug", "format": "json"},
    }
    if delivery:
        tree["delivery"] = delivery
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


def router_process(tmp_path: Path, config: Path) -> SidecarProcess:
    return SidecarProcess(
        config, tmp_path / "router.log", command="route", ready_event="router starting"
    )


def named(ids: list[str], payload: Any) -> list[str]:
    """The ids among ``ids`` that a payload names."""
    text = json.dumps(payload)
    return [i for i in ids if i in text]


def wait_until(condition: Any, timeout_s: float, what: str, watch: SidecarProcess) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if watch.proc is not None and watch.proc.poll() is not None:
            raise AssertionError(f"router exited:\n{watch.output()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s} s; log:\n{watch.output()[-3000:]}")
        time.sleep(0.05)  # polling a log file and a fake's record: no event to wait on


class TestEndToEnd:
    def test_events_to_slack_pagerduty_and_alertmanager(
        self,
        kafka: Any,
        unique: Any,
        tmp_path: Path,
        slack_server: SlackServer,
        pagerduty_server: PagerDutyServer,
        alertmanager: AlertmanagerProcess,
    ) -> None:
        """Prediction events -> detector run -> detector route: one Slack message, one
        PagerDuty incident and Alertmanager alerts per model, naming every alert id."""
        source = kafka.create_topic(unique("in"), partitions=1)
        alert_topic = unique("alerts")
        events = interleave(
            [
                prediction_events("churn", 3000, shift_at=1500),
                prediction_events("fraud", 3000, shift_at=1500, shift=1.5),
            ]
        )
        kafka.produce(source, events, key=b"k")
        sidecar_config = write_config(
            tmp_path / "sidecar.yaml",
            kafka.bootstrap_servers,
            input_topic=source,
            alert_topic=alert_topic,
            group_id=unique("sidecar"),
        )
        settings = settings_for(sidecar_config)
        with sidecar_thread(settings):
            kafka.wait_committed(settings.kafka.group_id, source, kafka.end_offsets(source))
        alerts = [r.json() for r in kafka.read_all(alert_topic)]
        by_model: dict[str, list[str]] = {}
        for alert in alerts:
            by_model.setdefault(alert["model"], []).append(alert["alert_id"])
        assert sorted(by_model) == ["churn", "fraud"]
        all_ids = [a["alert_id"] for a in alerts]

        port = free_port()
        config = router_config(
            tmp_path / "router.yaml",
            kafka.bootstrap_servers,
            alert_topic,
            unique("router"),
            port=port,
            route={
                "receiver": "team",
                "group_by": ["model"],
                "group_wait": "1s",
                "group_interval": "5m",
                "repeat_interval": "4h",
                "routes": [{"receiver": "pager", "matchers": ['model=~"churn|fraud"']}],
            },
            receivers=[
                {"name": "team", "slack_configs": [{"api_url": slack_server.webhook_url}]},
                {
                    "name": "pager",
                    "slack_configs": [{"api_url": slack_server.webhook_url}],
                    "pagerduty_configs": [
                        {"routing_key": ROUTING_KEY, "url": pagerduty_server.enqueue_url}
                    ],
                    "alertmanager_configs": [{"url": alertmanager.url}],
                },
            ],
        )
        router = router_process(tmp_path, config).start()
        try:
            slack_server.wait_for(2, timeout=60)
            pagerduty_server.wait_for(2, timeout=60)
            # The router counts a notification (metrics, then this log line) once its
            # worker reports it, a moment after the receiver answered.
            integrations = ("pager/slack/0", "pager/pagerduty/0", "pager/alertmanager/0")
            router.wait_event(
                "notification accepted",
                where=lambda e: all(len(router_accepted(router, i)) == 2 for i in integrations),
            )
            assert http_get(port, "/readyz")[0] == 200
            samples = scrape(port)
        finally:
            router.terminate()
        assert router.proc is not None and router.proc.returncode == 0

        # Slack: one message per model group, naming exactly that model's alert ids.
        messages = slack_server.messages
        assert sorted(tuple(sorted(named(all_ids, m))) for m in messages) == sorted(
            tuple(sorted(ids)) for ids in by_model.values()
        )
        assert all(m["text"].startswith("[FIRING:") for m in messages)
        assert slack_server.violations == []
        # PagerDuty: one incident per group, its dedup key from the route and group.
        for model, ids in by_model.items():
            route_key = '{}/{model=~"churn|fraud"}'
            incident = pagerduty_server.incident(
                dedup_key(route_key, f'{route_key}:{{model="{model}"}}')
            )
            assert incident.open and len(incident.events) == 1
            details = incident.last_trigger["payload"]["custom_details"]
            assert sorted(details["alert_ids"]) == sorted(ids)
        # Alertmanager: the alerts, read back from its API.
        for model, ids in by_model.items():
            stored = alertmanager.alerts(model=model)
            assert stored, f"no alert for {model} in Alertmanager"
            assert {a["labels"]["alertname"] for a in stored} == {"DriftDetected"}
            assert {a["annotations"]["alert_id"] for a in stored} <= set(ids)
        # Metrics: notifications by receiver and outcome.
        notified = samples["drift_router_notifications_total"]
        accepted = {
            dict(labels)["integration"]: value
            for labels, value in notified.items()
            if dict(labels)["outcome"] == "accepted"
        }
        assert accepted == {
            "pager/slack/0": 2.0,
            "pager/pagerduty/0": 2.0,
            "pager/alertmanager/0": 2.0,
        }


def router_accepted(router: SidecarProcess, integration: str) -> list[dict[str, Any]]:
    return [
        e
        for e in router.events()
        if e.get("event") == "notification accepted" and e.get("integration") == integration
    ]


class TestResolution:
    def test_resolved_in_slack_and_pagerduty(
        self,
        kafka: Any,
        unique: Any,
        tmp_path: Path,
        slack_server: SlackServer,
        pagerduty_server: PagerDutyServer,
    ) -> None:
        """No new alert for resolve_timeout: Slack says resolved naming the ids, PagerDuty
        resolves the same incident; the alert read again after a restart stays resolved."""
        alert_topic = kafka.create_topic(unique("alerts"))
        group = unique("router")
        alerts = [alert_record("fraud", feature=f) for f in ("amount", "age")]
        kafka.produce(alert_topic, alerts, key=b"fraud")
        config = router_config(
            tmp_path / "router.yaml",
            kafka.bootstrap_servers,
            alert_topic,
            group,
            resolve_timeout="3s",
            route={"receiver": "team", "group_by": ["model"], "group_wait": "0s"},
            receivers=[
                {
                    "name": "team",
                    "slack_configs": [{"api_url": slack_server.webhook_url}],
                    "pagerduty_configs": [
                        {"routing_key": ROUTING_KEY, "url": pagerduty_server.enqueue_url}
                    ],
                }
            ],
        )
        router = router_process(tmp_path, config).start()
        try:
            slack_server.wait_for(2, timeout=60)
            pagerduty_server.wait_for(2, timeout=60)
            kafka.wait_committed(group, alert_topic, {0: 2})
        finally:
            router.terminate()
        ids = sorted(a["alert_id"] for a in alerts)
        firing, resolved = slack_server.messages
        assert firing["text"].startswith("[FIRING:2]") and sorted(named(ids, firing)) == ids
        assert resolved["text"].startswith("[RESOLVED]") and sorted(named(ids, resolved)) == ids
        (incident,) = pagerduty_server.incidents
        assert [e["event_action"] for e in incident.events] == ["trigger", "resolve"]
        assert not incident.open

        # A restart restores the closed group: the same alerts again are duplicates.
        restarted = router_process(tmp_path, config).start()
        try:
            restarted.wait_event("router state restored", where=lambda e: e["groups"] == 1)
            kafka.produce(alert_topic, alerts, key=b"fraud")  # redelivered, same ids
            kafka.wait_committed(group, alert_topic, {0: 4})
            restarted.wait_event("duplicate alert", where=lambda e: e["offset"] == 3)
        finally:
            restarted.terminate()
        assert len(slack_server.requests) == 2 and len(pagerduty_server.requests) == 2


class TestDeliveryFailures:
    def test_retries_and_dead_letters(
        self, kafka: Any, unique: Any, tmp_path: Path, slack_server: SlackServer
    ) -> None:
        """A 500 and a 429 are retried (Retry-After honoured); a 400 and a receiver that
        keeps failing are dead-lettered with ids, receiver, status and body; offsets move on."""
        alert_topic = kafka.create_topic(unique("alerts"))
        group = unique("router")
        flaky, rejected, down = (alert_record(m) for m in ("flaky", "rejected", "down"))
        config = router_config(
            tmp_path / "router.yaml",
            kafka.bootstrap_servers,
            alert_topic,
            group,
            route={
                "receiver": "team",
                "group_by": ["model"],
                "group_wait": "0s",
                "routes": [{"receiver": "dead", "matchers": ['model="down"']}],
            },
            receivers=[
                {"name": "team", "slack_configs": [{"api_url": slack_server.webhook_url}]},
                {"name": "dead", "webhook_configs": [{"url": "http://127.0.0.1:9/unreachable"}]},
            ],
            delivery={
                "initial_backoff": "100ms",
                "max_backoff": "200ms",
                "max_retry_time": "5s",
            },
        )
        slack_server.fail_next(500, b"internal_error")
        slack_server.fail_next(429, b"rate_limited", retry_after=1)
        router = router_process(tmp_path, config).start()
        try:
            kafka.produce(alert_topic, [flaky], key=b"flaky")
            slack_server.wait_for(1, timeout=60)
            slack_server.fail_next(400, b"invalid_payload")
            kafka.produce(alert_topic, [rejected, down], key=b"x")
            kafka.wait_committed(group, alert_topic, {0: 3})
        finally:
            router.terminate()
        statuses = [r.status for r in slack_server.requests]
        assert statuses == [500, 429, 200, 400]
        assert named([flaky["alert_id"]], slack_server.messages) == [flaky["alert_id"]]
        assert slack_server.violations == []
        # Retry-After: the request after the 429 came no sooner than 1 s after it.
        assert slack_server.requests[2].at - slack_server.requests[1].at >= 1.0
        letters = kafka.read_all(f"{alert_topic}.router-dlq")
        by_receiver = {r.json()["receiver"]: r for r in letters}
        assert sorted(by_receiver) == ["dead", "team"]
        team = by_receiver["team"].json()
        assert team["alert_ids"] == [rejected["alert_id"]]
        assert (team["http_status"], team["response_body"], team["reason"]) == (
            400,
            "invalid_payload",
            "http_4xx",
        )
        assert by_receiver["team"].headers["integration"] == b"team/slack/0"
        dead = by_receiver["dead"].json()
        assert dead["alert_ids"] == [down["alert_id"]]
        assert dead["reason"] == "retries_exhausted" and dead["http_status"] is None
        assert dead["alerts"][0]["alert_id"] == down["alert_id"]

    def test_unreadable_and_old_alerts(
        self, kafka: Any, unique: Any, tmp_path: Path, webhook_server: WebhookServer
    ) -> None:
        """A record that is not an alert is dead-lettered with its reason; an alert older
        than max_alert_age is counted, not notified; the router keeps going."""
        alert_topic = kafka.create_topic(unique("alerts"))
        group = unique("router")
        old = alert_record("fraud", emitted_ms=int(time.time() * 1000) - 25 * 3600 * 1000)
        fresh = alert_record("credit")
        kafka.produce(alert_topic, [b"not json", old, fresh], key=b"m")
        port = free_port()
        config = router_config(
            tmp_path / "router.yaml",
            kafka.bootstrap_servers,
            alert_topic,
            group,
            port=port,
            route={"receiver": "hook", "group_wait": "0s"},
            receivers=[{"name": "hook", "webhook_configs": [{"url": webhook_server.url}]}],
        )
        router = router_process(tmp_path, config).start()
        try:
            webhook_server.wait_for(1, timeout=60)
            kafka.wait_committed(group, alert_topic, {0: 3})
            samples = scrape(port)
        finally:
            router.terminate()
        (payload,) = webhook_server.payloads
        assert [a["annotations"]["alert_id"] for a in payload["alerts"]] == [fresh["alert_id"]]
        (letter,) = kafka.read_all(f"{alert_topic}.router-dlq")
        assert letter.value == b"not json"
        assert letter.headers["reason"] == b"invalid_alert"
        assert letter.headers["detail"] == b"not JSON"
        assert samples["drift_router_alerts_too_old_total"][()] == 1.0
        assert samples["drift_router_alerts_invalid_total"][()] == 1.0


class HeldWebhook(WebhookServer):
    """Accepts ``accept`` notifications, then holds the next request unanswered until
    ``release`` is set (it then fails): a notification in flight when the router dies."""

    def __init__(self, accept: int) -> None:
        super().__init__()
        self.accept = accept
        self.release = threading.Event()
        self.holding = threading.Event()

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> Reply:
        if len(self.accepted) >= self.accept and not self.holding.is_set():
            self.holding.set()
            self.release.wait(60)
            self.fail_next(503, b"gone")
        return super().handle(method, path, headers, body)


class TestCrash:
    def test_kill_minus_9_in_a_burst(self, kafka: Any, unique: Any, tmp_path: Path) -> None:
        """kill -9 with a notification in flight: after a restart every group is notified
        exactly once: nothing accepted is sent again, nothing is lost."""
        alert_topic = kafka.create_topic(unique("alerts"))
        group = unique("router")
        models = [f"model-{i:02d}" for i in range(12)]
        alerts = [alert_record(m) for m in models]
        kafka.produce(alert_topic, alerts, keys=[m.encode() for m in models])
        receiver = HeldWebhook(accept=5).start()
        try:
            config = router_config(
                tmp_path / "router.yaml",
                kafka.bootstrap_servers,
                alert_topic,
                group,
                route={"receiver": "hook", "group_by": ["model"], "group_wait": "0s"},
                receivers=[{"name": "hook", "webhook_configs": [{"url": receiver.url}]}],
                delivery={"rate_limits": {"webhook": 50.0}},
            )
            router = router_process(tmp_path, config).start()
            try:
                assert receiver.holding.wait(60), "the sixth notification never came"
                # The five accepted notifications are in the log once a checkpoint
                # follows the fifth "notification accepted".
                wait_until(
                    lambda: checkpointed_after_accepts(router, 5),
                    60,
                    "no checkpoint after five accepted notifications",
                    router,
                )
            finally:
                router.kill()
            receiver.release.set()
            restarted = router_process(tmp_path, config).start()
            try:
                restored = restarted.wait_event("router state restored")
                assert restored["groups"] == 12
                receiver.wait_for(12, timeout=60)
                kafka.wait_committed(group, alert_topic, {0: 12})
            finally:
                restarted.terminate()
        finally:
            receiver.stop()
        notified = [
            a["labels"]["model"] for payload in receiver.payloads for a in payload["alerts"]
        ]
        assert Counter(notified) == Counter(models)  # each group exactly once
        assert [r.status for r in receiver.requests].count(503) == 1


def checkpointed_after_accepts(router: SidecarProcess, n: int) -> bool:
    accepted = 0
    for event in router.events():
        if event.get("event") == "notification accepted":
            accepted += 1
        elif event.get("event") == "checkpoint" and accepted >= n:
            return True
    return False


class TestSilences:
    def test_silence_add_list_expire(
        self, kafka: Any, unique: Any, tmp_path: Path, webhook_server: WebhookServer
    ) -> None:
        """A silence mutes matching alerts in the running router; expired, it stays
        readable and new alerts go through again. The silences and the notifications are
        recorded in the audit log (here created as the sidecar would)."""
        alert_topic = kafka.create_topic(unique("alerts"))
        audit_topic = kafka.create_topic(f"{alert_topic}.audit")
        group = unique("router")
        base = [sys.executable, "-m", "detector", "silence"]
        where = ["--bootstrap-servers", kafka.bootstrap_servers, "--alert-topic", alert_topic]

        def cli(*args: str) -> str:
            done = subprocess.run(
                [*base, *args, *where], capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        silence_id = cli(
            "add",
            "--matcher",
            'model="fraud"',
            "--duration",
            "2h",
            "--author",
            "ana",
            "--comment",
            "retraining fraud",
        ).strip()
        listing = cli("list")
        assert silence_id in listing and "active" in listing and 'model="fraud"' in listing
        port = free_port()
        config = router_config(
            tmp_path / "router.yaml",
            kafka.bootstrap_servers,
            alert_topic,
            group,
            port=port,
            route={"receiver": "hook", "group_by": ["model"], "group_wait": "0s"},
            receivers=[{"name": "hook", "webhook_configs": [{"url": webhook_server.url}]}],
        )
        router = router_process(tmp_path, config).start()
        try:
            muted, heard = alert_record("fraud"), alert_record("credit")
            kafka.produce(alert_topic, [muted, heard], key=b"m")
            webhook_server.wait_for(1, timeout=60)
            kafka.wait_committed(group, alert_topic, {0: 2})
            silenced = router.wait_event("alert silenced")
            assert (silenced["alert_id"], silenced["silence_id"]) == (muted["alert_id"], silence_id)
            assert scrape(port)["drift_router_alerts_silenced_total"][()] == 1.0

            assert cli("expire", silence_id, "--author", "bo").strip() == f"expired {silence_id}"
            assert silence_id not in cli("list")
            expired = cli("list", "--all")
            assert silence_id in expired and "expired" in expired and "bo" in expired
            router.wait_event(
                "silence updated",
                where=lambda e: e["silence_id"] == silence_id and e["expired_by"] == "bo",
            )
            later = alert_record("fraud", feature="age")
            kafka.produce(alert_topic, [later], key=b"m")
            webhook_server.wait_for(2, timeout=60)
        finally:
            router.terminate()
        ids = [a["annotations"]["alert_id"] for p in webhook_server.payloads for a in p["alerts"]]
        assert ids == [heard["alert_id"], later["alert_id"]]

        records = [orjson.loads(r.value) for r in kafka.read_all(audit_topic)]
        silences = [r for r in records if r["chain"] == "silences"]
        assert [(r["by"], r["body"]["action"], r["body"]["id"]) for r in silences] == [
            ("ana", "created", silence_id),
            ("bo", "expired", silence_id),
        ]
        assert silences[0]["body"]["comment"] == "retraining fraud"
        chain = [r for r in records if r["chain"] == "router/0"]
        assert [r["kind"] for r in chain] == [
            "partition_assigned",
            "notification",
            "notification",
            "partition_released",
        ]
        assert {"version", "river", "python"} <= set(chain[0]["body"])
        assert chain[-1]["body"]["reason"] == "stopped"
        sent = chain[1:3]
        assert [(r["body"]["alert_ids"], r["body"]["accepted"]) for r in sent] == [
            ([heard["alert_id"]], True),
            ([later["alert_id"]], True),
        ]
        assert {r["body"]["receiver"] for r in sent} == {"hook"}
        assert (
            main(
                [
                    "audit",
                    "verify",
                    "--bootstrap-servers",
                    kafka.bootstrap_servers,
                    "--topic",
                    audit_topic,
                ]
            )
            == 0
        )


SLACK_SECRET = "slackWebhookSecretXYZ"
PD_SECRET = "pdSecretKey0123456789abcdeSECRET"  # 32 characters
HOOK_SECRET = "hookSecretToken987"


class TestSecrets:
    def test_secrets_never_shown(
        self,
        kafka: Any,
        unique: Any,
        tmp_path: Path,
        pagerduty_server: PagerDutyServer,
    ) -> None:
        """Webhook URLs and routing keys appear in no log line, dead letter, metric,
        exception or --help output, even when a receiver echoes them back."""
        assert len(PD_SECRET) == 32
        alert_topic = kafka.create_topic(unique("alerts"))
        group = unique("router")
        slack_server = SlackServer(secret=SLACK_SECRET).start()
        slack_url = slack_server.webhook_url
        secret_file = tmp_path / "routing_key"
        secret_file.write_text(PD_SECRET + "\n")
        port = free_port()
        config = router_config(
            tmp_path / "router.yaml",
            kafka.bootstrap_servers,
            alert_topic,
            group,
            port=port,
            route={"receiver": "all", "group_wait": "0s"},
            receivers=[
                {
                    "name": "all",
                    "slack_configs": [{"api_url": slack_url}],
                    "pagerduty_configs": [
                        {"routing_key_file": str(secret_file), "url": pagerduty_server.enqueue_url}
                    ],
                    "webhook_configs": [{"url": f"http://127.0.0.1:9/hook?token={HOOK_SECRET}"}],
                }
            ],
            delivery={"max_retry_time": "1s", "initial_backoff": "100ms", "max_backoff": "200ms"},
        )
        echo = f"no_service for {SLACK_SECRET}".encode()
        slack_server.fail_next(404, echo)
        pagerduty_server.fail_next(400, f'{{"errors": ["bad key {PD_SECRET}"]}}'.encode())
        kafka.produce(alert_topic, [alert_record("fraud")], key=b"fraud")
        router = router_process(tmp_path, config).start()
        try:
            kafka.wait_committed(group, alert_topic, {0: 1})
            letters = kafka.read_all(f"{alert_topic}.router-dlq")
            assert len(letters) == 3
            metrics = http_get(port, "/metrics")[2].decode()
        finally:
            router.terminate()
            slack_server.stop()
        help_text = subprocess.run(
            [sys.executable, "-m", "detector", "route", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        outputs = {
            "log": router.output(),
            "dead letters": "\n".join((r.value or b"").decode() + repr(r.headers) for r in letters),
            "metrics": metrics,
            "help": help_text,
        }
        for secret in (SLACK_SECRET, PD_SECRET, HOOK_SECRET):
            for name, text in outputs.items():
                assert secret not in text, f"{secret!r} in the {name}"
        assert "***" in outputs["dead letters"]  # the echoed secret, scrubbed

    @pytest.mark.parametrize(
        ("receiver", "pagerduty", "message"),
        [
            (
                "nobody",
                {"routing_key": PD_SECRET},
                "route.receiver: expected the name of a receiver",
            ),
            (
                "team",
                {"routing_key": PD_SECRET, "routing_key_file": "/x"},
                "receivers.0.pagerduty_configs.0: expected routing_key or routing_key_file, not both",
            ),
        ],
    )
    def test_bad_config_exits_2_without_secrets(
        self, tmp_path: Path, receiver: str, pagerduty: dict[str, str], message: str
    ) -> None:
        """A bad config fails at start-up: exit 2, the file, the key path, no secret."""
        config = tmp_path / "router.yaml"
        slack = {"api_url": f"https://hooks.example/services/{SLACK_SECRET}"}
        config.write_text(
            yaml.safe_dump(
                {
                    "route": {"receiver": receiver},
                    "receivers": [
                        {"name": "team", "slack_configs": [slack], "pagerduty_configs": [pagerduty]}
                    ],
                }
            )
        )
        done = subprocess.run(
            [sys.executable, "-m", "detector", "route", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert done.stderr.startswith(f"detector: configuration error: {config}: {message}")
        assert SLACK_SECRET not in done.stderr and PD_SECRET not in done.stderr


def test_alert_payload_is_json(unique: Any) -> None:
    """The alert records the tests publish are what the sidecar publishes (schema v1)."""
    import jsonschema

    from detector.router.model import RoutedAlert

    record = alert_record("fraud")
    schema = orjson.loads(
        (Path(__file__).parents[2] / "schemas" / "drift-alert.v1.json").read_bytes()
    )
    jsonschema.validate(record, schema)
    assert RoutedAlert.from_json(record).labels["model"] == "fraud"
