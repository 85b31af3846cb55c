"""Silences: creation, expiry, states, JSON records and the current set."""

from __future__ import annotations

import uuid
from dataclasses import FrozenInstanceError, replace

import orjson
import pytest

from detector.router.silences import Silence, SilenceError, SilenceSet, expire, new_silence

H = 3600 * 1000
T0 = 1_800_000_000_000
FRAUD = {"model": "fraud", "severity": "critical", "feature": "amount"}


def silence(*matchers: str, at: int = T0, hours: int = 2) -> Silence:
    return new_silence(list(matchers) or ['model="fraud"'], hours * H, "ana", "deploy", at)


class TestNewSilence:
    def test_fields(self) -> None:
        """A new silence starts now, lasts the duration and keeps canonical matchers."""
        s = new_silence(["model=fraud", ' severity =~ "crit.*" '], 2 * H, "ana", "deploy", T0)
        assert uuid.UUID(s.id).version == 4
        assert s.matchers == ('model="fraud"', 'severity=~"crit.*"')
        assert (s.starts_at_ms, s.ends_at_ms, s.created_at_ms) == (T0, T0 + 2 * H, T0)
        assert (s.created_by, s.comment) == ("ana", "deploy")
        assert s.expired_at_ms is None and s.expired_by is None

    def test_ids_differ(self) -> None:
        """Each silence gets its own id."""
        assert silence().id != silence().id

    @pytest.mark.parametrize(
        ("matchers", "duration", "author", "comment", "message"),
        [
            ([], H, "ana", "c", "expected at least one matcher"),
            (['team="ml"'], H, "ana", "c", "expected a label name"),
            (['model="x'], H, "ana", "c", "expected a closing double quote"),
            (['model="x"'], 0, "ana", "c", "expected a duration longer than 0"),
            (['model="x"'], -H, "ana", "c", "expected a duration longer than 0"),
            (['model="x"'], H, " ", "c", "expected an author"),
            (['model="x"'], H, "ana", "", "expected a comment"),
        ],
    )
    def test_invalid(
        self, matchers: list[str], duration: int, author: str, comment: str, message: str
    ) -> None:
        """No matcher, a bad matcher, a non-positive duration, no author or no comment fail."""
        with pytest.raises(SilenceError, match=message):
            new_silence(matchers, duration, author, comment, T0)

    def test_frozen(self) -> None:
        """A silence cannot be changed in place."""
        with pytest.raises(FrozenInstanceError):
            silence().comment = "x"  # type: ignore[misc]


class TestState:
    def test_states(self) -> None:
        """Pending before starts_at, active until ends_at (exclusive), then expired."""
        s = replace(silence(), starts_at_ms=T0 + H, ends_at_ms=T0 + 2 * H)
        assert s.state(T0) == "pending" and not s.is_active(T0)
        assert s.state(T0 + H) == "active" and s.is_active(T0 + H)
        assert s.state(T0 + 2 * H - 1) == "active"
        assert s.state(T0 + 2 * H) == "expired" and not s.is_active(T0 + 2 * H)

    def test_matches_needs_every_matcher(self) -> None:
        """A silence matches labels only if all its matchers do."""
        assert silence('model="fraud"', 'severity=~"crit.*"').matches(FRAUD)
        assert not silence('model="fraud"', 'severity="warning"').matches(FRAUD)
        assert silence('drift_type=""').matches(FRAUD)  # absent label is ""


class TestExpire:
    def test_active(self) -> None:
        """Expiring ends the silence now and records when and by whom."""
        s = silence()
        done = expire(s, T0 + H, "bo")
        assert (done.ends_at_ms, done.expired_at_ms, done.expired_by) == (T0 + H, T0 + H, "bo")
        assert done.state(T0 + H) == "expired"
        assert (done.id, done.starts_at_ms, done.matchers) == (s.id, s.starts_at_ms, s.matchers)
        assert s.expired_at_ms is None  # the original is untouched

    def test_pending(self) -> None:
        """An expired pending silence never starts (its window is empty)."""
        s = replace(silence(), starts_at_ms=T0 + H, ends_at_ms=T0 + 2 * H)
        done = expire(s, T0, "bo")
        assert done.starts_at_ms == done.ends_at_ms == T0
        assert not done.is_active(T0 + H)

    def test_twice(self) -> None:
        """Expiring an expired silence is an error."""
        done = expire(silence(), T0 + H, "bo")
        with pytest.raises(SilenceError, match="already expired"):
            expire(done, T0 + H + 1, "bo")

    def test_after_its_end(self) -> None:
        """A silence that already ended on its own cannot be expired."""
        with pytest.raises(SilenceError, match="already expired"):
            expire(silence(hours=1), T0 + 2 * H, "bo")

    def test_needs_who(self) -> None:
        """Expiring needs a name."""
        with pytest.raises(SilenceError, match="expected who"):
            expire(silence(), T0, "")


