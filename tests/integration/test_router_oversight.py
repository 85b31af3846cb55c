"""People's decisions reach the pager: on a real broker, a sidecar's alerts paged through
PagerDuty (the local fake), then `detector review ack` acknowledges their incidents,
`detector review resolve` resolves them, and `detector review suspend|resume` publishes the
control event, pages with severity critical and resolves the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from support import drifting_models, settings_for, sidecar_thread
from test_router import ROUTING_KEY, router_config, router_process
from vendors import PagerDutyServer

from detector.cli import main

pytestmark = pytest.mark.integration


def _actions(server: PagerDutyServer) -> dict[str, list[str]]:
    return {i.dedup_key: [e["event_action"] for e in i.events] for i in server.incidents}


def test_decisions_acknowledge_resolve_and_suspend(
    kafka: Any, unique: Any, tmp_path: Path, pagerduty_server: PagerDutyServer, capsys: Any
) -> None:
    source, alert_topic, config = drifting_models(kafka, unique, tmp_path, 3000, 1500)
    settings = settings_for(config)
    with sidecar_thread(settings):
        kafka.wait_committed(settings.kafka.group_id, source, kafka.end_offsets(source))
    alerts = [r.json() for r in kafka.read_all(alert_topic)]
    churn = [a["alert_id"] for a in alerts if a["model"] == "churn"]
    groups = {(a["model"], a["drift_type"]) for a in alerts}
    assert churn and any(a["model"] == "fraud" for a in alerts)

    route = {
        "receiver": "pager",
        "group_by": ["model", "drift_type"],
        "group_wait": "0s",
        "group_interval": "1s",
        "repeat_interval": "4h",
    }
    receivers = [
        {
            "name": "pager",
            "pagerduty_configs": [
                {"routing_key": ROUTING_KEY, "url": pagerduty_server.enqueue_url}
            ],
        }
    ]
    router_yaml = router_config(
        tmp_path / "router.yaml",
        kafka.bootstrap_servers,
        alert_topic,
        unique("router"),
        receivers=receivers,
        route=route,
    )
    router = router_process(tmp_path, router_yaml).start()
    where = ["--config", str(config)]
    try:
        pagerduty_server.wait_for(len(groups), timeout=60)
        churn_keys = {
            i.dedup_key
            for i in pagerduty_server.incidents
            if i.last_trigger["payload"]["component"] == "churn"
        }
        assert len(churn_keys) == len({g for g in groups if g[0] == "churn"})

        for alert_id in churn:
            assert (
                main(["review", "ack", alert_id, "--by", "ana", "--reason", "retraining", *where])
                == 0
            )
        pagerduty_server.wait_for(len(groups) + len(churn_keys), timeout=60)
        assert {k: a for k, a in _actions(pagerduty_server).items() if k in churn_keys} == {
            k: ["trigger", "acknowledge"] for k in churn_keys
        }
        assert {i.status for i in pagerduty_server.incidents if i.dedup_key in churn_keys} == {
            "acknowledged"
        }

        for alert_id in churn:
            assert (
                main(
                    ["review", "resolve", alert_id, "--by", "ana", "--reason", "retrained", *where]
                )
                == 0
            )
        pagerduty_server.wait_for(len(groups) + 2 * len(churn_keys), timeout=60)
        assert {k: a for k, a in _actions(pagerduty_server).items() if k in churn_keys} == {
            k: ["trigger", "acknowledge", "resolve"] for k in churn_keys
        }

        capsys.readouterr()
        assert main(["review", "suspend", "fraud", "--by", "bo", "--reason", "bias", *where]) == 0
        said = capsys.readouterr().out.splitlines()[-1]  # after a "topic created" log line
        assert said.startswith("model fraud suspended by bo (control topic ")
        before = len(pagerduty_server.accepted)
        (page,) = pagerduty_server.wait_for(before + 1, timeout=60)[before:]
        payload = page.json["payload"]
        assert page.json["event_action"] == "trigger"
        assert (payload["severity"], payload["component"], payload["class"]) == (
            "critical",
            "fraud",
            "suspension",
        )
        assert main(["review", "suspend", "fraud", "--by", "bo", "--reason", "x", *where]) == 2
        assert "model fraud is already suspended (by bo at " in capsys.readouterr().err

        assert main(["review", "resume", "fraud", "--by", "bo", "--reason", "fixed", *where]) == 0
        (resolve,) = pagerduty_server.wait_for(before + 2, timeout=60)[before + 1 :]
        assert resolve.json == {
            "routing_key": ROUTING_KEY,
            "event_action": "resolve",
            "dedup_key": page.json["dedup_key"],
        }
    finally:
        router.terminate()
    assert router.proc is not None and router.proc.returncode == 0

    control_topic = settings.audit.control_topic_for(settings.kafka)
    events = [orjson.loads(r.value) for r in kafka.read_all(control_topic)]
    assert [(e["model"], e["action"], e["suspended"], e["by"], e["reason"]) for e in events] == [
        ("fraud", "suspend", True, "bo", "bias"),
        ("fraud", "resume", False, "bo", "fixed"),
    ]
    audit = [orjson.loads(r.value) for r in kafka.read_all(f"{alert_topic}.audit")]
    suspensions = [r for r in audit if r["kind"] == "suspension"]
    assert [e["audit"]["hash"] for e in events] == [r["hash"] for r in suspensions]
    statuses = [r["body"]["status"] for r in audit if r["kind"] == "notification"]
    assert statuses.count("acknowledged") == len(churn_keys)
    capsys.readouterr()
    assert main(["audit", "verify", *where]) == 0
