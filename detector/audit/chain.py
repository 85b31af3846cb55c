"""The audit log's records and their hash chain (pure: no Kafka).

A record (``schemas/audit-record.v1.json``) is one JSON object::

    {"audit": 1, "chain": "sidecar/3", "seq": 17, "kind": "alert",
     "at": "2026-12-07T10:00:00.000Z", "by": "drift-detector-host-1",
     "body": {...}, "prev": "<hex>", "hash": "<hex>"}

``hash`` is the SHA-256 of the record's canonical form without ``hash`` (JSON with sorted
keys, no whitespace, UTF-8: :func:`canonical`); ``prev`` is the ``hash`` of the record
before it in the same chain (:data:`GENESIS`, 64 zeros, for the first); ``seq`` counts the
chain's records from 0. A chain is written by one writer at a time (the owner of an input
partition writes chain ``sidecar/P`` to audit partition ``P``), so a deleted, reordered,
edited or inserted record breaks it: :func:`verify` finds the first break.

What a hash chain cannot show on its own: records removed from the *end* of a chain
(nothing after them points back), and a chain rewritten from some record on by whoever can
write the topic and recompute hashes. Against both, an archive with write-once retention
(docs/audit.md) keeps the record as it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

#: The record format's version (the ``audit`` field).
FORMAT = 1
#: ``prev`` of a chain's first record.
GENESIS = "0" * 64
#: The kinds of record (``kind``) and what their ``body`` holds (docs/audit.md).
KINDS = (
    "partition_assigned",  # an instance took an input partition: version, River, config
    "partition_released",  # ... and gave it up (revoked, stopped)
    "config",  # the detection config in force changed (SIGHUP reload): hash and content
    "alert",  # an alert as published on the alert topic
    "review",  # a person's decision on an alert (detector.audit.review)
    "signature",  # the Ed25519 signature of the record before it (detector.audit.signing)
    "silence",  # a silence created or expired (detector silence; chain "silences")
    "notification",  # a notification the router sent, and its outcome (chain "router/P")
    "suspension",  # a model suspended or resumed (detector.audit.control; chain "control")
    "state_archived",  # a partition's whole state written to the state archive, and its digest
)
_FIELDS = ("audit", "chain", "seq", "kind", "at", "by", "body", "prev", "hash")


def canonical(doc: Any) -> bytes:
    """The canonical JSON of ``doc``: sorted keys, no whitespace, UTF-8."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def digest(doc: Any) -> str:
    """The SHA-256 (hex) of ``doc``'s canonical JSON."""
    return hashlib.sha256(canonical(doc)).hexdigest()


