"""People's oversight in the router (pure): acknowledged groups are not repeated and tell
PagerDuty and Slack, groups people resolved are resolved, suspensions page and resumes
resolve the page; and the suspension rules of ``detector review suspend|resume``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from test_router_groups import CONFIG, T0, H, M, S, accept, alert, make, sent

from detector.alerts import rfc3339
from detector.audit.chain import Chain
from detector.audit.control import ControlError, control_body, control_event, suspended
from detector.router.groups import Dispatcher, decode_group, encode_group
from detector.router.model import Review
from detector.router.oversight import Oversight, Reviewed, Suspended
from detector.router.settings import RouterSettings, load_router_settings

#: resolve_timeout 12h: repeats (4h) come before the timeout resolves the group.
LONG = CONFIG.replace("resolve_timeout: 30m", "resolve_timeout: 12h")


@pytest.fixture
def settings(tmp_path: Path) -> RouterSettings:
    path = tmp_path / "router.yaml"
    path.write_text(LONG)
    return load_router_settings(path, env={})


def ack(by: str = "ana", reason: str = "on it") -> Review:
    return Review("acknowledged", by, reason, rfc3339(T0))


def both_fired(settings: RouterSettings) -> Dispatcher:
    """Alert a0001 (warning: receiver team, Slack and a webhook) and a0002 (critical:
    receiver pager, PagerDuty), fired at T0 + 30 s, accepted."""
    d = make(settings)
    d.add(alert(1), T0)
    d.add(alert(2, feature="age", severity="critical"), T0)
    accept(d, d.flush(T0 + 30 * S), T0 + 30 * S)
    return d


def ack_both(d: Dispatcher, now: int) -> None:
    d.review("a0001", ack(), now)
    d.review("a0002", ack(), now)
    accept(d, d.flush(now), now)


class TestReviewedGroups:
    def test_an_acknowledged_group_tells_pagerduty_and_slack_once(
        self, settings: RouterSettings
    ) -> None:
        d = both_fired(settings)
        d.review("a0001", ack(), T0 + 1 * M)
        d.review("a0002", ack(), T0 + 1 * M)
        assert d.next_flush_ms() == T0 + 1 * M  # at once, not a group_interval later
        out = d.flush(T0 + 1 * M)
        assert sent(out) == [  # not the webhook: its format has no such state
            ("team/slack/0", "acknowledged", ["a0001"], []),
            ("pager/pagerduty/0", "acknowledged", ["a0002"], []),
        ]
        assert dict(out[0].notification.reviews) == {"a0001": ack()}
        accept(d, out, T0 + 1 * M)
        assert d.flush(T0 + 2 * M) == []

    def test_an_acknowledged_group_is_not_repeated(self, settings: RouterSettings) -> None:
        d = both_fired(settings)
        ack_both(d, T0 + 1 * M)
        ticks = [d.flush(T0 + 30 * S + k * 5 * M) for k in range(1, 120)]  # ~10 h
        assert all(out == [] for out in ticks)

    def test_reopened_it_is_repeated_again(self, settings: RouterSettings) -> None:
        d = both_fired(settings)
        ack_both(d, T0 + 1 * M)
        d.review("a0002", Review("open", "bo", "not fixed", rfc3339(T0)), T0 + 5 * H)
        assert sent(d.flush(T0 + 5 * H)) == [("pager/pagerduty/0", "firing", ["a0002"], [])]

    def test_a_new_alert_is_announced_and_a_new_ack_told_again(
        self, settings: RouterSettings
    ) -> None:
        d = both_fired(settings)
        ack_both(d, T0 + 1 * M)
        d.add(alert(3, at=T0 + 2 * M), T0 + 2 * M)
        assert d.flush(T0 + 6 * M - 1) == []  # the next group_interval tick after the ack
        firing = d.flush(T0 + 6 * M)
        assert sent(firing) == [
            ("team/slack/0", "firing", ["a0001", "a0003"], ["a0003"]),
            ("team/webhook/0", "firing", ["a0001", "a0003"], ["a0003"]),
        ]
        accept(d, firing, T0 + 6 * M)
        d.review("a0003", ack("bo"), T0 + 7 * M)
        assert sent(d.flush(T0 + 7 * M)) == [
            ("team/slack/0", "acknowledged", ["a0001", "a0003"], [])
        ]

    def test_partly_acknowledged_is_open(self, settings: RouterSettings) -> None:
        d = make(settings)
        d.add(alert(1), T0)
        d.add(alert(2, feature="age"), T0)
        accept(d, d.flush(T0 + 30 * S), T0 + 30 * S)
        d.review("a0001", ack(), T0 + 1 * M)
        assert d.flush(T0 + 1 * M) == []
        assert [s[1] for s in sent(d.flush(T0 + 30 * S + 4 * H))] == ["firing", "firing"]

    def test_a_group_people_resolved_is_resolved(self, settings: RouterSettings) -> None:
        d = both_fired(settings)
        for alert_id in ("a0001", "a0002"):
            d.review(alert_id, Review("resolved", "ana", "retrained", rfc3339(T0)), T0 + 3 * M)
        out = d.flush(T0 + 3 * M)
        assert sent(out) == [
            ("team/slack/0", "resolved", ["a0001"], []),
            ("team/webhook/0", "resolved", ["a0001"], []),
            ("pager/pagerduty/0", "resolved", ["a0002"], []),
        ]
        accept(d, out, T0 + 3 * M)
        assert d.open_groups() == 0
        assert not d.add(alert(1), T0 + 4 * M)  # a duplicate now

    def test_a_review_before_group_wait_waits_for_it(self, settings: RouterSettings) -> None:
        d = make(settings)
        d.add(alert(1), T0)
        d.review("a0001", ack(), T0 + 10 * S)
        assert d.next_flush_ms() == T0 + 30 * S
        assert [s[1] for s in sent(d.flush(T0 + 30 * S))] == ["firing", "firing"]

    def test_acknowledged_sent_is_kept_in_the_state_record(self, settings: RouterSettings) -> None:
        d = both_fired(settings)
        ack_both(d, T0 + 1 * M)
        group = next(g for g in d.groups.values() if g.route.receiver == "pager")
        restored = decode_group(encode_group(group), {group.route.key: group.route})
        assert restored is not None
        assert restored.log("pager/pagerduty/0").acknowledged_sent
        record = orjson.loads(encode_group(group))
        del record["logs"]["pager/pagerduty/0"]["acknowledged_sent"]  # a record of before
        older = decode_group(orjson.dumps(record), {group.route.key: group.route})
        assert older is not None and not older.log("pager/pagerduty/0").acknowledged_sent


def _record(chain: Chain, kind: str, body: dict[str, Any], at: int = T0) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(chain.append(kind, body, at))
    return parsed


class TestOversight:
    def test_decisions_become_reviews(self) -> None:
        review = Chain("review", "ana")
        o = Oversight("alerts.audit")
        body = {"action": "ack", "alert_id": "a0001", "reason": "on it"}
        assert o.apply(_record(review, "review", body), 3) == Reviewed(
            "a0001", Review("acknowledged", "ana", "on it", rfc3339(T0))
        )
        body = {"action": "comment", "alert_id": "a0001", "reason": "still"}
        change = o.apply(_record(review, "review", body), 4)
        assert isinstance(change, Reviewed) and change.review.state == "acknowledged"
        other = Chain("sidecar/0", "pod")
        assert o.apply(_record(other, "review", {"action": "ack", "alert_id": "x"}), 5) is None
        assert o.apply({"kind": "alert"}, 6) is None

    def test_a_suspension_pages_and_the_resume_resolves_it(self) -> None:
        control = Chain("control", "ana")
        o = Oversight("alerts.audit")
        body = {"action": "suspend", "model": "credit", "reason": "bias", "control_topic": "c"}
        change = o.apply(_record(control, "suspension", body), 7)
        assert isinstance(change, Suspended)
        page = change.alert
        assert dict(page.labels) == {
            "model": "credit",
            "model_version": "",
            "feature": "__model__",
            "drift_type": "suspension",
            "severity": "critical",
            "detector": "human",
        }
        assert (page.partition, page.offset) == (0, -1)
        assert page.summary == "model credit suspended by ana: bias"
        assert page.body["trigger"]["offset"] == 7
        assert o.suspensions == {"credit": page}
        body = {"action": "resume", "model": "credit", "reason": "fixed", "control_topic": "c"}
        resumed = o.apply(_record(control, "suspension", body, T0 + H), 8)
        assert resumed == Reviewed(
            page.alert_id, Review("resolved", "ana", "fixed", rfc3339(T0 + H))
        )
        assert o.suspensions == {}

    def test_a_page_holds_back_no_commit(self, settings: RouterSettings) -> None:
        control = Chain("control", "ana")
        o = Oversight("alerts.audit")
        body = {"action": "suspend", "model": "fraud", "reason": "bias", "control_topic": "c"}
        change = o.apply(_record(control, "suspension", body), 7)
        assert isinstance(change, Suspended)
        d = make(settings)
        assert d.add(change.alert, T0)
        assert d.pending_offsets() == {}
        assert [s[:2] for s in sent(d.flush(T0 + 30 * S))] == [("pager/pagerduty/0", "firing")]


class TestControl:
    def _log(self, *actions: tuple[str, str]) -> list[bytes]:
        chain = Chain("control", "ana")
        return [
            chain.append(
                "suspension",
                {"action": a, "model": m, "reason": "r", "control_topic": "c"},
                T0 + i,
            )
            for i, (a, m) in enumerate(actions)
        ]

    def test_suspended_models(self) -> None:
        log = self._log(("suspend", "credit"), ("suspend", "fraud"), ("resume", "credit"))
        assert sorted(suspended(log)) == ["fraud"]

    def test_refusals(self) -> None:
        now = suspended(self._log(("suspend", "credit")))
        with pytest.raises(ControlError, match=r"^model credit is already suspended \(by ana at "):
            control_body(now, "suspend", "credit", "again", "c")
        with pytest.raises(ControlError, match=r"^model fraud is not suspended$"):
            control_body(now, "resume", "fraud", "why", "c")
        with pytest.raises(ControlError, match=r"^--reason: say why"):
            control_body({}, "suspend", "fraud", " ", "c")

    def test_the_control_event_names_its_audit_record(self) -> None:
        (value,) = self._log(("suspend", "credit"))
        record = orjson.loads(value)
        assert control_event(record, "alerts.audit", 0) == {
            "schema_version": 1,
            "model": "credit",
            "action": "suspend",
            "suspended": True,
            "by": "ana",
            "reason": "r",
            "at": record["at"],
            "audit": {
                "topic": "alerts.audit",
                "partition": 0,
                "chain": "control",
                "seq": 0,
                "hash": record["hash"],
            },
        }
