"""The producer side and the checkpoint protocol of each processing guarantee.

exactly-once: one transaction spans everything since the last checkpoint (alerts,
dead letters, changelog entries and the input offsets); a checkpoint commits it.

at-least-once: no transactions; a checkpoint produces the changelog entries, flushes the
producer (everything delivered), then commits the input offsets synchronously. After a
crash, the events since the last checkpoint are processed again: their alerts may appear
twice (same ``alert_id``), their dead letters too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from detector.config import KafkaSettings

log = structlog.get_logger()

Headers = list[tuple[str, bytes]]
TXN_TIMEOUT_S = 60.0
_COMMIT_ATTEMPTS = 5


class CheckpointAborted(Exception):
    """The work since the last checkpoint is lost: rewind to the committed offsets."""


class FatalKafkaError(Exception):
    """The producer cannot continue (fenced by a newer instance, or a fatal error)."""


@dataclass(frozen=True, slots=True)
class ChangelogEntry:
    partition: int
    key: bytes
    value: bytes | None
    headers: Headers


def _error(exc: KafkaException) -> KafkaError:
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError):
        return error
    return KafkaError(KafkaError._FAIL, str(exc))


class Output:
    """Produces records and checkpoints; subclasses implement one guarantee."""

    def __init__(self, producer: Producer, changelog_topic: str) -> None:
        self.producer = producer
        self.changelog_topic = changelog_topic

    def start(self) -> None:
        """Called once before the first produce."""

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> None:
        self._before_produce()
        kwargs: dict[str, object] = {"value": value, "key": key, "on_delivery": self._delivered}
        if headers:
            kwargs["headers"] = headers
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self.producer.produce(topic, **kwargs)  # type: ignore[arg-type]
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                self.producer.poll(0.1)
            except KafkaException as exc:
                self._raise_for(_error(exc), "produce")
        self.producer.poll(0)

    def _before_produce(self) -> None:
        pass

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            log.error("delivery failed", topic=message.topic(), error=error.str())

    def _raise_for(self, error: KafkaError, during: str) -> None:
        if error.fatal():
            raise FatalKafkaError(f"{during}: {error.str()}")
        raise CheckpointAborted(f"{during}: {error.str()}")

    def checkpoint(
        self,
        consumer: Consumer,
        changelog: Sequence[ChangelogEntry],
        offsets: Sequence[TopicPartition],
    ) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Give up the work since the last checkpoint (it will be processed again)."""

    def close(self, timeout_s: float = 10.0) -> None:
        self.producer.flush(timeout_s)


class TransactionalOutput(Output):
    """exactly-once: a Kafka transaction per checkpoint."""

    def __init__(self, producer: Producer, changelog_topic: str) -> None:
        super().__init__(producer, changelog_topic)
        self.in_transaction = False

    def start(self) -> None:
        try:
            # Fences a previous incarnation with the same transactional.id and aborts its
            # unfinished transaction.
            self.producer.init_transactions(TXN_TIMEOUT_S)
        except KafkaException as exc:
            raise FatalKafkaError(f"init_transactions: {_error(exc).str()}") from None

    def _before_produce(self) -> None:
        if not self.in_transaction:
            try:
                self.producer.begin_transaction()
            except KafkaException as exc:
                raise FatalKafkaError(f"begin_transaction: {_error(exc).str()}") from None
            self.in_transaction = True

    def checkpoint(
        self,
        consumer: Consumer,
        changelog: Sequence[ChangelogEntry],
        offsets: Sequence[TopicPartition],
    ) -> None:
        if not offsets and not changelog and not self.in_transaction:
            return
        try:
            for entry in changelog:
                self.produce(
                    self.changelog_topic, entry.value, entry.key, entry.headers, entry.partition
                )
            self._before_produce()
            if offsets:
                self.producer.send_offsets_to_transaction(
                    list(offsets), consumer.consumer_group_metadata(), TXN_TIMEOUT_S
                )
            self._commit()
        except KafkaException as exc:
            self._fail(_error(exc), "checkpoint")
        self.in_transaction = False

    def _commit(self) -> None:
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                self.producer.commit_transaction(TXN_TIMEOUT_S)
                return
            except KafkaException as exc:
                error = _error(exc)
                if error.retriable() and attempt + 1 < _COMMIT_ATTEMPTS:
                    log.warning("commit_transaction retry", error=error.str(), attempt=attempt)
                    continue
                raise

    def _raise_for(self, error: KafkaError, during: str) -> None:
        self._fail(error, during)

    def _fail(self, error: KafkaError, during: str) -> None:
        if error.fatal():
            raise FatalKafkaError(f"{during}: {error.str()}")
        log.warning("transaction aborted", during=during, error=error.str())
        self.abort()
        raise CheckpointAborted(f"{during}: {error.str()}")

    def abort(self) -> None:
        if not self.in_transaction:
            return
        try:
            self.producer.abort_transaction(TXN_TIMEOUT_S)
        except KafkaException as exc:
            error = _error(exc)
            raise FatalKafkaError(f"abort_transaction: {error.str()}") from None
        self.in_transaction = False


class AtLeastOnceOutput(Output):
    """at-least-once: changelog, flush (all delivered), then a synchronous offset commit."""

    def __init__(self, producer: Producer, changelog_topic: str) -> None:
        super().__init__(producer, changelog_topic)
        self.failed_deliveries = 0

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failed_deliveries += 1
            super()._delivered(error, message)

    def checkpoint(
        self,
        consumer: Consumer,
        changelog: Sequence[ChangelogEntry],
        offsets: Sequence[TopicPartition],
    ) -> None:
        for entry in changelog:
            self.produce(
                self.changelog_topic, entry.value, entry.key, entry.headers, entry.partition
            )
        remaining = self.producer.flush(TXN_TIMEOUT_S)
        if remaining or self.failed_deliveries:
            failed, self.failed_deliveries = self.failed_deliveries, 0
            raise CheckpointAborted(f"{failed} deliveries failed, {remaining} not delivered")
        if not offsets:
            return
        try:
            consumer.commit(offsets=list(offsets), asynchronous=False)
        except KafkaException as exc:
            self._raise_for(_error(exc), "offset commit")

    def abort(self) -> None:
        self.failed_deliveries = 0


def make_output(producer: Producer, kafka: KafkaSettings) -> Output:
    if kafka.processing_guarantee == "exactly-once":
        return TransactionalOutput(producer, kafka.changelog)
    return AtLeastOnceOutput(producer, kafka.changelog)