def _iso_ms(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000.0, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclass(frozen=True)
class Head:
    """Where a chain stands: the next record's ``seq`` and ``prev``."""

    seq: int = 0
    hash: str = GENESIS


class Chain:
    """The writer's side of one chain: ``append`` makes the next record."""

    def __init__(self, name: str, writer: str, head: Head | None = None) -> None:
        if not name:
            raise ValueError("a chain needs a name")
        self.name = name
        self.writer = writer
        self.head = head or Head()

    def append(self, kind: str, body: dict[str, Any], at_ms: int) -> bytes:
        """The next record (as bytes to publish); the head moves past it."""
        if kind not in KINDS:
            raise ValueError(f"unknown audit record kind {kind!r}")
        record: dict[str, Any] = {
            "audit": FORMAT,
            "chain": self.name,
            "seq": self.head.seq,
            "kind": kind,
            "at": _iso_ms(at_ms),
            "by": self.writer,
            "body": body,
            "prev": self.head.hash,
        }
        record["hash"] = digest(record)
        self.head = Head(self.head.seq + 1, record["hash"])
        return canonical(record)


def head_of(value: bytes | None, chain: str | None = None) -> Head | None:
    """The head after a published record (None if it is not a well-formed record, or,
    with ``chain``, not one of that chain)."""
    try:
        record = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or _problem(record) is not None:
        return None
    if chain is not None and record["chain"] != chain:
        return None
    return Head(record["seq"] + 1, record["hash"])


def _problem(record: dict[str, Any]) -> str | None:
    """Why ``record`` is not a well-formed record whose hash is right (None if it is)."""
    missing = [name for name in _FIELDS if name not in record]
    if missing:
        return f"not an audit record: no {missing[0]!r}"
    if record["audit"] != FORMAT:
        return f"unknown audit format {record['audit']!r}"
    if type(record["seq"]) is not int or record["seq"] < 0:
        return "seq is not a count"
    if not isinstance(record["chain"], str) or not isinstance(record["body"], dict):
        return "chain or body of the wrong type"
    content = {k: v for k, v in record.items() if k != "hash"}
    if digest(content) != record["hash"]:
        return "its hash does not match its content (edited)"
    return None


@dataclass(frozen=True)
class Break:
    """The first place a chain does not hold."""

    partition: int
    offset: int
    chain: str | None
    seq: int | None
    reason: str

    def __str__(self) -> str:
        where = f"partition {self.partition} offset {self.offset}"
        if self.chain is not None:
            where += f" (chain {self.chain}, seq {self.seq})"
        return f"{where}: {self.reason}"


@dataclass
class ChainSummary:
    """A chain as verified: its records, first and last seq and time, kinds."""

    name: str
    partition: int
    records: int = 0
    first_seq: int = 0
    last_seq: int = 0
    first_at: str = ""
    last_at: str = ""
    kinds: dict[str, int] = field(default_factory=dict)
    last_offset: int = -1
    last_hash: str = GENESIS
    #: With a public key: the seq of the last record a valid signature vouched for.
    signed_seq: int | None = None


@dataclass
class Verification:
    """What :func:`verify` found: every chain, and the first break (None: intact)."""

    chains: dict[tuple[int, str], ChainSummary] = field(default_factory=dict)
    broken: Break | None = None
    records: int = 0

    @property
    def ok(self) -> bool:
        return self.broken is None


def verify(
    records: Iterable[tuple[int, int, bytes | None]],
    check_signature: Callable[[str, str], bool] | None = None,
) -> Verification:
    """Check the chains of ``records`` ((partition, offset, value), each partition's in
    offset order); stop at the first break.

    A ``signature`` record must sign the record before it (``signs_hash`` is its
    ``prev``); with ``check_signature`` (hash, signature -> valid: a
    :class:`detector.audit.signing.Checker`), its signature must verify too.

    A chain's first record may have a ``seq`` above 0 (the records before it are gone: the
    topic's retention); it is taken as it is, and noted in its summary (``first_seq``).
    """
    result = Verification()
    for partition, offset, value in records:
        result.records += 1
        try:
            record = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            result.broken = Break(partition, offset, None, None, "not a JSON object")
            return result
        problem = _problem(record)
        chain, seq = record.get("chain"), record.get("seq")
        if problem is not None:
            name = chain if isinstance(chain, str) else None
            number = seq if type(seq) is int else None
            result.broken = Break(partition, offset, name, number, problem)
            return result
        chain, seq = record["chain"], record["seq"]  # checked: a str and an int
        key = (partition, chain)
        summary = result.chains.get(key)
        if summary is None:
            summary = result.chains[key] = ChainSummary(chain, partition, first_seq=seq)
            summary.first_at = record["at"]
            if seq == 0 and record["prev"] != GENESIS:
                result.broken = Break(
                    partition, offset, chain, seq, "the first record does not start from genesis"
                )
                return result
        else:
            expected = summary.last_seq + 1
            if seq != expected:
                what = "missing or deleted" if seq > expected else "repeated or reordered"
                result.broken = Break(
                    partition,
                    offset,
                    chain,
                    seq,
                    f"expected seq {expected} after offset {summary.last_offset}: records {what}",
                )
                return result
            if record["prev"] != summary.last_hash:
                result.broken = Break(
                    partition,
                    offset,
                    chain,
                    seq,
                    f"prev does not match the hash of seq {summary.last_seq} at offset "
                    f"{summary.last_offset} (a record before it was replaced)",
                )
                return result
        if record["kind"] == "signature":
            body = record["body"]
            problem = None
            if body.get("signs_hash") != record["prev"] or body.get("signs_seq") != seq - 1:
                problem = "the signature does not sign the record before it"
            elif check_signature is not None and not check_signature(
                str(body.get("signs_hash")), str(body.get("signature"))
            ):
                problem = "the signature does not verify with the public key"
            if problem is not None:
                result.broken = Break(partition, offset, chain, seq, problem)
                return result
            if check_signature is not None:
                summary.signed_seq = seq - 1
        summary.records += 1
        summary.last_seq = seq
        summary.last_at = record["at"]
        summary.last_offset = offset
        summary.last_hash = record["hash"]
        summary.kinds[record["kind"]] = summary.kinds.get(record["kind"], 0) + 1
    return result


__all__ = [
    "FORMAT",
    "GENESIS",
    "KINDS",
    "Break",
    "Chain",
    "ChainSummary",
    "Head",
    "Verification",
    "canonical",
    "digest",
    "head_of",
    "verify",
]
