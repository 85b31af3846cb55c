"""Aggregation groups: group_wait, group_interval, repeat_interval, resolve_timeout, the
notification log, pending offsets and the state records, on a driven clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from detector.alerts import rfc3339
from detector.router.groups import Dispatch, Dispatcher, StateRecordError
from detector.router.intake import Intake
from detector.router.model import RoutedAlert
from detector.router.routes import Route
from detector.router.settings import RouterSettings, integrations, load_router_settings
from detector.router.silences import SilenceSet, new_silence

S = 1000
M = 60 * S
H = 60 * M
T0 = 1_800_000_000_000  # the driven wall clock starts here (epoch ms)

CONFIG = """
resolve_timeout: 30m
max_alert_age: 24h
route:
  receiver: team
  group_by: [model]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - receiver: pager
      matchers: ['severity="critical"']
      continue: true
receivers:
  - name: team
    slack_configs: [{api_url: "http://127.0.0.1:9/services/T/B/team-secret"}]
    webhook_configs: [{url: "http://127.0.0.1:9/hook"}]
  - name: pager
    pagerduty_configs: [{routing_key: "0123456789abcdef0123456789abcdef", url: "http://127.0.0.1:9/v2/enqueue"}]
"""


def alert_body(
    n: int, model: str = "fraud", feature: str = "amount", severity: str = "warning", at: int = T0
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "alert_id": f"a{n:04d}",
        "model": model,
        "model_version": "v1",
        "feature": feature,
        "drift_type": "mean",
        "detector": {"name": "ADWIN", "params": {}},
        "severity": severity,
        "detected_at": rfc3339(at),
        "emitted_at": rfc3339(at),
        "trigger": {"topic": "in", "partition": 0, "offset": n, "event_id": f"e{n}"},
        "evidence": {},
        "summary": f"mean drift on {model}/{feature}",
    }


def alert(n: int, offset: int | None = None, partition: int = 0, **kw: Any) -> RoutedAlert:
    return RoutedAlert.from_json(alert_body(n, **kw), partition, n if offset is None else offset)


@pytest.fixture
def settings(tmp_path: Path) -> RouterSettings:
    path = tmp_path / "router.yaml"
    path.write_text(CONFIG)
    return load_router_settings(path, env={})


def make(settings: RouterSettings) -> Dispatcher:
    return Dispatcher(
        Route.from_settings(settings.route),
        integrations(settings),
        resolve_timeout_ms=settings.resolve_timeout_ms,
        max_alert_age_ms=settings.max_alert_age,
    )


def sent(dispatches: list[Dispatch]) -> list[tuple[str, str, list[str], list[str]]]:
    """(integration, status, alert ids, new ids) of each dispatch, in order."""
    return [
        (
            d.notification.integration.id,
            d.notification.status,
            d.notification.alert_ids,
            sorted(d.notification.new_ids),
        )
        for d in dispatches
    ]


def accept(dispatcher: Dispatcher, dispatches: list[Dispatch], now: int) -> None:
    for d in dispatches:
        dispatcher.completed(d.ticket, True, now)


def fired(settings: RouterSettings) -> Dispatcher:
    """A dispatcher whose group of alert a0001 (added at T0) fired at T0 + 30 s, accepted."""
    d = make(settings)
    d.add(alert(1), T0)
    accept(d, d.flush(T0 + 30 * S), T0 + 30 * S)
    return d


def resolved(settings: RouterSettings) -> Dispatcher:
    """:func:`fired`, then resolved at T0 + 30 min (resolve_timeout), accepted too."""
    d = fired(settings)
    accept(d, d.flush(T0 + 30 * M), T0 + 30 * M)
    return d


def first_record(settings: RouterSettings) -> dict[str, Any]:
    """The decoded state record of a dispatcher holding alert a0001."""
    d = make(settings)
    d.add(alert(1), T0)
    (_, _, value), *_ = d.snapshot()
    assert value is not None
    record: dict[str, Any] = orjson.loads(value)
    return record


class TestGroupWait:
    def test_first_notification_waits_group_wait(self, settings: RouterSettings) -> None:
        """Nothing before group_wait; then one firing notification per integration."""
        d = make(settings)
        assert d.add(alert(1), T0)
        assert d.flush(T0 + 30 * S - 1) == []
        assert d.next_flush_ms() == T0 + 30 * S
        assert sent(d.flush(T0 + 30 * S)) == [
            ("team/slack/0", "firing", ["a0001"], ["a0001"]),
            ("team/webhook/0", "firing", ["a0001"], ["a0001"]),
        ]

    def test_alerts_of_one_model_share_a_notification(self, settings: RouterSettings) -> None:
        """group_by model: two features of fraud in one notification, credit in another."""
        d = make(settings)
        d.add(alert(1, feature="amount"), T0)
        d.add(alert(2, feature="age", at=T0 + 1 * S), T0 + 1 * S)
        d.add(alert(3, model="credit", at=T0 + 2 * S), T0 + 2 * S)
        out = sent(d.flush(T0 + 32 * S))
        assert out == [
            ("team/slack/0", "firing", ["a0001", "a0002"], ["a0001", "a0002"]),
            ("team/webhook/0", "firing", ["a0001", "a0002"], ["a0001", "a0002"]),
            ("team/slack/0", "firing", ["a0003"], ["a0003"]),
            ("team/webhook/0", "firing", ["a0003"], ["a0003"]),
        ]


class TestGroupInterval:
    def test_new_alert_waits_for_group_interval(self, settings: RouterSettings) -> None:
        """A new alert in a notified group goes out at the next group_interval tick."""
        d = fired(settings)
        d.add(alert(2, at=T0 + 40 * S), T0 + 40 * S)
        assert d.flush(T0 + 30 * S + 5 * M - 1) == []
        assert sent(d.flush(T0 + 30 * S + 5 * M)) == [
            ("team/slack/0", "firing", ["a0001", "a0002"], ["a0002"]),
            ("team/webhook/0", "firing", ["a0001", "a0002"], ["a0002"]),
        ]

    def test_nothing_new_nothing_sent(self, settings: RouterSettings) -> None:
        """A tick with no new alert and no repeat due sends nothing."""
        d = fired(settings)
        assert d.flush(T0 + 30 * S + 5 * M) == []


class TestRepeatInterval:
    def test_repeat_after_repeat_interval(self, tmp_path: Path) -> None:
        """Still firing (resolve_timeout longer), nothing new: repeated after 4h."""
        path = tmp_path / "r.yaml"
        path.write_text(CONFIG.replace("resolve_timeout: 30m", "resolve_timeout: 12h"))
        d = fired(load_router_settings(path, env={}))
        quiet = [d.flush(T0 + 30 * S + k * 5 * M) for k in range(1, 48)]
        assert all(out == [] for out in quiet)  # 47 ticks, 3 h 55 min
        assert sent(d.flush(T0 + 30 * S + 48 * 5 * M)) == [
            ("team/slack/0", "firing", ["a0001"], []),
            ("team/webhook/0", "firing", ["a0001"], []),
        ]


class TestResolve:
    def test_resolved_after_resolve_timeout(self, settings: RouterSettings) -> None:
        """resolve_timeout after the newest alert: one resolved notification per integration."""
        d = fired(settings)
        assert d.flush(T0 + 30 * M - 1) == []
        out = d.flush(T0 + 30 * M)
        assert sent(out) == [
            ("team/slack/0", "resolved", ["a0001"], []),
            ("team/webhook/0", "resolved", ["a0001"], []),
        ]
        accept(d, out, T0 + 30 * M)
        assert d.open_groups() == 0
        assert d.flush(T0 + 10 * H) == []

    def test_resolved_alert_never_fires_again(self, settings: RouterSettings) -> None:
        """The same alert read again after its group resolved is a duplicate."""
        d = resolved(settings)
        assert not d.add(alert(1), T0 + 31 * M)
        assert d.flush(T0 + 40 * M) == []

    def test_new_alert_opens_new_incident(self, settings: RouterSettings) -> None:
        """After resolution, a new alert of the group starts over with group_wait."""
        d = resolved(settings)
        later = T0 + 2 * H
        assert d.add(alert(2, at=later), later)
        assert d.flush(later + 29 * S) == []
        assert sent(d.flush(later + 30 * S))[0] == ("team/slack/0", "firing", ["a0002"], ["a0002"])

    def test_alert_during_resolution_waits_for_it(self, settings: RouterSettings) -> None:
        """An alert arriving while resolved notifications are in flight joins the next incident."""
        d = fired(settings)
        resolving = d.flush(T0 + 30 * M)
        d.add(alert(2, at=T0 + 30 * M), T0 + 30 * M)
        accept(d, resolving, T0 + 30 * M + 1)
        assert sent(d.flush(T0 + 30 * M + 1 + 30 * S)) == [
            ("team/slack/0", "firing", ["a0002"], ["a0002"]),
            ("team/webhook/0", "firing", ["a0002"], ["a0002"]),
        ]

    def test_not_resolved_before_it_was_announced(self, settings: RouterSettings) -> None:
        """A group whose firing notification is still in flight is not resolved yet."""
        d = make(settings)
        d.add(alert(1), T0)
        firing = d.flush(T0 + 30 * S)
        assert d.flush(T0 + 31 * M) == []  # in flight: nothing else for these integrations
        accept(d, firing, T0 + 32 * M)
        assert d.next_flush_ms() == T0 + 32 * M  # resolve promptly once announced
        assert [s[1] for s in sent(d.flush(T0 + 32 * M))] == ["resolved", "resolved"]


class TestNotificationLog:
    def test_in_flight_blocks_the_next(self, settings: RouterSettings) -> None:
        """One notification per group and integration in flight at a time."""
        d = make(settings)
        d.add(alert(1), T0)
        first = d.flush(T0 + 30 * S)
        d.add(alert(2, at=T0 + 40 * S), T0 + 40 * S)
        assert d.flush(T0 + 30 * S + 5 * M) == []
        accept(d, first, T0 + 6 * M)
        assert [s[3] for s in sent(d.flush(T0 + 30 * S + 10 * M))] == [["a0002"], ["a0002"]]

    def test_abandoned_is_sent_again(self, settings: RouterSettings) -> None:
        """An abandoned notification (router stopping) is not logged: it goes out again."""
        d = make(settings)
        d.add(alert(1), T0)
        for dispatch in d.flush(T0 + 30 * S):
            d.completed(dispatch.ticket, False, T0 + 31 * S)
        assert [s[3] for s in sent(d.flush(T0 + 30 * S + 5 * M))] == [["a0001"], ["a0001"]]

    def test_pending_offsets_until_every_integration_took_it(
        self, settings: RouterSettings
    ) -> None:
        """An offset is owed until every integration of its route accepted or dead-lettered."""
        d = make(settings)
        d.add(alert(5, offset=17, partition=2), T0)
        d.add(alert(6, offset=30, partition=2, model="credit"), T0)
        assert d.pending_offsets() == {2: 17}
        out = d.flush(T0 + 30 * S)
        fraud = [x for x in out if x.notification.alert_ids == ["a0005"]]
        d.completed(fraud[0].ticket, True, T0 + 31 * S)
        assert d.pending_offsets() == {2: 17}  # the webhook still owes it
        d.completed(fraud[1].ticket, True, T0 + 31 * S)
        assert d.pending_offsets() == {2: 30}

    def test_continue_does_not_bring_back_the_parent(self, settings: RouterSettings) -> None:
        """A critical alert matches the pager route; continue tries siblings, not the root."""
        d = make(settings)
        d.add(alert(1, severity="critical"), T0)
        assert [s[0] for s in sent(d.flush(T0 + 30 * S))] == ["pager/pagerduty/0"]

    def test_continue_routes_to_a_sibling_too(self, tmp_path: Path) -> None:
        """continue: true on the first match lets the next sibling route take it as well."""
        path = tmp_path / "r.yaml"
        path.write_text(
            CONFIG.replace(
                "      continue: true\n",
                "      continue: true\n    - receiver: team\n      matchers: ['model=\"fraud\"']\n",
            )
        )
        d = make(load_router_settings(path, env={}))
        d.add(alert(1, severity="critical"), T0)
        assert [s[0] for s in sent(d.flush(T0 + 30 * S))] == [
            "pager/pagerduty/0",
            "team/slack/0",
            "team/webhook/0",
        ]

    def test_pagerduty_dedup_key_is_stable(self, settings: RouterSettings) -> None:
        """Repeats of one group carry one dedup_key; another group another."""
        d = make(settings)
        d.add(alert(1, severity="critical"), T0)
        d.add(alert(2, severity="critical", model="credit"), T0)
        keys = [
            x.notification.dedup_key
            for x in d.flush(T0 + 30 * S)
            if x.notification.integration.kind == "pagerduty"
        ]
        again = make(settings)
        again.add(alert(1, severity="critical"), T0 + H)
        key_again = [
            x.notification.dedup_key
            for x in again.flush(T0 + H + 30 * S)
            if x.notification.integration.kind == "pagerduty"
        ]
        assert len(set(keys)) == 2 and len(keys[0]) == 32
        assert key_again == keys[:1]


class TestStateRecords:
    def test_restore_continues_exactly(self, settings: RouterSettings) -> None:
        """A restored dispatcher knows what was sent, what is owed and when to flush."""
        d = make(settings)
        d.add(alert(1, offset=3), T0)
        accept(d, d.flush(T0 + 30 * S), T0 + 30 * S)
        d.add(alert(2, offset=4, at=T0 + M), T0 + M)
        records = d.snapshot()
        assert [(home, key) for home, key, _ in records] == [(0, b'{}:{model="fraud"}')]
        restored = make(settings)
        assert restored.restore([v for _, _, v in records if v is not None], T0 + 2 * M) == 0
        assert restored.pending_offsets() == {0: 4}
        assert not restored.add(alert(1, offset=3), T0 + 2 * M)  # a duplicate
        assert sent(restored.flush(T0 + 30 * S + 5 * M)) == sent(d.flush(T0 + 30 * S + 5 * M))

    def test_owed_notification_goes_out_right_after_restore(self, settings: RouterSettings) -> None:
        """A notification queued when the router died is sent at once after a restart,
        not a group_interval later; what was accepted is not sent again."""
        d = make(settings)
        d.add(alert(1), T0)
        slack, _webhook = d.flush(T0 + 30 * S)
        d.completed(slack.ticket, True, T0 + 31 * S)  # the webhook's was in flight
        records = [v for _, _, v in d.snapshot() if v is not None]
        restored = make(settings)
        restored.restore(records, T0 + M)
        assert restored.next_flush_ms() == T0 + M
        assert sent(restored.flush(T0 + M)) == [("team/webhook/0", "firing", ["a0001"], ["a0001"])]

    def test_group_in_group_wait_keeps_waiting(self, settings: RouterSettings) -> None:
        """A group restored inside its group_wait is first flushed when that ends."""
        d = make(settings)
        d.add(alert(1), T0)
        restored = make(settings)
        restored.restore([v for _, _, v in d.snapshot() if v is not None], T0 + 10 * S)
        assert restored.next_flush_ms() == T0 + 30 * S

    def test_record_is_versioned_json(self, settings: RouterSettings) -> None:
        """State records are JSON with a version: nothing is unpickled."""
        record = first_record(settings)
        assert record["version"] == 1 and record["alerts"][0]["alert"]["alert_id"] == "a0001"

    @pytest.mark.parametrize(
        "value",
        [b"\x80\x04cos\nsystem\n", b'{"version": 99}', b'{"version": 1, "route": "{}"}', b"[]"],
    )
    def test_bad_record_is_refused(self, settings: RouterSettings, value: bytes) -> None:
        """A pickle, an unknown version or a truncated record raises StateRecordError."""
        with pytest.raises(StateRecordError):
            make(settings).restore([value], T0)

    def test_unknown_route_is_skipped(self, settings: RouterSettings) -> None:
        """Groups of a route no longer in the config are skipped, and counted."""
        record = first_record(settings)
        record["route"] = '{}/{model="gone"}'
        assert make(settings).restore([orjson.dumps(record)], T0) == 1

    def test_pruned_groups_become_tombstones(self, settings: RouterSettings) -> None:
        """Closed groups are forgotten after max_alert_age, with a tombstone record."""
        d = resolved(settings)
        d.snapshot()
        d.prune(T0 + 24 * H + 1)
        assert d.snapshot() == [(0, b'{}:{model="fraud"}', None)]


class TestIntake:
    def _intake(self, settings: RouterSettings, silences: SilenceSet | None = None) -> Intake:
        return Intake(make(settings), silences or SilenceSet(), settings.max_alert_age)

    def test_verdicts(self, settings: RouterSettings) -> None:
        """grouped, duplicate, too old, invalid: each record gets exactly one verdict."""
        intake = self._intake(settings)
        value = orjson.dumps(alert_body(1))
        assert intake.ingest(value, 0, 1, T0).kind == "grouped"
        assert intake.ingest(value, 0, 1, T0).kind == "duplicate"
        old = orjson.dumps(alert_body(2, at=T0 - 24 * H - 1))
        assert intake.ingest(old, 0, 2, T0).kind == "too_old"
        assert intake.ingest(b"{", 0, 3, T0).detail == "not JSON"
        assert intake.ingest(b"[1]", 0, 4, T0).detail == "not a JSON object"
        assert intake.ingest(None, 0, 5, T0).detail == "empty record"

    def test_silenced(self, settings: RouterSettings) -> None:
        """An alert matching an active silence is not grouped; after its end it is."""
        silences = SilenceSet()
        silence = new_silence(['model="fraud"'], 2 * H, "ana", "deploy", T0)
        silences.put(silence)
        intake = self._intake(settings, silences)
        verdict = intake.ingest(orjson.dumps(alert_body(1)), 0, 1, T0 + H)
        assert verdict.kind == "silenced" and verdict.silence == silence
        later = orjson.dumps(alert_body(2, at=T0 + 2 * H))
        assert intake.ingest(later, 0, 2, T0 + 2 * H).kind == "grouped"
