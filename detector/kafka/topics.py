"""Create the output topics the sidecar writes to, if they do not exist yet.

The changelog topic is compacted and partition-aligned with the input topic: the state of
input partition ``p`` lives in changelog partition ``p``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from detector.config import KafkaSettings

log = structlog.get_logger()

_AUTH_ERRORS = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED)
TIMEOUT_S = 30.0


class TopicError(Exception):
    """A topic is missing, misconfigured or cannot be created. The message says which."""


@dataclass(frozen=True)
class TopicPlan:
    input_partitions: int
    created: tuple[str, ...]


def partition_counts(admin: AdminClient, names: list[str]) -> dict[str, int]:
    """Partition count of each existing topic among ``names``."""
    try:
        metadata = admin.list_topics(timeout=TIMEOUT_S)
    except KafkaException as exc:
        raise TopicError(f"cannot list topics: {exc.args[0]}") from None
    counts: dict[str, int] = {}
    for name in names:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None or not topic.partitions:
            continue
        counts[name] = len(topic.partitions)
    return counts


def _acl_hint(name: str) -> str:
    return (
        f"cannot create topic {name!r}: not authorised. Create it beforehand, or grant the "
        f"sidecar's principal the CREATE operation on Topic:{name} (or on the Cluster "
        f"resource), plus DESCRIBE and WRITE on Topic:{name}"
    )


def create_topics(admin: AdminClient, topics: list[NewTopic]) -> list[str]:
    if not topics:
        return []
    futures = admin.create_topics(topics, request_timeout=TIMEOUT_S, operation_timeout=TIMEOUT_S)
    created: list[str] = []
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if error.code() in _AUTH_ERRORS:
                raise TopicError(f"{_acl_hint(name)} ({error.name()})") from None
            raise TopicError(f"cannot create topic {name!r}: {error.str()}") from None
        created.append(name)
        log.info("topic created", topic=name)
    return created


def ensure_topics(
    admin: AdminClient,
    kafka: KafkaSettings,
    audit_topics: Sequence[str] = (),
    audit_retention_days: int = 400,
) -> TopicPlan:
    """Check the input topic, create alert, dead-letter, changelog and the ``audit_topics``
    (the audit log and the state archive: partitioned as the input, deleted after
    ``audit_retention_days``) if needed."""
    names = [kafka.input_topic, kafka.alert_topic, kafka.dead_letter, kafka.changelog]
    names.extend(audit_topics)
    if kafka.labels_topic:
        names.append(kafka.labels_topic)
    counts = partition_counts(admin, names)
    partitions = counts.get(kafka.input_topic)
    if partitions is None:
        raise TopicError(
            f"input topic {kafka.input_topic!r} does not exist (or the sidecar's principal "
            f"lacks DESCRIBE on Topic:{kafka.input_topic})"
        )
    changelog = counts.get(kafka.changelog)
    if changelog is not None and changelog != partitions:
        raise TopicError(
            f"changelog topic {kafka.changelog!r} has {changelog} partitions but input topic "
            f"{kafka.input_topic!r} has {partitions}: they must match (state of input "
            f"partition p is kept in changelog partition p). Delete the changelog topic "
            f"(state is rebuilt from scratch) or recreate it with {partitions} partitions"
        )
    labels = counts.get(kafka.labels_topic) if kafka.labels_topic else None
    if labels is not None and labels != partitions:
        raise TopicError(
            f"labels topic {kafka.labels_topic!r} has {labels} partitions but input topic "
            f"{kafka.input_topic!r} has {partitions}: they must match, and labels must be "
            f"keyed like the predictions (by model, the default partitioner), so that the "
            f"label of a prediction in input partition p is in labels partition p "
            f'(docs/detection.md, "Delayed labels")'
        )
    wanted: list[NewTopic] = []
    for audit_topic in audit_topics:
        audit = counts.get(audit_topic)
        if audit is not None and audit != partitions:
            raise TopicError(
                f"topic {audit_topic!r} has {audit} partitions but input topic "
                f"{kafka.input_topic!r} has {partitions}: they must match (the owner of input "
                f"partition p writes its audit chain and archived state to partition p; "
                f"docs/audit.md)"
            )
        if audit is None:
            wanted.append(
                NewTopic(
                    audit_topic,
                    num_partitions=partitions,
                    replication_factor=-1,
                    config={
                        "cleanup.policy": "delete",
                        "retention.ms": str(audit_retention_days * 86_400_000),
                    },
                )
            )
    extra = [kafka.labels_topic] if kafka.labels_topic and labels is None else []
    for name in (kafka.alert_topic, kafka.dead_letter, *extra):
        if name not in counts:
            wanted.append(NewTopic(name, num_partitions=partitions, replication_factor=-1))
    if changelog is None:
        wanted.append(
            NewTopic(
                kafka.changelog,
                num_partitions=partitions,
                replication_factor=-1,
                config={"cleanup.policy": "compact"},
            )
        )
    created = create_topics(admin, wanted)
    return TopicPlan(input_partitions=partitions, created=tuple(created))
