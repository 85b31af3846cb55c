"""Which changelog entries a restore uses (no broker: the selection rule alone)."""

from __future__ import annotations

from detector.kafka.changelog import _Latest


class TestLatestCommittedEntry:
    def test_newest_entry_at_or_before_the_committed_offset_wins(self) -> None:
        """Entries stamped beyond the committed offset never committed; the newest earlier
        entry of the key is restored."""
        latest = _Latest()
        latest.add("m", b"at-100", 100, 200)
        latest.add("m", b"at-200", 200, 200)
        latest.add("m", b"at-300", 300, 200)
        assert latest.entries() == {"m": b"at-200"}
        assert latest.ignored == 1

    def test_an_uncommitted_entry_is_not_used_even_alone(self) -> None:
        """A key whose only entry is beyond the committed offset starts fresh: using it and
        replaying from the committed offset would count those events twice."""
        latest = _Latest()
        latest.add("old", b"at-50", 50, 100)
        latest.add("new", b"at-150", 150, 100)
        assert latest.entries() == {"old": b"at-50"}

    def test_no_committed_offset_means_no_stamped_state(self) -> None:
        """With no committed offset the partition is replayed from the start: fresh state."""
        latest = _Latest()
        latest.add("m", b"at-10", 10, None)
        assert latest.entries() == {}

    def test_tombstone_deletes(self) -> None:
        """A None value removes the key."""
        latest = _Latest()
        latest.add("m", b"at-10", 10, 20)
        latest.add("m", None, 20, 20)
        assert latest.entries() == {}
