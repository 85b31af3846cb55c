"""librdkafka configurations built from :class:`KafkaSettings`.

``settings.librdkafka`` is passed through verbatim (after secret references are resolved)
and wins over the defaults here, except for the few keys the processing guarantee depends
on (group id, isolation level, manual commits, assignment strategy, idempotence and the
transactional id), which are always set here.
Configuration values are never logged: they may hold secrets.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from detector.config import KafkaClientSettings, KafkaSettings
from detector.ops.secrets import Value, resolve_librdkafka_config, security_from_env

ConfigDict = dict[str, Any]

#: Extra room over ``max_message_bytes`` for the record key, headers and batch overhead.
PRODUCER_HEADROOM_BYTES = 64 * 1024


def resolve_secrets(mapping: Mapping[str, Value]) -> ConfigDict:
    """``KAFKA_*`` security variables over the config, then "file:"/"env:" values expanded.

    Raises SecretError (a ConfigError) naming the key, never the value.
    """
    raw = {**mapping, **security_from_env(os.environ)}
    return dict(resolve_librdkafka_config(raw))


#: ``client.id`` of the sidecar's clients; the router's say ``drift-router``.
SIDECAR_CLIENT_ID = "drift-detector"


def _base(kafka: KafkaClientSettings, client_id: str) -> ConfigDict:
    # librdkafka's own log lines go through Python logging, so structlog renders them
    # (JSON in production) instead of raw "%4|...|" lines on stderr.
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": client_id,
        "logger": logging.getLogger("librdkafka"),
    }


def _merge(defaults: ConfigDict, kafka: KafkaClientSettings, pinned: ConfigDict) -> ConfigDict:
    config = {**defaults, **resolve_secrets(kafka.librdkafka), **pinned}
    return config


def default_transactional_id(kafka: KafkaSettings) -> str:
    return kafka.transactional_id or f"{kafka.group_id}-{socket.gethostname()}"


#: librdkafka ``fetch.queue.backoff.ms`` for the input consumer (librdkafka's default: 1000).
FETCH_QUEUE_BACKOFF_MS = 50


def group_consumer_config(
    kafka: KafkaClientSettings, group_id: str, client_id: str, **defaults: Any
) -> ConfigDict:
    """A group consumer that commits by hand and reads only committed transactions."""
    base: ConfigDict = {
        **_base(kafka, client_id),
        "auto.offset.reset": "earliest",
        "session.timeout.ms": kafka.session_timeout_ms,
        **defaults,
    }
    pinned: ConfigDict = {
        # Eager rebalancing: revoke everything, checkpoint, then assign. Simple and correct
        # with one transactional producer per instance (the callbacks rely on it).
        "partition.assignment.strategy": "range,roundrobin",
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
    }
    return _merge(base, kafka, pinned)


def consumer_config(kafka: KafkaSettings) -> ConfigDict:
    """The group consumer of the input topic."""
    # When the prefetch queue is full (a backlog: catching up after downtime or a
    # rebalance), librdkafka postpones the partition's next fetch by this much. Its
    # default of 1 s idles a sidecar that has meanwhile drained the queue; measured on
    # a backlog, that second was a third of the run (docs/benchmarks.md).
    return group_consumer_config(
        kafka,
        kafka.group_id,
        SIDECAR_CLIENT_ID,
        **{"fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS},
    )


def reader_config(kafka: KafkaClientSettings, group_id: str, client_id: str) -> ConfigDict:
    """A consumer that reads partitions by assignment to their end (never joins a group;
    ``group_id`` is required by confluent-kafka and unused: no subscribe, no commit)."""
    defaults: ConfigDict = {
        **_base(kafka, client_id),
        # An empty fetch is answered after fetch.wait.max.ms: keep reads to the end quick.
        "fetch.wait.max.ms": 10,
    }
    pinned: ConfigDict = {
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
    }
    return _merge(defaults, kafka, pinned)


def restore_consumer_config(kafka: KafkaSettings) -> ConfigDict:
    """A consumer that reads a changelog partition by assignment (never joins its group)."""
    return reader_config(kafka, f"{kafka.group_id}.restore", f"{SIDECAR_CLIENT_ID}-restore")


def idempotent_producer_config(
    kafka: KafkaClientSettings, client_id: str, **defaults: Any
) -> ConfigDict:
    """An idempotent producer (acks=all): no duplicates from its own retries."""
    base: ConfigDict = {**_base(kafka, client_id), **defaults}
    return _merge(base, kafka, {"enable.idempotence": True, "acks": "all"})


def producer_config(kafka: KafkaSettings) -> ConfigDict:
    config = idempotent_producer_config(
        kafka,
        SIDECAR_CLIENT_ID,
        **{
            "linger.ms": 20,
            "message.max.bytes": kafka.max_message_bytes + PRODUCER_HEADROOM_BYTES,
        },
    )
    if kafka.processing_guarantee == "exactly-once":
        config["transactional.id"] = default_transactional_id(kafka)
    return config


def admin_config(kafka: KafkaClientSettings, client_id: str = SIDECAR_CLIENT_ID) -> ConfigDict:
    return _merge(_base(kafka, client_id), kafka, {})
