"""The sidecar's main loop: consume, detect, produce alerts and dead letters, checkpoint.

One consumer in the group, one producer. State of an input partition is restored from its
changelog partition inside the assignment callback, before any of its events is processed.
A checkpoint (every ``checkpoint_events`` events or ``checkpoint_interval_s`` seconds, on
revocation and on stop) writes every changed model's snapshot to the changelog and commits
the input offsets with it (see :mod:`detector.kafka.output` for each guarantee).

Failure handling:

- A message with a Kafka error is logged and skipped; invalid data goes to the dead-letter
  topic. Nothing in the data stops the loop.
- A checkpoint that cannot commit (an abortable transaction error, a failed delivery or
  offset commit) rewinds in-process: the transaction is aborted, every assigned partition is
  seeked back to its committed offset and its state restored from the changelog, so the
  lost work is processed again. After ``MAX_REWINDS`` consecutive failures the sidecar gives
  up with :class:`FatalKafkaError` (and restarts under its supervisor).
- Fatal producer errors (fenced by a newer instance with the same transactional.id),
  StateFormatError and changelog errors stop the sidecar loudly.

The Kafka clients come from factories (``consumer_factory``, ``producer_factory``,
``admin_factory``: each called with the librdkafka configuration built from the settings;
by default the confluent-kafka classes themselves), so that tests can wrap the real clients
to inject failures into the rewind and lost-partition paths. The changelog is read by a
consumer of its own (:mod:`detector.kafka.changelog`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from detector.alerts import alert_key, build_alert, encode_alert
from detector.audit.chain import Chain
from detector.audit.content import archive_body, config_body, versions
from detector.config import ConfigError, Settings, load_settings
from detector.core.engine import PartitionDetectors
from detector.core.records import BatchResult
from detector.kafka.archive import archive_headers
from detector.kafka.audit import read_heads
from detector.kafka.changelog import (
    INPUT_OFFSET_HEADER,
    LABELS_OFFSET_HEADER,
    restore_partitions,
)
from detector.kafka.clients import (
    admin_config,
    consumer_config,
    default_transactional_id,
    producer_config,
)
from detector.kafka.deadletter import dead_letter
from detector.kafka.output import (
    ChangelogEntry,
    CheckpointAborted,
    FatalKafkaError,
    Output,
    make_output,
)
from detector.kafka.telemetry import Telemetry
from detector.kafka.topics import ensure_topics
from detector.ops.health import Health, serving
from detector.ops.metrics import Metrics

log = structlog.get_logger()

#: A librdkafka configuration, as the factories below receive it.
ClientConfig = dict[str, Any]
ConsumerFactory = Callable[[ClientConfig], Consumer]
ProducerFactory = Callable[[ClientConfig], Producer]
AdminFactory = Callable[[ClientConfig], AdminClient]

POLL_TIMEOUT_S = 0.2
COMMITTED_TIMEOUT_S = 30.0
MAX_REWINDS = 5


def _signer(settings: Settings) -> Any:
    """The audit log's signer (None without ``audit.signing_key_file``); ConfigError when
    the key cannot be used."""
    path = settings.audit.signing_key_file
    if path is None or not settings.audit.enabled:
        return None
    from detector.audit.signing import Signer, SigningKeyError

    try:
        return Signer.from_file(path)
    except SigningKeyError as exc:
        raise ConfigError(f"audit.signing_key_file: {exc}") from None


class Sidecar:
    """``Sidecar(settings).run()`` blocks until :meth:`stop` (safe from a signal handler).

    ``consumer_factory``, ``producer_factory`` and ``admin_factory`` build the input
    consumer, the producer and the admin client from their librdkafka configurations
    (:mod:`detector.kafka.clients`); they are called once each, at the start of :meth:`run`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: str | None = None,
        metrics: Metrics | None = None,
        health: Health | None = None,
        consumer_factory: ConsumerFactory = Consumer,
        producer_factory: ProducerFactory = Producer,
        admin_factory: AdminFactory = AdminClient,
    ) -> None:
        self.settings = settings
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self._admin_factory = admin_factory
        self.metrics = metrics or Metrics(max_models=settings.detection.max_models)
        self.health = health or Health(stall_threshold_s=settings.server.stall_threshold_s)
        self._telemetry = Telemetry(settings.kafka.input_topic, self.metrics, self.health)
        self.config_path = config_path
        self._reload = threading.Event()
        self._stopping = threading.Event()
        self.started = threading.Event()  # subscribed; for tests and health checks
        self._states: dict[int, PartitionDetectors] = {}
        self._positions: dict[int, int] = {}  # next offset to commit, per partition
        self._label_positions: dict[int, int] = {}  # the same, of the labels topic
        self._pending: set[int] = set()  # partitions with events since the last checkpoint
        self._events_since = 0
        self._last_checkpoint = time.monotonic()
        self._rewinds = 0
        self._failed = False
        self._consumer: Consumer | None = None
        self._output: Output | None = None
        self._admin: AdminClient | None = None
        self.counts = {"events": 0, "labels": 0, "alerts": 0, "dead_letters": 0, "checkpoints": 0}
        #: The audit chain of each assigned partition (docs/audit.md); none when off.
        self._chains: dict[int, Chain] = {}
        self._audit_topic = settings.audit.topic_for(settings.kafka)
        self._signer = _signer(settings)
        self._signed: dict[int, str] = {}  # partition -> the head hash last signed
        #: The state archive (docs/audit.md): when each partition was last archived.
        self._archive_topic = settings.audit.archive_topic_for(settings.kafka)
        #: Per partition: when, and at which input and labels offsets.
        self._archived: dict[int, tuple[float, int, int | None]] = {}

    def stop(self) -> None:
        self._stopping.set()

    def request_reload(self) -> None:
        """Re-read the config file's detection settings at the next loop turn (SIGHUP)."""
        self._reload.set()

    def _apply_reload(self) -> None:
        self._reload.clear()
        if self.config_path is None:
            log.warning("reload requested but no config file was given")
            return
        try:
            fresh = load_settings(self.config_path)
        except ConfigError as exc:
            log.error("reload failed; keeping the running configuration", error=str(exc))
            return
        # Only detection settings apply live; Kafka, server and log settings need a restart.
        self.settings = self.settings.model_copy(update={"detection": fresh.detection})
        reset = sum(state.reconfigure(fresh.detection) for state in self._states.values())
        log.info("configuration reloaded", detection_monitors_reset=reset)
        self._archived.clear()  # archive under the new config at the next checkpoint
        for partition in sorted(self._chains):
            self._audit(partition, "config", {"reason": "reload", **config_body(self.settings)})

    @property
    def assigned_partitions(self) -> list[int]:
        return sorted(self._states)

    # -- lifecycle ------------------------------------------------------------------------

    def run(self) -> None:
        server = self.settings.server
        with serving(
            self.health,
            self.metrics,
            host=server.host,
            port=server.port,
            failed=self._telemetry.failed,
        ):
            self._run()

    def _run(self) -> None:
        kafka = self.settings.kafka
        self._admin = self._admin_factory(admin_config(kafka))
        audit = self.settings.audit
        plan = ensure_topics(
            self._admin,
            kafka,
            (self._audit_topic, self._archive_topic) if audit.enabled else (),
            audit.retention_days,
        )
        self._output = make_output(self._producer_factory(producer_config(kafka)), kafka)
        self._output.start()
        consumer = self._consumer = self._consumer_factory(consumer_config(kafka))
        log.info(
            "sidecar starting",
            input_topic=kafka.input_topic,
            partitions=plan.input_partitions,
            group_id=kafka.group_id,
            guarantee=kafka.processing_guarantee,
        )
        topics = [kafka.input_topic] + ([kafka.labels_topic] if kafka.labels_topic else [])
        consumer.subscribe(
            topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self.started.set()
        try:
            while not self._stopping.is_set():
                self._telemetry.beat()
                if self._reload.is_set():
                    self._apply_reload()
                messages = consumer.consume(num_messages=kafka.batch_size, timeout=POLL_TIMEOUT_S)
                self._guarded(self._process, messages)
                if self._due():
                    self._guarded(self._checkpoint)
            self._release(sorted(self._chains), "stopped")
            self._guarded(self._checkpoint)
            self._chains.clear()  # closed: leaving the group records nothing more
        except BaseException:
            self._failed = True
            raise
        finally:
            self._shutdown()
        log.info("sidecar stopped", **self.counts)

    def _shutdown(self) -> None:
        consumer, output = self._consumer, self._output
        if self._failed and output is not None:
            try:
                output.abort()
            except Exception as exc:  # already failing; the broker aborts it eventually
                log.warning("abort on failure failed", error=str(exc))
        if consumer is not None:
            consumer.close()  # leaves the group; the revoke callback finds nothing pending
        if output is not None:
            output.close()
        self._states.clear()
        self.health.set_joined(False)

    # -- processing -----------------------------------------------------------------------

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
        except CheckpointAborted as exc:
            self._rewind(str(exc))

    def _process(self, messages: list[Message]) -> None:
        kafka = self.settings.kafka
        # Per partition: offsets, values and the messages (for the keys of dead letters).
        batches: dict[int, tuple[list[int], list[bytes | None], list[Message]]] = {}
        label_batches: dict[int, tuple[list[int], list[bytes | None], list[Message]]] = {}
        labels_topic = kafka.labels_topic
        states = self._states
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise FatalKafkaError(f"consumer: {error.str()}")
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning(
                        "consume error",
                        error=error.str(),
                        topic=message.topic(),
                        partition=message.partition(),
                    )
                continue
            partition = message.partition()
            if labels_topic is not None and message.topic() == labels_topic:
                label_batch = label_batches.get(partition)  # type: ignore[arg-type]
                if label_batch is None:
                    if partition not in states:
                        continue
                    label_batch = label_batches[partition] = ([], [], [])
                label_batch[0].append(message.offset())  # type: ignore[arg-type]
                label_batch[1].append(message.value())
                label_batch[2].append(message)
                continue
            batch = batches.get(partition)  # type: ignore[arg-type]
            if batch is None:
                if partition not in states:
                    continue
                batch = batches[partition] = ([], [], [])
            batch[0].append(message.offset())  # type: ignore[arg-type]
            batch[1].append(message.value())
            batch[2].append(message)
        if not batches and not label_batches:
            return
        self._require_output()
        consumer = self._require_consumer()
        now_ms = int(time.time() * 1000)
        for partition, (offsets, values, originals) in batches.items():
            started = time.perf_counter()
            result = self._states[partition].process_batch(offsets, values)
            seconds = time.perf_counter() - started
            self._publish(partition, result, originals, now_ms)
            self._positions[partition] = offsets[-1] + 1
            self._pending.add(partition)
            tp = TopicPartition(kafka.input_topic, partition)
            high = consumer.get_watermark_offsets(tp, cached=True)[1]  # from fetch responses
            lag = high - self._positions[partition] if high >= 0 else None
            self._telemetry.batch(partition, len(offsets), result, seconds, lag)
            self._events_since += len(offsets)
            self.counts["events"] += len(offsets)
            self.counts["alerts"] += len(result.detections)
            self.counts["dead_letters"] += len(result.rejections)
        for partition, (offsets, values, originals) in label_batches.items():
            state = self._states[partition]
            result = state.process_labels(offsets, values)
            self._publish(partition, result, originals, now_ms)
            self._label_positions[partition] = offsets[-1] + 1
            self._pending.add(partition)
            self._telemetry.labels(partition, result, len(state.join or ()))
            self._events_since += len(offsets)
            self.counts["labels"] += len(offsets)
            self.counts["alerts"] += len(result.detections)
            self.counts["dead_letters"] += len(result.rejections)

    def _publish(
        self, partition: int, result: BatchResult, originals: list[Message], now_ms: int
    ) -> None:
        """Produce a batch's alerts and dead letters (in the open transaction)."""
        kafka = self.settings.kafka
        output = self._require_output()
        for detection in result.detections:
            alert = build_alert(detection, now_ms)
            output.produce(kafka.alert_topic, encode_alert(alert), alert_key(detection))
            self._audit(partition, "alert", alert, now_ms)
            log.info(
                "drift detected",
                model=detection.model,
                feature=detection.feature,
                drift_type=detection.drift_type,
                severity=detection.severity,
                partition=partition,
                offset=detection.offset,
                alert_id=alert["alert_id"],
            )
        keys = {m.offset(): m.key() for m in originals} if result.rejections else {}
        for rejection in result.rejections:
            letter = dead_letter(rejection, now_ms, kafka.max_message_bytes)
            key = keys.get(rejection.record.offset)
            output.produce(kafka.dead_letter, letter.value, key, letter.headers)
            log.info(
                "dead-lettered",
                reason=rejection.reason,
                topic=rejection.record.topic,
                partition=partition,
                offset=rejection.record.offset,
            )

    def _due(self) -> bool:
        if not self._pending:
            return False
        if self._events_since >= self.settings.kafka.checkpoint_events:
            return True
        elapsed = time.monotonic() - self._last_checkpoint
        return elapsed >= self.settings.kafka.checkpoint_interval_s

    def _checkpoint(self) -> None:
        """Snapshot changed state, commit it with the offsets and what was produced."""
        if not self._pending:
            return
        kafka = self.settings.kafka
        started = time.monotonic()
        self._archive()
        self._sign_heads()
        changelog: list[ChangelogEntry] = []
        for partition, state in sorted(self._states.items()):
            position = self._positions.get(partition)
            headers = [] if position is None else [(INPUT_OFFSET_HEADER, str(position).encode())]
            labels_position = self._label_positions.get(partition)
            if labels_position is not None:
                headers.append((LABELS_OFFSET_HEADER, str(labels_position).encode()))
            for model, value in state.snapshot().items():
                changelog.append(ChangelogEntry(partition, model.encode(), value, headers))
        offsets = [
            TopicPartition(kafka.input_topic, p, self._positions[p])
            for p in sorted(self._pending)
            if p in self._positions
        ]
        if kafka.labels_topic:
            offsets += [
                TopicPartition(kafka.labels_topic, p, self._label_positions[p])
                for p in sorted(self._pending)
                if p in self._label_positions
            ]
        self._require_output().checkpoint(self._require_consumer(), changelog, offsets)
        touched = set(self._pending)
        self._pending.clear()
        self._events_since = 0
        self._last_checkpoint = time.monotonic()
        for partition, state in self._states.items():
            if partition in touched:
                self.metrics.set_accuracy(partition, state.accuracy())
        active = sum(state.active_detectors for state in self._states.values())
        self._telemetry.committed(self._last_checkpoint - started, active)
        self._rewinds = 0
        self.counts["checkpoints"] += 1
        log.debug(
            "checkpoint",
            partitions=[tp.partition for tp in offsets],
            # Committed input offsets: a test (or an operator) can tell which checkpoint
            # covered which events; logged after the metrics of this checkpoint are updated.
            offsets={
                str(tp.partition): tp.offset for tp in offsets if tp.topic == kafka.input_topic
            },
            label_offsets={
                str(tp.partition): tp.offset for tp in offsets if tp.topic != kafka.input_topic
            },
            changelog_entries=len(changelog),
            seconds=round(self._last_checkpoint - started, 4),
        )

    def _archive(self) -> None:
        """Each changed partition's whole state to the state archive, with its audit
        record, when due: at the first checkpoint after an assignment, a rewind or a
        reload, then every ``audit.archive_interval_s`` (in the checkpoint's transaction:
        the snapshot covers exactly the input offset committed with it)."""
        interval = self.settings.audit.archive_interval_s
        now = time.monotonic()
        for partition in sorted(self._pending):
            position = self._positions.get(partition)
            labels_position = self._label_positions.get(partition)
            last = self._archived.get(partition)
            if position is None or partition not in self._chains:
                continue
            if last is not None and (
                now - last[0] < interval or last[1:] == (position, labels_position)
            ):
                continue  # not due, or nothing consumed since
            entries = self._states[partition].archive()
            snapshot = uuid.uuid4().hex
            headers = archive_headers(snapshot, position, labels_position)
            output = self._require_output()
            for key, value in entries.items():
                output.produce(
                    self._archive_topic, value, key.encode(), headers, partition=partition
                )
            tp = TopicPartition(self.settings.kafka.input_topic, partition)
            high = self._require_consumer().get_watermark_offsets(tp, cached=True)[1]
            state = self._states[partition]
            lag = high - position if high >= 0 else None
            body = archive_body(
                partition, snapshot, position, labels_position, entries, state.models, lag
            )
            self._audit(partition, "state_archived", body)
            self._archived[partition] = (now, position, labels_position)
            log.info(
                "state archived",
                partition=partition,
                input_offset=position,
                entries=len(entries),
                bytes=body["bytes"],
            )

    def _rewind(self, reason: str) -> None:
        """Drop the uncommitted work: back to the committed offsets and changelog state."""
        self._rewinds += 1
        log.warning("checkpoint failed, rewinding", reason=reason, attempt=self._rewinds)
        if self._rewinds > MAX_REWINDS:
            raise FatalKafkaError(f"{MAX_REWINDS} consecutive checkpoints failed: {reason}")
        self._require_output().abort()
        self._telemetry.discard()
        self._pending.clear()
        self._events_since = 0
        self._restore(sorted(self._states), seek=True, reason="rewound")

    # -- rebalancing ----------------------------------------------------------------------

    def _restore(
        self, partitions: list[int], *, seek: bool, reason: str = "assigned"
    ) -> list[TopicPartition]:
        """Restore each partition from its changelog, at the group's committed offset, and
        its audit chain from the audit topic (recording the assignment in it)."""
        consumer = self._require_consumer()
        topic = self.settings.kafka.input_topic
        labels_topic = self.settings.kafka.labels_topic
        wanted = [TopicPartition(topic, p) for p in partitions]
        if labels_topic:
            wanted += [TopicPartition(labels_topic, p) for p in partitions]
        committed = consumer.committed(wanted, timeout=COMMITTED_TIMEOUT_S) if wanted else []
        offsets: dict[int, int | None] = {}
        label_offsets: dict[int, int | None] = {}
        for tp in committed:
            if tp.error is not None:
                raise FatalKafkaError(f"committed offset of {tp.topic}[{tp.partition}]: {tp.error}")
            found = tp.offset if tp.offset >= 0 else None
            (label_offsets if tp.topic == labels_topic else offsets)[tp.partition] = found
        started = time.monotonic()
        restored = restore_partitions(
            self.settings,
            offsets,
            beat=self._telemetry.beat,
            labels_committed=label_offsets if labels_topic else None,
        )
        self._telemetry.restored(restored, time.monotonic() - started)
        for partition, state in restored.items():
            state.set_max_message_bytes(self.settings.kafka.max_message_bytes)
            self._states[partition] = state
            self._archived.pop(partition, None)
            self._positions.pop(partition, None)
            offset = offsets[partition]
            if offset is not None:
                self._positions[partition] = offset
            if seek:
                start = OFFSET_BEGINNING if offset is None else offset
                consumer.seek(TopicPartition(topic, partition, start))
            if labels_topic:
                self._label_positions.pop(partition, None)
                label_offset = label_offsets.get(partition)
                if label_offset is not None:
                    self._label_positions[partition] = label_offset
                if seek:
                    start = OFFSET_BEGINNING if label_offset is None else label_offset
                    consumer.seek(TopicPartition(labels_topic, partition, start))
        self._open_chains(sorted(restored), offsets, reason)
        return committed

    # -- the audit log --------------------------------------------------------------------

    def _open_chains(
        self, partitions: list[int], offsets: dict[int, int | None], reason: str
    ) -> None:
        """Each partition's chain from its audit partition's head, and a record of who
        took it, with which versions and config."""
        if not self.settings.audit.enabled or not partitions:
            return
        kafka = self.settings.kafka
        heads = read_heads(
            kafka, kafka.group_id, self._audit_topic, partitions, beat=self._telemetry.beat
        )
        writer = default_transactional_id(self.settings.kafka)
        body = {
            "reason": reason,
            "instance": writer,
            "input_topic": self.settings.kafka.input_topic,
            "guarantee": self.settings.kafka.processing_guarantee,
            **versions(),
            **config_body(self.settings),
        }
        for partition in partitions:
            self._chains[partition] = Chain(f"sidecar/{partition}", writer, heads[partition])
            committed = offsets.get(partition)
            self._audit(
                partition,
                "partition_assigned",
                {"partition": partition, "committed_offset": committed, **body},
            )

    def _audit(
        self, partition: int, kind: str, body: dict[str, Any], now_ms: int | None = None
    ) -> None:
        """Append a record to the partition's chain (in the open transaction)."""
        chain = self._chains.get(partition)
        if chain is None:
            return
        at = int(time.time() * 1000) if now_ms is None else now_ms
        record = chain.append(kind, body, at)
        self._require_output().produce(
            self._audit_topic, record, chain.name.encode(), partition=partition
        )
        self._pending.add(partition)

    def _sign_heads(self) -> None:
        """A signature record on each chain that moved since its last one (with a key)."""
        signer = self._signer
        if signer is None:
            return
        for partition in sorted(self._pending):
            chain = self._chains.get(partition)
            if chain is None or chain.head.seq == 0:
                continue
            if self._signed.get(partition) == chain.head.hash:
                continue
            self._audit(partition, "signature", signer.body(chain.head))
            self._signed[partition] = chain.head.hash

    def _release(self, partitions: list[int], reason: str) -> None:
        """Record that this instance gives the partitions up; their chains close here."""
        for partition in partitions:
            state = self._states.get(partition)
            self._audit(
                partition,
                "partition_released",
                {
                    "reason": reason,
                    "partition": partition,
                    "next_offset": self._positions.get(partition),
                    "events": None
                    if state is None
                    else sum(m.events for m in state.models.values()),
                },
            )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        topic = self.settings.kafka.input_topic
        numbers = sorted(tp.partition for tp in partitions if tp.topic == topic)
        alone = sorted({tp.partition for tp in partitions if tp.topic != topic} - set(numbers))
        if alone:  # not co-partitioned: their labels cannot be joined here
            log.error(
                "labels partitions assigned without their input partitions; not consumed "
                "(use the range assignor, equal partition counts)",
                partitions=alone,
            )
        log.info("partitions assigned", partitions=numbers)
        self._telemetry.assigned(numbers)
        committed = self._restore(numbers, seek=False)
        consumer.assign(committed)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = sorted({tp.partition for tp in partitions})
        log.info("partitions revoked", partitions=numbers)
        if not self._failed:
            try:
                self._release([p for p in numbers if p in self._chains], "revoked")
                self._checkpoint()
            except CheckpointAborted as exc:  # the next owner processes the work again
                log.warning("checkpoint on revoke failed", reason=str(exc))
                self._require_output().abort()
                self._telemetry.discard()
                self._pending.clear()
        self._drop(numbers)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = sorted({tp.partition for tp in partitions})
        log.warning("partitions lost", partitions=numbers)
        self._require_output().abort()  # their offsets can no longer be committed by us
        self._telemetry.discard()
        self._drop(numbers)
        self._pending.clear()
        self._events_since = 0
        if self._states:
            self._restore(sorted(self._states), seek=True, reason="rewound")

    def _drop(self, partitions: list[int]) -> None:
        self._telemetry.revoked(partitions)
        for partition in partitions:
            self._states.pop(partition, None)
            self._positions.pop(partition, None)
            self._label_positions.pop(partition, None)
            self._pending.discard(partition)
            self._chains.pop(partition, None)
            self._signed.pop(partition, None)
            self._archived.pop(partition, None)

    def _require_consumer(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("the sidecar is not running")
        return self._consumer

    def _require_output(self) -> Output:
        if self._output is None:
            raise RuntimeError("the sidecar is not running")
        return self._output
