"""`detector route`: the router's Kafka shell around the pure stages.

One loop thread owns Kafka and the groups; one delivery worker per receiver integration
sends (:mod:`detector.router.delivery`). Each loop turn:

1. reads new silences (a compacted topic every instance reads whole) and people's
   decisions (review decisions and suspensions, audit partition 0, read whole at start-up:
   :mod:`detector.router.oversight`);
2. consumes alerts (``read_committed``, its own consumer group) and gives each a verdict
   (:mod:`detector.router.intake`); unreadable records go to the dead-letter topic;
3. flushes the groups whose time has come and hands their notifications to the workers;
4. takes the workers' reports: accepted, dead-lettered (the record names the alert ids,
   receiver, HTTP status and response body) or abandoned (sent again after a restart);
5. checkpoints after any report, and every ``checkpoint_interval_s``: the changed groups
   (notification log and open groups) go to the compacted state topic, the producer is
   flushed, then the alert offsets are committed, never past an alert that some
   integration still owes. After a ``kill -9`` the router restores the groups and re-reads
   from the committed offsets: an alert the groups already hold is a duplicate, and an
   accepted notification is never sent again; only notifications in flight at the kill
   (accepted by the receiver but not yet in the log) can be sent twice.

State is scoped to alert partitions: a group lives in the state partition of the alert
partition that opened it, restored when that partition is assigned.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from detector.alerts import rfc3339
from detector.audit.chain import Chain
from detector.audit.content import versions
from detector.core.records import InputRecord, Rejection
from detector.kafka.audit import read_heads
from detector.kafka.changelog import read_latest
from detector.kafka.clients import (
    admin_config,
    group_consumer_config,
    idempotent_producer_config,
    reader_config,
)
from detector.kafka.deadletter import dead_letter
from detector.kafka.follow import PartitionFollower
from detector.kafka.output import (
    AtLeastOnceOutput,
    ChangelogEntry,
    CheckpointAborted,
    FatalKafkaError,
)
from detector.kafka.topics import TopicError, create_topics, partition_counts
from detector.ops.health import Health, serving
from detector.router.delivery import DeliveryReport, DeliveryWorkers, SystemClock
from detector.router.groups import Dispatcher
from detector.router.intake import Intake
from detector.router.metrics import RouterMetrics
from detector.router.model import Notification
from detector.router.notify import build_notifier
from detector.router.oversight import Oversight, Reviewed
from detector.router.routes import Route
from detector.router.settings import RouterKafkaSettings, RouterSettings, integrations
from detector.router.silence_topic import SilenceReader, silences_topic_spec
from detector.router.silences import SilenceSet

log = structlog.get_logger()

POLL_TIMEOUT_S = 0.2
#: Unreadable alert records longer than this are cut in their dead letter (Kafka's default
#: message.max.bytes; an alert is a few KB).
MAX_DEAD_LETTER_BYTES = 1_048_576
MAX_FAILED_CHECKPOINTS = 5
PRUNE_INTERVAL_S = 60.0
TOPIC_WAIT_LOG_S = 10.0


def _now_ms() -> int:
    return int(time.time() * 1000)


#: ``client.id`` of the router's Kafka clients.
ROUTER_CLIENT_ID = "drift-router"


def ensure_router_topics(
    admin: AdminClient, kafka: RouterKafkaSettings, stop: threading.Event
) -> int:
    """Wait for the alert topic; create the state, silences and dead-letter topics if needed.

    Returns the alert topic's partition count (the state topic is aligned with it).
    """
    names = [kafka.alert_topic, kafka.state, kafka.silences, kafka.dead_letter]
    next_log = 0.0
    while True:
        counts = partition_counts(admin, names)
        partitions = counts.get(kafka.alert_topic)
        if partitions is not None:
            break
        if stop.is_set():
            raise TopicError(f"alert topic {kafka.alert_topic!r} does not exist")
        if time.monotonic() >= next_log:
            next_log = time.monotonic() + TOPIC_WAIT_LOG_S
            log.warning("waiting for the alert topic", topic=kafka.alert_topic)
        stop.wait(1.0)  # a topic to appear: nothing to wait on but the broker's metadata
    state = counts.get(kafka.state)
    if state is not None and state != partitions:
        raise TopicError(
            f"state topic {kafka.state!r} has {state} partitions but alert topic "
            f"{kafka.alert_topic!r} has {partitions}: they must match"
        )
    compact = {"cleanup.policy": "compact"}
    wanted = []
    if state is None:
        wanted.append(NewTopic(kafka.state, partitions, replication_factor=-1, config=compact))
    if kafka.silences not in counts:
        wanted.append(silences_topic_spec(kafka))
    if kafka.dead_letter not in counts:
        wanted.append(NewTopic(kafka.dead_letter, partitions, replication_factor=-1))
    create_topics(admin, wanted)
    return partitions


class Router:
    """``Router(settings).run()`` blocks until :meth:`stop` (safe from a signal handler).

    ``on_report`` is called on the loop thread for every finished delivery (the demo prints
    accepted notifications with it).
    """

    def __init__(
        self,
        settings: RouterSettings,
        *,
        metrics: RouterMetrics | None = None,
        health: Health | None = None,
        on_report: Callable[[DeliveryReport], None] | None = None,
        now_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or RouterMetrics()
        self.health = health or Health(stall_threshold_s=settings.server.stall_threshold_s)
        self.on_report = on_report
        self._now_ms = now_ms
        self._stopping = threading.Event()
        self.started = threading.Event()  # subscribed; for tests and the demo
        self.integrations = integrations(settings)
        self.silences = SilenceSet()
        route = Route.from_settings(settings.route)
        self.dispatcher = Dispatcher(
            route,
            self.integrations,
            resolve_timeout_ms=settings.resolve_timeout_ms,
            max_alert_age_ms=settings.max_alert_age,
        )
        self.intake = Intake(self.dispatcher, self.silences, settings.max_alert_age)
        self._results: queue.Queue[DeliveryReport] = queue.Queue()
        self._tickets: dict[int, int] = {}  # id(notification) -> dispatcher ticket
        self._homes: dict[int, int] = {}  # id(notification) -> its group's home partition
        #: The audit log (the sidecar's, docs/audit.md): its partition count (None: no
        #: audit topic, nothing recorded) and the chain router/<P> of each alert partition.
        self._audit_partitions: int | None = None
        self._audit_chains: dict[int, Chain] = {}
        self.oversight = Oversight(settings.kafka.audit)
        self._writer = f"{settings.kafka.group_id}-{socket.gethostname()}"
        self._positions: dict[int, int] = {}  # alert partition -> next offset to read
        self._committed: dict[int, int] = {}
        self._consumer: Consumer | None = None
        self._output: AtLeastOnceOutput | None = None
        self._workers: DeliveryWorkers | None = None
        self._last_checkpoint = time.monotonic()
        self._last_prune = time.monotonic()
        self._failed_checkpoints = 0
        self.counts = {
            "alerts": 0,
            "notifications": 0,
            "dead_letters": 0,
            "silenced": 0,
            "duplicates": 0,
            "too_old": 0,
            "invalid": 0,
        }

    def stop(self) -> None:
        self._stopping.set()

    # -- lifecycle ------------------------------------------------------------------------

    def run(self) -> None:
        server = self.settings.server
        with serving(
            self.health, self.metrics, host=server.host, port=server.port, failed=self.health.fail
        ):
            self._run()

    def _run(self) -> None:
        kafka = self.settings.kafka
        admin = AdminClient(admin_config(kafka, ROUTER_CLIENT_ID))
        ensure_router_topics(admin, kafka, self._stopping)
        self._audit_partitions = partition_counts(admin, [kafka.audit]).get(kafka.audit)
        if self._audit_partitions is None:
            log.warning(
                "no audit topic: notifications are not recorded in the audit log",
                audit_topic=kafka.audit,
            )
        producer = Producer(idempotent_producer_config(kafka, ROUTER_CLIENT_ID, **{"linger.ms": 5}))
        self._output = AtLeastOnceOutput(producer, kafka.state)
        reader = SilenceReader(kafka, self.silences)
        reader.catch_up()
        decisions: PartitionFollower | None = None
        if self._audit_partitions is not None:
            decisions = PartitionFollower(
                kafka,
                kafka.audit,
                0,
                group_id=f"{kafka.group_id}.oversight",
                client_id=f"{ROUTER_CLIENT_ID}-oversight",
                on_record=self._oversee,
            )
            decisions.catch_up()
        notifiers = {
            integration.id: build_notifier(integration)
            for items in self.integrations.values()
            for integration in items
        }
        delivery = self.settings.delivery
        self._workers = DeliveryWorkers(
            notifiers,
            timeout_s=delivery.timeout / 1000,
            initial_backoff_s=delivery.initial_backoff / 1000,
            max_backoff_s=delivery.max_backoff / 1000,
            max_retry_time_s=delivery.max_retry_time / 1000,
            rates={
                integration.id: delivery.rate_limits[integration.kind]
                for items in self.integrations.values()
                for integration in items
            },
            clock=SystemClock(),
            results=self._results,
            metrics=self.metrics,
        )
        consumer = self._consumer = Consumer(
            group_consumer_config(kafka, kafka.group_id, ROUTER_CLIENT_ID)
        )
        log.info(
            "router starting",
            alert_topic=kafka.alert_topic,
            group_id=kafka.group_id,
            receivers=sorted(self.integrations),
            integrations=sorted(notifiers),
            silences=len(self.silences.all()),
        )
        consumer.subscribe(
            [kafka.alert_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self.started.set()
        try:
            while not self._stopping.is_set():
                self.health.beat()
                reader.poll(0.0)
                if decisions is not None:
                    decisions.poll(0.0)
                messages = consumer.consume(num_messages=500, timeout=self._poll_timeout())
                self._ingest(messages)
                self._dispatch()
                reported = self._collect()
                if reported or time.monotonic() - self._last_checkpoint >= (
                    kafka.checkpoint_interval_s
                ):
                    self._guarded_checkpoint()
                if time.monotonic() - self._last_prune >= PRUNE_INTERVAL_S:
                    self._last_prune = time.monotonic()
                    self.dispatcher.prune(self._now_ms())
        finally:
            # A request under way is given its timeout; what is not done by then is
            # abandoned and sent again after a restart.
            self._workers.stop(timeout_s=self.settings.delivery.timeout / 1000 + 1.0)
            self._collect()
            self._release_chains(sorted(self._audit_chains), "stopped")
            self._guarded_checkpoint()
            consumer.close()
            reader.close()
            if decisions is not None:
                decisions.close()
            self._output.close()
            self.health.set_joined(False)
        log.info("router stopped", **self.counts)

    def _poll_timeout(self) -> float:
        due = self.dispatcher.next_flush_ms()
        if due is None:
            return POLL_TIMEOUT_S
        return max(0.0, min(POLL_TIMEOUT_S, (due - self._now_ms()) / 1000))

    # -- the stages -----------------------------------------------------------------------

    def _ingest(self, messages: list[Message]) -> None:
        now = self._now_ms()
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error", error=error.str(), partition=message.partition())
                continue
            partition = message.partition() or 0
            offset = message.offset() or 0
            if partition not in self._positions:
                continue  # not (any longer) ours
            self._positions[partition] = offset + 1
            self.counts["alerts"] += 1
            self.metrics.received()
            verdict = self.intake.ingest(message.value(), partition, offset, now)
            alert = verdict.alert
            context: dict[str, object] = {"partition": partition, "offset": offset}
            if alert is not None:
                context.update(alert_id=alert.alert_id, model=alert.labels["model"])
                context.update(feature=alert.labels["feature"])
            if verdict.kind == "invalid":
                self.counts["invalid"] += 1
                self.metrics.invalid()
                self._dead_letter_record(message, verdict.detail)
                log.warning("unreadable alert dead-lettered", reason=verdict.detail, **context)
            elif verdict.kind == "too_old":
                self.counts["too_old"] += 1
                self.metrics.too_old()
                log.info("alert too old, not notified", emitted_at=_emitted(alert), **context)
            elif verdict.kind == "silenced":
                self.counts["silenced"] += 1
                self.metrics.silenced()
                silence = verdict.silence
                log.info("alert silenced", silence_id=silence.id if silence else None, **context)
            elif verdict.kind == "duplicate":
                self.counts["duplicates"] += 1
                self.metrics.duplicate()
                log.debug("duplicate alert", **context)
            else:
                log.info("alert grouped", **context)

    def _oversee(self, message: Message) -> None:
        """A record of audit partition 0: act on a review decision or a suspension."""
        try:
            record = orjson.loads(message.value() or b"")
        except orjson.JSONDecodeError:
            return  # not the router's to judge: `detector audit verify` reports it
        change = self.oversight.apply(record, message.offset() or 0)
        if change is None:
            return
        now = self._now_ms()
        if isinstance(change, Reviewed):
            self.dispatcher.review(change.alert_id, change.review, now)
            log.info(
                "alert reviewed",
                alert_id=change.alert_id,
                state=change.review.state,
                by=change.review.by,
            )
            return
        alert = change.alert
        paged = 0 in self._positions and self.dispatcher.add(alert, now)
        log.warning(
            "model suspended",
            model=alert.labels["model"],
            alert_id=alert.alert_id,
            paged=paged,
        )

    def _page_suspensions(self) -> None:
        """The pages of the models suspended now (on taking alert partition 0, which holds
        them; the ones its groups already know are duplicates)."""
        for alert in self.oversight.suspensions.values():
            self.dispatcher.add(alert, self._now_ms())

    def _dispatch(self) -> None:
        workers = self._require_workers()
        for dispatch in self.dispatcher.flush(self._now_ms()):
            notification = dispatch.notification
            self._tickets[id(notification)] = dispatch.ticket
            self._homes[id(notification)] = dispatch.home
            workers.submit(notification)
            log.info(
                "notification queued",
                receiver=notification.integration.receiver,
                integration=notification.integration.id,
                group_key=notification.group_key,
                status=notification.status,
                alert_ids=notification.alert_ids,
            )
        self.metrics.set_open_groups(self.dispatcher.open_groups())

    def _collect(self) -> int:
        """Apply the workers' finished deliveries; how many there were."""
        done = 0
        while True:
            try:
                report = self._results.get_nowait()
            except queue.Empty:
                return done
            done += 1
            notification = report.notification
            ticket = self._tickets.pop(id(notification), 0)
            home = self._homes.pop(id(notification), 0)
            now = self._now_ms()
            outcome = report.outcome
            context = {
                "receiver": notification.integration.receiver,
                "integration": notification.integration.id,
                "group_key": notification.group_key,
                "status": notification.status,
                "alert_ids": notification.alert_ids,
                "attempts": report.attempts,
            }
            if report.abandoned:
                self.dispatcher.completed(ticket, False, now)
                log.info("notification abandoned; sent again after restart", **context)
                continue
            self.metrics.delivered(report, now)
            if outcome.accepted:
                self.counts["notifications"] += 1
                log.info("notification accepted", **context)
            else:
                self.counts["dead_letters"] += 1
                self._dead_letter_notification(report)
                log.error(
                    "notification dead-lettered",
                    reason=outcome.reason,
                    http_status=outcome.status,
                    **context,
                )
            self._audit(home, report, now)
            self.dispatcher.completed(ticket, True, now)
            if self.on_report is not None:
                self.on_report(report)

    def _audit(self, home: int, report: DeliveryReport, now_ms: int) -> None:
        """Record a finished notification on its group's chain ``router/<home>``."""
        chain = self._audit_chains.get(home)
        if chain is None or self._audit_partitions is None:
            return
        notification, outcome = report.notification, report.outcome
        body = {
            "receiver": notification.integration.receiver,
            "integration": notification.integration.id,
            "status": notification.status,
            "group_key": notification.group_key,
            "group_labels": dict(notification.group_labels),
            "alert_ids": list(notification.alert_ids),
            "new_alert_ids": sorted(notification.new_ids),
            "accepted": outcome.accepted,
            "reason": outcome.reason,
            "http_status": outcome.status,
            "attempts": report.attempts,
        }
        self._audit_record(chain, home, "notification", body, now_ms)

    # -- dead letters ---------------------------------------------------------------------

    def _dead_letter_record(self, message: Message, reason: str) -> None:
        """The record unchanged, with the sidecar's dead-letter headers (kafka.deadletter)."""
        record = InputRecord(
            message.topic() or "", message.partition() or 0, message.offset() or 0, message.value()
        )
        letter = dead_letter(
            Rejection(record, "invalid_alert", reason), self._now_ms(), MAX_DEAD_LETTER_BYTES
        )
        self._require_output().produce(
            self.settings.kafka.dead_letter, letter.value, message.key(), letter.headers
        )

    def _dead_letter_notification(self, report: DeliveryReport) -> None:
        notification = report.notification
        outcome = report.outcome
        record = dead_letter_record(notification, report, self._now_ms())
        headers = [
            ("reason", outcome.reason.encode()),
            ("receiver", notification.integration.receiver.encode()),
            ("integration", notification.integration.id.encode()),
            ("http_status", str(outcome.status or "").encode()),
            ("dead_lettered_at", str(record["dead_lettered_at"]).encode()),
        ]
        key = notification.group_key.encode()
        self._require_output().produce(
            self.settings.kafka.dead_letter, orjson.dumps(record), key, headers
        )

    # -- checkpoints ----------------------------------------------------------------------

    def _guarded_checkpoint(self) -> None:
        """Checkpoint; a failure is retried at the next one, ``MAX_FAILED_CHECKPOINTS``
        in a row stop the router (FatalKafkaError, exit 3)."""
        try:
            self._checkpoint()
        except CheckpointAborted as exc:
            self._failed_checkpoints += 1
            log.warning(
                "checkpoint failed; retried at the next one",
                error=str(exc),
                attempt=self._failed_checkpoints,
            )
            self.dispatcher.mark_all_dirty()  # their records may not have been written
            if self._failed_checkpoints >= MAX_FAILED_CHECKPOINTS:
                raise FatalKafkaError(
                    f"{MAX_FAILED_CHECKPOINTS} consecutive checkpoints failed: {exc}"
                ) from None
        else:
            self._failed_checkpoints = 0

    def _checkpoint(self) -> None:
        """Changed groups to the state topic, flush, then commit what nobody owes."""
        self._last_checkpoint = time.monotonic()
        consumer = self._consumer
        output = self._output
        if consumer is None or output is None:
            return
        entries = [
            ChangelogEntry(home, key, value, []) for home, key, value in self.dispatcher.snapshot()
        ]
        pending = self.dispatcher.pending_offsets()
        offsets: list[TopicPartition] = []
        for partition, position in sorted(self._positions.items()):
            target = min(position, pending.get(partition, position))
            if self._committed.get(partition) != target:
                offsets.append(TopicPartition(self.settings.kafka.alert_topic, partition, target))
        if not entries and not offsets:
            return
        output.checkpoint(consumer, entries, offsets)
        for tp in offsets:
            self._committed[tp.partition] = tp.offset
        log.debug(
            "checkpoint",
            state_records=len(entries),
            offsets={str(tp.partition): tp.offset for tp in offsets},
        )

    # -- rebalancing ----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = sorted(tp.partition for tp in partitions)
        log.info("partitions assigned", partitions=numbers)
        kafka = self.settings.kafka
        committed = consumer.committed(
            [TopicPartition(kafka.alert_topic, p) for p in numbers], timeout=30
        )
        read = read_latest(
            reader_config(kafka, f"{kafka.group_id}.restore", f"{ROUTER_CLIENT_ID}-restore"),
            kafka.state,
            {p: None for p in numbers},
            beat=self.health.beat,
        )
        values = [value for stats in read.values() for value in stats.entries().values()]
        skipped = self.dispatcher.restore(values, self._now_ms())
        log.info(
            "router state restored",
            partitions=numbers,
            groups=len(values) - skipped,
            skipped_unknown_routes=skipped,
        )
        for tp in committed:
            start = tp.offset if tp.offset >= 0 else 0
            self._positions[tp.partition] = start
            if tp.offset >= 0:
                self._committed[tp.partition] = tp.offset
        self.health.assigned((kafka.alert_topic, p) for p in numbers)
        for p in numbers:
            self.health.restored(kafka.alert_topic, p)
        self._open_chains(numbers)
        if 0 in numbers:
            self._page_suspensions()
        self.health.set_joined(True)
        consumer.assign(committed)

    def _open_chains(self, numbers: list[int]) -> None:
        """Each alert partition's audit chain, from its last record."""
        count = self._audit_partitions
        if count is None:
            return
        kafka = self.settings.kafka
        for p in numbers:
            name = f"router/{p}"
            heads = read_heads(
                kafka,
                kafka.group_id,
                kafka.audit,
                [p % count],
                chain_of=lambda _, name=name: name,  # type: ignore[misc]
                beat=self.health.beat,
            )
            chain = self._audit_chains[p] = Chain(name, self._writer, heads[p % count])
            body = {
                "reason": "assigned",
                "instance": self._writer,
                "alert_topic": kafka.alert_topic,
                "partition": p,
                **versions(),
            }
            self._audit_record(chain, p, "partition_assigned", body, self._now_ms())

    def _audit_record(
        self, chain: Chain, partition: int, kind: str, body: dict[str, Any], now_ms: int
    ) -> None:
        count = self._audit_partitions
        if count is None:
            return
        record = chain.append(kind, body, now_ms)
        self._require_output().produce(
            self.settings.kafka.audit, record, chain.name.encode(), partition=partition % count
        )

    def _release_chains(self, numbers: list[int], reason: str) -> None:
        """Record that this instance gives the alert partitions up."""
        for p in numbers:
            chain = self._audit_chains.pop(p, None)
            if chain is not None:
                body = {"reason": reason, "partition": p, "next_offset": self._positions.get(p)}
                self._audit_record(chain, p, "partition_released", body, self._now_ms())
        if numbers and self._audit_partitions is not None:
            # Delivered before the partition's next owner reads the chain's head.
            self._require_output().producer.flush(10.0)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = sorted(tp.partition for tp in partitions)
        log.info("partitions revoked", partitions=numbers)
        self._release_chains(numbers, "revoked")
        self._guarded_checkpoint()
        self._drop(numbers)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Another instance may own them already: drop their groups without writing them."""
        numbers = sorted(tp.partition for tp in partitions)
        log.warning("partitions lost", partitions=numbers)
        self._drop(numbers)

    def _drop(self, numbers: list[int]) -> None:
        self.dispatcher.drop_partitions(numbers)
        for p in numbers:
            self._audit_chains.pop(p, None)
            self._positions.pop(p, None)
            self._committed.pop(p, None)
        self.health.revoked((self.settings.kafka.alert_topic, p) for p in numbers)

    def _require_workers(self) -> DeliveryWorkers:
        if self._workers is None:
            raise RuntimeError("the router is not running")
        return self._workers

    def _require_output(self) -> AtLeastOnceOutput:
        if self._output is None:
            raise RuntimeError("the router is not running")
        return self._output


def _emitted(alert: Any) -> str | None:
    return None if alert is None else str(alert.body.get("emitted_at"))


def dead_letter_record(
    notification: Notification, report: DeliveryReport, now_ms: int
) -> dict[str, Any]:
    """The router dead-letter record: what failed, where, and the alerts it covered."""
    outcome = report.outcome
    return {
        "reason": outcome.reason,
        "receiver": notification.integration.receiver,
        "integration": notification.integration.id,
        "kind": notification.integration.kind,
        "http_status": outcome.status,
        "response_body": outcome.body,
        "attempts": report.attempts,
        "status": notification.status,
        "group_key": notification.group_key,
        "group_labels": dict(notification.group_labels),
        "alert_ids": notification.alert_ids,
        "alerts": [dict(alert.body) for alert in notification.alerts],
        "dead_lettered_at": rfc3339(now_ms),
    }
