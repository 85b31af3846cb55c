"""Following one partition whole: read it from its start to its end at start-up, then what
arrives. The router follows the silences topic and the audit log's decisions this way."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from detector.config import KafkaClientSettings
from detector.kafka.clients import reader_config
from detector.kafka.topics import TopicError

log = structlog.get_logger()

READ_TIMEOUT_S = 60.0


class PartitionFollower:
    """``on_record`` is called with each record of ``topic[partition]``, in offset order
    (``read_committed``; by assignment, committing nothing)."""

    def __init__(
        self,
        kafka: KafkaClientSettings,
        topic: str,
        partition: int,
        *,
        group_id: str,
        client_id: str,
        on_record: Callable[[Message], None],
    ) -> None:
        self.topic = topic
        self.on_record = on_record
        self._consumer = Consumer(reader_config(kafka, group_id, client_id))
        self._consumer.assign([TopicPartition(topic, partition, 0)])

    def catch_up(self, timeout_s: float = READ_TIMEOUT_S) -> None:
        """Read to the end of the partition (at start-up, before the records are needed)."""
        deadline = time.monotonic() + timeout_s
        while not self.poll(0.1):
            if time.monotonic() > deadline:
                raise TopicError(f"topic {self.topic!r} not readable to its end")

    def poll(self, timeout_s: float = 0.0) -> bool:
        """Apply what arrived; True when the end of the partition was reached in this call."""
        at_end = False
        for message in self._consumer.consume(num_messages=500, timeout=timeout_s):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end = True
                else:
                    log.warning("read error", topic=self.topic, error=error.str())
                continue
            self.on_record(message)
        return at_end

    def close(self) -> None:
        self._consumer.close()


__all__ = ["READ_TIMEOUT_S", "PartitionFollower"]
