"""Re-deriving an alert, without a broker: the whole-state archive of the engine, the plan
read from audit records (which config, which snapshot), and the replay's comparison."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from label_support import DelayedStream, feed, join_settings, merged, positions

from detector.alerts import build_alert
from detector.audit.chain import Chain
from detector.audit.content import archive_body, config_body
from detector.audit.reproduce import (
    Origin,
    Plan,
    Replayed,
    ReproduceError,
    plan,
    replay,
)
from detector.config import DetectionSettings, Settings
from detector.core.engine import PartitionDetectors
from detector.core.labels import KEY_PREFIX

TOPIC = "predictions"


def _stream() -> tuple[DetectionSettings, list[tuple[str, int, bytes]]]:
    return join_settings(), merged(DelayedStream(n=12_000, change=6_000))


class TestArchive:
    def test_a_restored_archive_goes_on_as_the_state_it_was_taken_from(self) -> None:
        settings, records = _stream()
        whole = feed(PartitionDetectors(settings, TOPIC, 0), records)
        cut = len(records) // 2
        first = PartitionDetectors(settings, TOPIC, 0)
        before = feed(first, records[:cut])
        entries = first.archive()
        assert sorted(k for k in entries if not k.startswith(KEY_PREFIX)) == ["credit"]
        assert f"{KEY_PREFIX}meta" in entries  # the label join's waiting predictions too
        again = PartitionDetectors.restore(settings, TOPIC, 0, entries)
        after = feed(again, records[cut:])
        assert after.detections  # the drift comes after the cut
        assert positions(before.detections + after.detections) == positions(whole.detections)

    def test_archiving_leaves_the_next_changelog_snapshot_as_it_was(self) -> None:
        settings, records = _stream()
        archived, plain = (PartitionDetectors(settings, TOPIC, 0) for _ in range(2))
        feed(archived, records[:5000])
        feed(plain, records[:5000])
        archived.archive()
        assert archived.snapshot() == plain.snapshot()


CONFIG = config_body(Settings())
OTHER = config_body(Settings(detection=DetectionSettings(reference_size=1024)))


def _alert(offset: int, alert_id: str = "a-1", partition: int = 0) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "model": "fraud",
        "feature": "amount",
        "drift_type": "mean",
        "trigger": {"topic": TOPIC, "partition": partition, "offset": offset},
    }


def _assigned(committed: int | None, config: dict[str, Any] = CONFIG) -> tuple[str, Any]:
    return "partition_assigned", {"partition": 0, "committed_offset": committed, **config}


def _archived(offset: int, snapshot: str) -> tuple[str, Any]:
    return "state_archived", archive_body(0, snapshot, offset, None, {"fraud": b"state"})


def _records(*items: tuple[str, Any], chain: str = "sidecar/0") -> list[dict[str, Any]]:
    writer = Chain(chain, "pod-0")
    at = 1_796_616_000_000
    return [orjson.loads(writer.append(kind, body, at + i)) for i, (kind, body) in enumerate(items)]


class TestPlan:
    def test_the_newest_snapshot_at_or_before_the_trigger(self) -> None:
        records = _records(
            _assigned(0),
            _archived(100, "s100"),
            _archived(200, "s200"),
            ("alert", _alert(250, "earlier")),
            _archived(300, "s300"),
            ("alert", _alert(250)),
        )
        found = plan(records, "a-1")
        assert (found.partition, found.trigger_offset, found.config_hash) == (
            0,
            250,
            CONFIG["config_hash"],
        )
        assert found.origin == Origin(200, None, "s200", 1, found.origin.digest, 1_796_616_000_002)
        assert found.config == CONFIG["config"]

    def test_a_partition_consumed_from_its_beginning_starts_from_nothing(self) -> None:
        found = plan(_records(_assigned(None), ("alert", _alert(50))), "a-1")
        assert found.origin == Origin(0)
        assert found.origin.describe() == (
            "the empty state of a partition consumed from its beginning (offset 0)"
        )

    def test_a_restart_under_the_same_config_keeps_the_snapshots(self) -> None:
        records = _records(
            _assigned(0),
            _archived(100, "s100"),
            ("partition_released", {"partition": 0, "reason": "stopped"}),
            _assigned(120),
            ("alert", _alert(150)),
        )
        assert plan(records, "a-1").origin.snapshot == "s100"

    def test_a_config_change_drops_the_snapshots_before_it(self) -> None:
        records = _records(
            _assigned(0),
            _archived(100, "s100"),
            ("config", {"reason": "reload", **OTHER}),
            ("alert", _alert(150)),
        )
        with pytest.raises(ReproduceError) as caught:
            plan(records, "a-1")
        assert str(caught.value).startswith(
            f"no archived state of input partition 0 at or before offset 150 under config "
            f"{OTHER['config_hash'][:12]} (the one in force at the alert): 1 snapshots "
            f"archived before it, none usable."
        )

    def test_a_snapshot_after_the_trigger_is_no_starting_point(self) -> None:
        records = _records(_assigned(0), _archived(200, "s200"), ("alert", _alert(150)))
        with pytest.raises(ReproduceError, match="1 snapshots archived before it, none usable"):
            plan(records, "a-1")

    def test_other_chains_are_passed_over(self) -> None:
        records = _records(_assigned(0), _archived(100, "s100"))
        records += _records(_archived(140, "elsewhere"), chain="sidecar/1")
        records += _records(_archived(130, "review"), chain="review")
        records += _records(("alert", _alert(150)))[-1:]  # sidecar/0's alert, after the others
        assert plan(records, "a-1").origin.snapshot == "s100"

    def test_an_alert_not_in_the_log(self) -> None:
        with pytest.raises(ReproduceError) as caught:
            plan(_records(_assigned(0)), "nope")
        assert str(caught.value) == (
            "alert nope is not in the audit log (an alert id of `detector review list`; records "
            "older than audit.retention_days are gone)"
        )

    def test_an_edited_config_is_refused(self) -> None:
        edited = dict(CONFIG, config={**CONFIG["config"], "detection": {"reference_size": 64}})
        records = _records(_assigned(0, edited), ("alert", _alert(10)))
        with pytest.raises(ReproduceError, match=r"does not match its hash .*audit log was edited"):
            plan(records, "a-1")


class TestReplay:
    def _case(self) -> tuple[Settings, list[Replayed], dict[str, Any]]:
        settings, records = _stream()
        whole = feed(PartitionDetectors(settings, TOPIC, 0), records)
        detection = next(d for d in whole.detections if d.drift_type == "performance")
        replayed = [
            Replayed(0, topic == "labels", offset, value) for topic, offset, value in records
        ]
        alert = orjson.loads(orjson.dumps(build_alert(detection, 1_796_616_000_000)))
        return Settings(detection=settings), replayed, alert

    def _plan(self, settings: Settings, alert: dict[str, Any], origin: Origin) -> Plan:
        body = config_body(settings)
        return Plan(alert, 0, body["config"], body["config_hash"], None, origin)

    def test_the_same_alert_comes_out(self) -> None:
        settings, records, alert = self._case()
        outcome = replay(self._plan(settings, alert, Origin(0)), {}, records)
        assert outcome.reproduced and outcome.differences == ()
        assert outcome.replayed is not None
        assert dict(outcome.replayed, emitted_at=alert["emitted_at"]) == alert
        assert alert["trigger"]["label"] is not None  # completed by a label event
        assert outcome.labels > 0 and outcome.events > alert["trigger"]["offset"]

    def test_a_different_recorded_alert_is_told_apart(self) -> None:
        settings, records, alert = self._case()
        forged = dict(alert, evidence=dict(alert["evidence"], effect_size=0.01), severity="info")
        outcome = replay(self._plan(settings, forged, Origin(0)), {}, records)
        assert not outcome.reproduced
        assert outcome.differences == ("severity", "evidence")

    def test_no_such_alert_out_of_a_replay_that_stops_early(self) -> None:
        settings, records, alert = self._case()
        outcome = replay(self._plan(settings, alert, Origin(0)), {}, records[:1000])
        assert (outcome.reproduced, outcome.replayed) == (False, None)

    def test_an_archive_that_is_not_what_the_audit_log_names(self) -> None:
        settings, records, alert = self._case()
        origin = Origin(0, None, "s1", 1, "0" * 64)
        with pytest.raises(ReproduceError, match="does not match the digest"):
            replay(self._plan(settings, alert, origin), {"credit": b"other"}, records)
