"""The audit trail (docs/audit.md): hash-chained records of what each sidecar did, and
their verification. :mod:`detector.audit.chain` is pure (records, chains, ``verify``);
:mod:`detector.audit.content` says what the sidecar records about itself; the Kafka side is
:mod:`detector.kafka.audit`, the command ``detector audit`` :mod:`detector.audit.cli`.
Nothing is imported here, so that ``detector --help`` stays cheap."""
