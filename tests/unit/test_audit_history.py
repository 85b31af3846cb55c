"""The audit log folded into its history (pure): alerts with their decisions and
notifications, config records, starts and stops, silences, suspensions, unknown kinds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson

from detector.audit.chain import Chain
from detector.audit.history import history_of
from detector.audit.review import CHAIN, fold

AT = 1_796_616_000_000  # 2026-12-07T04:00:00.000Z


def _alert(alert_id: str, model: str = "fraud", partition: int = 1) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "model": model,
        "feature": "amount",
        "drift_type": "mean",
        "emitted_at": "2026-12-07T04:00:00.000Z",
        "trigger": {"partition": partition},
    }


def _log() -> list[bytes]:
    """Partition 0 (review, silences, control, sidecar/0), then partition 1 (sidecar/1,
    router/1), as read_log yields them: the decisions come before their alerts."""
    review = Chain(CHAIN, "ana")
    silences = Chain("silences", "ben")
    control = Chain("control", "cy")
    side0 = Chain("sidecar/0", "pod-0")
    side1 = Chain("sidecar/1", "pod-1")
    router = Chain("router/1", "router-0")
    config = {"detection": {"reference_size": 512}}
    decision = {"model": "fraud", "feature": "amount", "drift_type": "mean"}
    part0 = [
        review.append(
            "review",
            {**decision, "action": "ack", "alert_id": "a1", "reason": "on it"},
            AT + 90_000,
        ),
        review.append(
            "review",
            {**decision, "action": "resolve", "alert_id": "a1", "reason": "fixed"},
            AT + 300_000,
        ),
        silences.append(
            "silence", {"action": "created", "id": "s1", "matchers": ['model="fraud"']}, AT + 1
        ),
        side0.append(
            "partition_assigned",
            {
                "instance": "pod-0",
                "partition": 0,
                "committed_offset": None,
                "reason": "assigned",
                "config_hash": "h1",
                "config": config,
            },
            AT,
        ),
        side0.append(
            "partition_released",
            {"partition": 0, "next_offset": 10, "reason": "stopped", "events": 10},
            AT + 5,
        ),
    ]
    part0.append(
        _raw(
            control,
            "suspension",
            {"action": "suspend", "model": "fraud", "reason": "retraining"},
            AT + 7,
        )
    )
    part0.append(_raw(control, "state_snapshot", {"partition": 0, "bytes": 12}, AT + 8))
    part1 = [
        side1.append(
            "partition_assigned",
            {
                "instance": "pod-1",
                "partition": 1,
                "committed_offset": None,
                "reason": "assigned",
                "config_hash": "h1",
                "config": config,
            },
            AT,
        ),
        side1.append("alert", _alert("a1"), AT + 10),
        side1.append("alert", _alert("a2", model="churn"), AT + 20),
        side1.append("config", {"reason": "reload", "config_hash": "h2", "config": {}}, AT + 30),
        side1.append("alert", _alert("a1"), AT + 40),  # replayed (at-least-once): the same id
        side1.append("signature", {"signs_seq": 4, "signs_hash": "x"}, AT + 41),
        router.append(
            "notification",
            {
                "receiver": "ml",
                "integration": "ml/slack/0",
                "status": "firing",
                "alert_ids": ["a1", "a2"],
                "new_alert_ids": ["a1"],
                "accepted": True,
                "reason": "",
                "http_status": 200,
                "attempts": 2,
            },
            AT + 50,
        ),
        b"not json",
    ]
    return part0 + part1


def _raw(chain: Chain, kind: str, body: dict[str, Any], at_ms: int) -> bytes:
    """A record of a kind Chain.append does not write yet (written by a later version)."""
    value = orjson.loads(chain.append("review", body, at_ms))
    value["kind"] = kind
    return orjson.dumps(value)


def test_alerts_decisions_and_notifications() -> None:
    history = history_of(_log())
    assert sorted(history.alerts) == ["a1", "a2"]
    a1 = history.alerts["a1"]
    assert (a1.state, a1.chain, a1.at, a1.model) == (
        "resolved",
        "sidecar/1",
        "2026-12-07T04:00:00.010Z",
        "fraud",
    )
    assert [(d.action, d.by, d.reason) for d in a1.decisions] == [
        ("ack", "ana", "on it"),
        ("resolve", "ana", "fixed"),
    ]
    assert a1.time_to_ack() == timedelta(seconds=90)
    assert history.time_to_first_ack("a2") is None
    assert [(n.receiver, n.integration, n.accepted, n.attempts) for n in a1.notifications] == [
        ("ml", "ml/slack/0", True, 2)
    ]
    assert history.alerts["a2"].notifications == a1.notifications
    assert [a.alert_id for a in history.alerts_of("fraud")] == ["a1"]
    assert [a.alert_id for a in history.open_alerts()] == ["a2"]
    assert history.open_alerts("fraud") == []
    assert history.models() == ["churn", "fraud"]


def test_the_review_fold_waits_for_alerts_read_after_their_decisions() -> None:
    reviews = fold(_log())
    assert reviews["a1"].state == "resolved"
    assert [d.action for d in reviews["a1"].decisions] == ["ack", "resolve"]


def test_configs_starts_stops_silences_suspensions_and_other_kinds() -> None:
    history = history_of(_log())
    assert [(c.chain, c.kind, c.config_hash) for c in history.configs] == [
        ("sidecar/0", "partition_assigned", "h1"),
        ("sidecar/1", "partition_assigned", "h1"),
        ("sidecar/1", "config", "h2"),
    ]
    assert [
        (s.chain, s.kind, s.instance, s.offset, s.previous_at)
        for s in history.starts_stops["sidecar/0"]
    ] == [
        ("sidecar/0", "partition_assigned", "pod-0", None, None),
        ("sidecar/0", "partition_released", "pod-0", 10, "2026-12-07T04:00:00.000Z"),
    ]
    assert list(history.starts_stops) == ["sidecar/0", "sidecar/1"]
    assert [(s.action, s.by, s.silence) for s in history.silences] == [
        ("created", "ben", {"id": "s1", "matchers": ['model="fraud"']})
    ]
    assert [(s.action, s.model, s.reason, s.by) for s in history.suspensions_of("fraud")] == [
        ("suspend", "fraud", "retraining", "cy")
    ]
    assert [(o.kind, o.chain, o.body) for o in history.other] == [
        ("state_snapshot", "control", {"partition": 0, "bytes": 12})
    ]
    assert history.chains["sidecar/1"].records == 6
    assert history.chains["control"].records == 2
