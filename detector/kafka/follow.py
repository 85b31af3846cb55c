"""Reading partitions to their end (:func:`messages_to_end`: the audit log, the state
archive), and following one partition whole: read it from its start to its end at
start-up, then what arrives (:class:`PartitionFollower`: the router follows the silences
topic and the audit log's decisions this way)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import structlog
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from detector.config import KafkaClientSettings
from detector.kafka.clients import reader_config
from detector.kafka.topics import TopicError

log = structlog.get_logger()

READ_TIMEOUT_S = 60.0


def messages_to_end(
    consumer: Consumer,
    topic: str,
    partitions: Iterable[int],
    timeout_s: float,
    error: Callable[[str], Exception],
    beat: Callable[[], None] = lambda: None,
) -> Iterator[Message]:
    """Each message of the assigned ``partitions`` of ``topic`` until the end of every one
    (an end-of-partition event at the high watermark of the fetch responses; under
    read_committed an open transaction holds it back). ``error(text)`` is raised on a
    fatal read error, or when the end is not reached within ``timeout_s``."""
    remaining = set(partitions)
    started = time.monotonic()
    while remaining:
        beat()
        for message in consumer.consume(num_messages=1000, timeout=0.05):
            partition = message.partition() or 0
            problem = message.error()
            if problem is not None:
                if problem.code() == KafkaError._PARTITION_EOF:
                    _, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), cached=True
                    )
                    if (message.offset() or 0) >= high:
                        remaining.discard(partition)
                    continue
                if problem.fatal() or not problem.retriable():
                    raise error(f"reading {topic}[{partition}]: {problem.str()}")
                continue
            yield message
        if remaining and time.monotonic() - started > timeout_s:
            raise error(
                f"{topic} not readable to its end within {timeout_s:.0f} s (partitions "
                f"{sorted(remaining)}): an open transaction of a previous writer has not "
                f"finished"
            )


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


__all__ = ["READ_TIMEOUT_S", "PartitionFollower", "messages_to_end"]
