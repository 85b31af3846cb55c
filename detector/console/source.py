"""The console's audit log on Kafka: read with ``read_log``, decisions written with
``append_decision``, as ``detector review`` does."""

from __future__ import annotations

from detector.config import Settings
from detector.kafka.audit import append_decision, read_log


class KafkaAuditSource:
    """The audit topic of ``settings`` (``audit.topic``, default ``<alert_topic>.audit``)."""

    def __init__(self, settings: Settings) -> None:
        self.kafka = settings.kafka
        self.topic = settings.audit.topic_for(settings.kafka)

    def records(self) -> list[tuple[int, int, bytes | None]]:
        return list(read_log(self.kafka, self.topic, group_id=self.kafka.group_id))

    def decide(self, action: str, alert_id: str, reason: str, by: str) -> int:
        offset, _ = append_decision(self.kafka, self.topic, action, alert_id, reason, by)
        return offset


__all__ = ["KafkaAuditSource"]
