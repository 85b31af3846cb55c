"""Human decisions on alerts (pure): the states they move an alert through, and the
decisions refused because they would mean nothing."""

from __future__ import annotations

from typing import Any

import pytest

from detector.audit.chain import Chain
from detector.audit.review import CHAIN, ReviewError, decision_body, fold

AT = 1_796_616_000_000


def _alert(alert_id: str, model: str = "fraud") -> dict[str, Any]:
    return {"alert_id": alert_id, "model": model, "feature": "amount", "drift_type": "mean"}


class Log:
    """An audit log being written: a sidecar chain's alerts, the review chain's decisions."""

    def __init__(self) -> None:
        self.sidecar = Chain("sidecar/0", "pod-0")
        self.review = Chain(CHAIN, "")
        self.values: list[bytes] = []

    def alert(self, alert_id: str) -> None:
        self.values.append(self.sidecar.append("alert", _alert(alert_id), AT))

    def decide(self, action: str, alert_id: str, by: str = "ana", reason: str = "seen") -> None:
        body = decision_body(fold(self.values), action, alert_id, reason)
        self.review.writer = by
        self.values.append(self.review.append("review", body, AT + len(self.values)))


class TestReview:
    def test_states_follow_the_decisions(self) -> None:
        log = Log()
        log.alert("a1")
        log.alert("a2")
        assert {k: r.state for k, r in fold(log.values).items()} == {"a1": "open", "a2": "open"}
        log.decide("ack", "a1", reason="looking at the amount pipeline")
        log.decide("comment", "a1", by="ben", reason="upstream currency change")
        log.decide("resolve", "a1", reason="fixed upstream")
        log.decide("reopen", "a1", by="ben", reason="came back")
        log.decide("resolve", "a2", reason="expected seasonal change")
        reviews = fold(log.values)
        assert (reviews["a1"].state, reviews["a2"].state) == ("open", "resolved")
        assert [(d.action, d.by, d.reason) for d in reviews["a1"].decisions] == [
            ("ack", "ana", "looking at the amount pipeline"),
            ("comment", "ben", "upstream currency change"),
            ("resolve", "ana", "fixed upstream"),
            ("reopen", "ben", "came back"),
        ]

    @pytest.mark.parametrize(
        ("steps", "action", "message"),
        [
            ([], "reopen", "alert a1 is open: cannot reopen it"),
            ([("ack", "ana")], "ack", "alert a1 is acknowledged (by ana at "),
            ([("resolve", "ben")], "resolve", "alert a1 is resolved (by ben at "),
            ([("resolve", "ben")], "ack", "alert a1 is resolved (by ben at "),
        ],
    )
    def test_decisions_that_mean_nothing_are_refused(
        self, steps: list[tuple[str, str]], action: str, message: str
    ) -> None:
        log = Log()
        log.alert("a1")
        for step, by in steps:
            log.decide(step, "a1", by=by)
        with pytest.raises(ReviewError) as caught:
            decision_body(fold(log.values), action, "a1", "again")
        assert str(caught.value).startswith(message)

    def test_unknown_alert_empty_reason_and_unknown_action(self) -> None:
        log = Log()
        log.alert("a1")
        reviews = fold(log.values)
        with pytest.raises(ReviewError, match="no alert nope in the audit log"):
            decision_body(reviews, "ack", "nope", "x")
        with pytest.raises(ReviewError, match="--reason: say why"):
            decision_body(reviews, "ack", "a1", "  ")
        with pytest.raises(ReviewError, match="unknown action 'close'"):
            decision_body(reviews, "close", "a1", "x")

    def test_the_body_names_the_alert(self) -> None:
        log = Log()
        log.alert("a1")
        assert decision_body(fold(log.values), "ack", "a1", "on it") == {
            "action": "ack",
            "alert_id": "a1",
            "reason": "on it",
            "model": "fraud",
            "feature": "amount",
            "drift_type": "mean",
        }

    def test_records_of_other_chains_or_garbage_do_not_count(self) -> None:
        log = Log()
        log.alert("a1")
        forged = Chain("not-review", "mallory").append(
            "review", {"action": "resolve", "alert_id": "a1"}, AT
        )
        reviews = fold([*log.values, forged, b"{garbage", None])
        assert reviews["a1"].state == "open"