class TestJson:
    def test_round_trip(self) -> None:
        """from_json(to_json()) gives an equal silence, expired or not."""
        s = silence('model=~"fraud.*"', 'feature="a\\"b"')
        assert Silence.from_json(s.to_json()) == s
        done = expire(s, T0 + H, "bo")
        assert Silence.from_json(done.to_json()) == done

    def test_record(self) -> None:
        """The record is a JSON object with a version and every field."""
        record = orjson.loads(silence().to_json())
        assert record["version"] == 1
        assert set(record) == {
            "version",
            "id",
            "matchers",
            "starts_at_ms",
            "ends_at_ms",
            "created_by",
            "comment",
            "created_at_ms",
            "expired_at_ms",
            "expired_by",
        }

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"version": 2}, "version: expected 1"),
            ({"version": None}, "version: expected 1"),
            ({"matchers": "model=x"}, "matchers: expected a list of strings"),
            ({"matchers": []}, "expected at least one matcher"),
            ({"matchers": ['team="x"']}, "expected a label name"),
            ({"id": 5}, "id: expected a string"),
            ({"id": ""}, "id: expected a non-empty string"),
            ({"starts_at_ms": "soon"}, "starts_at_ms: expected an integer"),
            ({"ends_at_ms": True}, "ends_at_ms: expected an integer"),
            ({"ends_at_ms": T0 - 1}, "ends_at_ms: expected at least starts_at_ms"),
            ({"comment": None}, "comment: expected a string"),
            ({"expired_by": 3}, "expired_by: expected a string"),
        ],
    )
    def test_bad_record(self, change: dict[str, object], message: str) -> None:
        """A record with a bad field raises SilenceError naming it."""
        record = {**orjson.loads(silence().to_json()), **change}
        with pytest.raises(SilenceError, match=message) as info:
            Silence.from_json(orjson.dumps(record))
        assert str(info.value).startswith("silence record: ")

    @pytest.mark.parametrize("data", [b"", b"{", b"[1]", b'"x"', b"\xff"])
    def test_not_a_record(self, data: bytes) -> None:
        """Bytes that are not a JSON object raise SilenceError."""
        with pytest.raises(SilenceError, match="silence record"):
            Silence.from_json(data)


class TestSilenceSet:
    def test_silencing(self) -> None:
        """Only an active silence whose matchers all match silences labels."""
        silences = SilenceSet()
        s = silence('model="fraud"')
        silences.put(s)
        silences.put(silence('model="ads"'))
        assert silences.silencing(FRAUD, T0) == s
        assert silences.silencing({"model": "churn"}, T0) is None
        assert silences.silencing(FRAUD, T0 - 1) is None  # pending
        assert silences.silencing(FRAUD, T0 + 2 * H) is None  # expired

    def test_expired_record_stops_silencing(self) -> None:
        """A later expired record of the same id replaces the active one."""
        silences = SilenceSet()
        s = silence()
        silences.put(s)
        assert silences.put(expire(s, T0 + H, "bo"))
        assert silences.silencing(FRAUD, T0 + H) is None
        assert len(silences) == 1

    def test_expiry_never_undone(self) -> None:
        """An older, unexpired record of an expired silence does not revive it."""
        silences = SilenceSet()
        s = silence()
        silences.put(expire(s, T0 + H, "bo"))
        assert not silences.put(s)
        got = silences.get(s.id)
        assert got is not None and got.expired_by == "bo"

    def test_same_record_again(self) -> None:
        """Putting an equal record changes nothing."""
        silences = SilenceSet()
        s = silence()
        assert silences.put(s)
        assert not silences.put(Silence.from_json(s.to_json()))

    def test_longest_silence_reported(self) -> None:
        """When several silences match, the one ending last is reported."""
        silences = SilenceSet()
        short, long = silence(hours=1), silence('severity="critical"', hours=5)
        silences.put(long)
        silences.put(short)
        assert silences.silencing(FRAUD, T0) == long

    def test_all_sorted_by_creation(self) -> None:
        """all() lists every silence, expired ones too, oldest created first."""
        silences = SilenceSet()
        late, early = silence(at=T0 + H), silence(at=T0)
        gone = expire(silence(at=T0 - H), T0, "bo")
        for s in (late, early, gone):
            silences.put(s)
        assert silences.all() == [gone, early, late]

    def test_remove(self) -> None:
        """remove() forgets a silence (a tombstone); get() finds by id."""
        silences = SilenceSet()
        s = silence()
        silences.put(s)
        assert silences.get(s.id) == s
        silences.remove(s.id)
        assert silences.get(s.id) is None and silences.all() == []
