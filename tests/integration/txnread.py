"""A minimal Kafka Fetch client that applies read_committed semantics itself.

Why: Tansu (the embedded test broker) returns an empty ``aborted_transactions`` list in
every Fetch response, so librdkafka's read_committed consumer cannot drop records of aborted
transactions: they are delivered like committed ones. This reader fetches raw record batches
(Fetch v4, read_uncommitted) and decides visibility from the transaction markers in the log,
as a broker-assisted read_committed consumer would:

- a non-transactional record is visible;
- a transactional record is visible once a COMMIT marker of its producer follows it,
  dropped if an ABORT marker follows, and not visible yet while its transaction is open.

Single-broker clusters only (the embedded broker); uncompressed batches only (the sidecar's
default). Test support, not product code.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

FETCH = 1
FETCH_VERSION = 4
_MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class RawRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)
    producer_id: int = -1
    transactional: bool = False


@dataclass
class PartitionLog:
    """What one partition holds, split by transaction outcome."""

    committed: list[RawRecord] = field(default_factory=list)  # what read_committed must show
    aborted: list[RawRecord] = field(default_factory=list)
    open: list[RawRecord] = field(default_factory=list)
    high_watermark: int = 0


class _Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise EOFError
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int8(self) -> int:
        return int(struct.unpack(">b", self.take(1))[0])

    def int16(self) -> int:
        return int(struct.unpack(">h", self.take(2))[0])

    def int32(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def int64(self) -> int:
        return int(struct.unpack(">q", self.take(8))[0])

    def string(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self.take(n).decode()

    def varint(self) -> int:
        shift = result = 0
        while True:
            byte = self.take(1)[0]
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        return (result >> 1) ^ -(result & 1)

    def varbytes(self) -> bytes | None:
        n = self.varint()
        return None if n < 0 else self.take(n)


def _string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


class FetchClient:
    def __init__(self, bootstrap_servers: str) -> None:
        host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.correlation = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> FetchClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _recv(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = self.sock.recv(min(n, 1 << 20))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def fetch(self, topic: str, partition: int, offset: int) -> tuple[int, int, bytes]:
        """(error_code, high_watermark, record bytes) of one read_uncommitted Fetch."""
        self.correlation += 1
        header = struct.pack(">hhi", FETCH, FETCH_VERSION, self.correlation) + _string("txnread")
        body = struct.pack(">iiiib", -1, 100, 1, _MAX_BYTES, 0)
        body += struct.pack(">i", 1) + _string(topic)
        body += struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, _MAX_BYTES)
        request = header + body
        self.sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", self._recv(4))[0]
        r = _Reader(self._recv(size))
        if r.int32() != self.correlation:
            raise ConnectionError("correlation id mismatch")
        r.int32()  # throttle_time_ms
        for _ in range(r.int32()):
            r.string()
            for _ in range(r.int32()):
                r.int32()  # partition
                error = r.int16()
                high = r.int64()
                r.int64()  # last stable offset
                aborted = r.int32()
                for _ in range(max(aborted, 0)):
                    r.int64()
                    r.int64()
                n = r.int32()
                records = b"" if n < 0 else r.take(n)
                return error, high, records
        raise ConnectionError("empty fetch response")


def _parse_batches(
    data: bytes, partition: int
) -> tuple[list[tuple[dict[str, int], list[RawRecord]]], int | None]:
    """Complete batches in ``data`` and the offset after the last complete one."""
    out: list[tuple[dict[str, int], list[RawRecord]]] = []
    r = _Reader(data)
    next_offset: int | None = None
    while True:
        start = r.pos
        try:
            base = r.int64()
            length = r.int32()
            body = _Reader(r.take(length))
        except EOFError:
            r.pos = start
            break
        body.int32()  # partition leader epoch
        magic = body.int8()
        if magic != 2:
            raise ValueError(f"record batch magic {magic} not supported")
        body.take(4)  # crc
        attributes = body.int16()
        last_delta = body.int32()
        body.int64()  # base timestamp
        body.int64()  # max timestamp
        producer_id = body.int64()
        body.int16()  # producer epoch
        body.int32()  # base sequence
        count = body.int32()
        if attributes & 0x07:
            raise ValueError("compressed batches are not supported by this test reader")
        meta = {
            "transactional": bool(attributes & 0x10),
            "control": bool(attributes & 0x20),
            "producer_id": producer_id,
        }
        records: list[RawRecord] = []
        for _ in range(count):
            body.varint()  # record length
            body.int8()  # attributes
            body.varint()  # timestamp delta
            offset_delta = body.varint()
            key = body.varbytes()
            value = body.varbytes()
            headers: dict[str, bytes] = {}
            for _ in range(body.varint()):
                name = (body.varbytes() or b"").decode()
                headers[name] = body.varbytes() or b""
            records.append(
                RawRecord(
                    partition,
                    base + offset_delta,
                    key,
                    value,
                    headers,
                    producer_id,
                    bool(meta["transactional"]),
                )
            )
        out.append(({k: int(v) for k, v in meta.items()}, records))
        next_offset = base + last_delta + 1
    return out, next_offset


def read_partition(bootstrap_servers: str, topic: str, partition: int) -> PartitionLog:
    """The whole partition, split into committed / aborted / still-open records."""
    result = PartitionLog()
    pending: dict[int, list[RawRecord]] = {}  # producer id -> records of its open txn
    offset = 0
    with FetchClient(bootstrap_servers) as client:
        while True:
            error, high, data = client.fetch(topic, partition, offset)
            if error:
                raise ConnectionError(f"fetch {topic}[{partition}]@{offset}: error {error}")
            result.high_watermark = high
            batches, next_offset = _parse_batches(data, partition)
            for meta, records in batches:
                pid = meta["producer_id"]
                if meta["control"]:
                    marker = records[0].key or b""
                    kind = struct.unpack(">hh", marker[:4])[1] if len(marker) >= 4 else -1
                    done = pending.pop(pid, [])
                    (result.committed if kind == 1 else result.aborted).extend(done)
                elif meta["transactional"]:
                    pending.setdefault(pid, []).extend(records)
                else:
                    result.committed.extend(records)
            if next_offset is None or next_offset >= high:
                break
            offset = next_offset
    for records in pending.values():
        result.open.extend(records)
    result.committed.sort(key=lambda rec: rec.offset)
    return result
