"""Silences on their compacted Kafka topic: every router instance follows it whole.

Records are keyed by silence id; the newest record of an id is the silence (expiring one
writes it again with ``expired_at``/``expired_by``), so an expired silence stays readable:
who, when and why. The topic is compacted, never deleted by time.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from detector.kafka.clients import admin_config, idempotent_producer_config
from detector.kafka.follow import READ_TIMEOUT_S, PartitionFollower
from detector.kafka.topics import TopicError, create_topics, partition_counts
from detector.router.settings import RouterKafkaSettings
from detector.router.silences import Silence, SilenceError, SilenceSet

log = structlog.get_logger()


def silences_topic_spec(kafka: RouterKafkaSettings) -> NewTopic:
    return NewTopic(kafka.silences, 1, replication_factor=-1, config={"cleanup.policy": "compact"})


class SilenceReader:
    """Follows the silences topic from its start into a :class:`SilenceSet`."""

    def __init__(self, kafka: RouterKafkaSettings, silences: SilenceSet) -> None:
        self.kafka = kafka
        self.silences = silences
        self._follower = PartitionFollower(
            kafka,
            kafka.silences,
            0,
            group_id=f"{kafka.group_id}.silences",
            client_id="drift-router-silences",
            on_record=self._apply,
        )

    def catch_up(self, timeout_s: float = READ_TIMEOUT_S) -> None:
        """Read to the end of the topic (at start-up, before any alert is judged)."""
        self._follower.catch_up(timeout_s)

    def poll(self, timeout_s: float = 0.0) -> bool:
        """Apply what arrived; True when the end of the topic was reached in this call."""
        return self._follower.poll(timeout_s)

    def _apply(self, message: Message) -> None:
        value = message.value()
        if value is None:  # a tombstone: the silence is deleted
            self.silences.remove((message.key() or b"").decode("utf-8", "replace"))
            return
        try:
            silence = Silence.from_json(value)
        except SilenceError as exc:
            log.warning("unreadable silence record", offset=message.offset(), error=str(exc))
            return
        if self.silences.put(silence):
            log.info(
                "silence updated",
                silence_id=silence.id,
                matchers=list(silence.matchers),
                ends_at_ms=silence.ends_at_ms,
                expired_by=silence.expired_by,
            )

    def close(self) -> None:
        self._follower.close()


class SilenceTopic:
    """What the ``detector silence`` commands do: publish one silence, or read them all."""

    def __init__(self, kafka: RouterKafkaSettings) -> None:
        self.kafka = kafka

    def ensure(self) -> None:
        admin = AdminClient(admin_config(self.kafka, "drift-router-silences"))
        if self.kafka.silences not in partition_counts(admin, [self.kafka.silences]):
            create_topics(admin, [silences_topic_spec(self.kafka)])

    def publish(self, silence: Silence) -> None:
        self.ensure()
        producer = Producer(idempotent_producer_config(self.kafka, "drift-router-silences"))
        errors: list[str] = []

        def delivered(error: KafkaError | None, _message: object) -> None:
            if error is not None:
                errors.append(error.str())

        producer.produce(
            self.kafka.silences, silence.to_json(), silence.id.encode(), on_delivery=delivered
        )
        if producer.flush(READ_TIMEOUT_S) or errors:
            raise TopicError(f"silence not written to {self.kafka.silences!r}: {errors}")

    def read(self) -> SilenceSet:
        self.ensure()
        silences = SilenceSet()
        reader = SilenceReader(self.kafka, silences)
        try:
            reader.catch_up()
        finally:
            reader.close()
        return silences


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_table(silences: list[Silence], now_ms: int) -> str:
    """The ``detector silence list`` table."""
    if not silences:
        return "no silences"
    rows = [("ID", "STATE", "MATCHERS", "STARTS", "ENDS", "CREATED BY", "COMMENT", "EXPIRED BY")]
    for s in silences:
        rows.append(
            (
                s.id,
                s.state(now_ms),
                ", ".join(s.matchers),
                _when(s.starts_at_ms),
                _when(s.ends_at_ms),
                s.created_by,
                s.comment,
                s.expired_by or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
