"""The audit log's hash chain (pure): records, heads, and verify finding each kind of
tampering at the record where it shows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from audit_keys import write_keys

from detector.audit.chain import GENESIS, Chain, Head, canonical, digest, head_of, verify
from detector.audit.cli import within
from detector.audit.content import config_body, config_content
from detector.config import KafkaSettings, Settings

AT = 1_796_616_000_000  # 2026-12-07T04:00:00Z


def _chain(n: int, name: str = "sidecar/0") -> list[bytes]:
    chain = Chain(name, "writer-1")
    return [chain.append("alert", {"n": i}, AT + i) for i in range(n)]


def _log(values: list[bytes], partition: int = 0) -> list[tuple[int, int, bytes | None]]:
    return [(partition, offset, value) for offset, value in enumerate(values)]


def _edit(value: bytes, **changes: Any) -> bytes:
    return canonical(orjson.loads(value) | changes)


def _rehash(value: bytes, **changes: Any) -> bytes:
    """A forgery that recomputes the hash: the record itself looks right."""
    record = orjson.loads(value) | changes
    record.pop("hash")
    record["hash"] = digest(record)
    return canonical(record)


class TestChain:
    def test_records_link_and_hash(self) -> None:
        first, second = _chain(2)
        a, b = orjson.loads(first), orjson.loads(second)
        assert (a["seq"], a["prev"], b["seq"], b["prev"]) == (0, GENESIS, 1, a["hash"])
        assert a == {
            "audit": 1,
            "chain": "sidecar/0",
            "seq": 0,
            "kind": "alert",
            "at": "2026-12-07T04:00:00.000Z",
            "by": "writer-1",
            "body": {"n": 0},
            "prev": GENESIS,
            "hash": digest({k: v for k, v in a.items() if k != "hash"}),
        }
        assert first == canonical(a)  # published canonical: sorted keys, no spaces

    def test_a_chain_continues_from_the_head_of_its_last_record(self) -> None:
        values = _chain(3)
        head = head_of(values[-1])
        assert head == Head(3, orjson.loads(values[-1])["hash"])
        more = Chain("sidecar/0", "writer-2", head).append("partition_assigned", {}, AT + 9)
        assert verify(_log([*values, more])).ok
        assert head_of(b"not json") is None and head_of(_edit(values[0], seq=7)) is None

    def test_unknown_kind_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown audit record kind 'alrt'"):
            Chain("c", "w").append("alrt", {}, AT)


class TestVerify:
    def test_an_intact_log_with_two_chains(self) -> None:
        result = verify(_log(_chain(5)) + _log(_chain(3, "sidecar/1"), partition=1))
        assert result.ok and result.records == 8
        summary = result.chains[(0, "sidecar/0")]
        assert (summary.records, summary.first_seq, summary.last_seq) == (5, 0, 4)
        assert (summary.first_at, summary.last_at) == (
            "2026-12-07T04:00:00.000Z",
            "2026-12-07T04:00:00.004Z",
        )
        assert summary.kinds == {"alert": 5}

    @pytest.mark.parametrize(
        ("tamper", "offset", "message"),
        [
            (
                lambda v: [v[0], v[1], _edit(v[2], body={"n": 99}), v[3], v[4]],
                2,
                "partition 0 offset 2 (chain sidecar/0, seq 2): its hash does not match its "
                "content (edited)",
            ),
            (
                lambda v: [v[0], v[1], v[3], v[4]],
                2,
                "partition 0 offset 2 (chain sidecar/0, seq 3): expected seq 2 after offset 1: "
                "records missing or deleted",
            ),
            (
                lambda v: [v[0], v[2], v[1], v[3], v[4]],
                1,
                "partition 0 offset 1 (chain sidecar/0, seq 2): expected seq 1 after offset 0: "
                "records missing or deleted",
            ),
            (
                lambda v: [v[0], v[1], v[1], v[2]],
                2,
                "partition 0 offset 2 (chain sidecar/0, seq 1): expected seq 2 after offset 1: "
                "records repeated or reordered",
            ),
            (
                # Replaced by a record whose own hash is right: the next one shows it.
                lambda v: [v[0], v[1], _rehash(v[2], body={"n": 99}), v[3], v[4]],
                3,
                "partition 0 offset 3 (chain sidecar/0, seq 3): prev does not match the hash "
                "of seq 2 at offset 2 (a record before it was replaced)",
            ),
            (
                lambda v: [_rehash(v[0], prev="1" * 64), v[1]],
                0,
                "partition 0 offset 0 (chain sidecar/0, seq 0): the first record does not "
                "start from genesis",
            ),
            (lambda v: [v[0], b"{oops", v[1]], 1, "partition 0 offset 1: not a JSON object"),
            (
                lambda v: [v[0], _edit(v[1], audit=2)],
                1,
                "partition 0 offset 1 (chain sidecar/0, seq 1): unknown audit format 2",
            ),
        ],
        ids=[
            "edited",
            "deleted",
            "reordered",
            "repeated",
            "replaced",
            "genesis",
            "garbage",
            "format",
        ],
    )
    def test_the_first_break_is_named(self, tamper: Any, offset: int, message: str) -> None:
        result = verify(_log(tamper(_chain(5))))
        assert result.broken is not None
        assert result.broken.offset == offset
        assert str(result.broken) == message

    def test_a_chain_whose_start_expired_is_taken_from_where_it_starts(self) -> None:
        result = verify(_log(_chain(6)[2:]))
        assert result.ok and result.chains[(0, "sidecar/0")].first_seq == 2

    def test_a_time_window(self) -> None:
        values = _chain(6)
        start = datetime(2026, 12, 7, 4, 0, 0, 2000, tzinfo=UTC)  # .002
        end = datetime(2026, 12, 7, 4, 0, 0, 4000, tzinfo=UTC)  # .004
        kept = list(within(_log(values), start, end))
        assert [offset for _, offset, _ in kept] == [2, 3]
        assert verify(kept).ok


class TestSchema:
    def test_records_follow_the_schema(self, repo_root: Any) -> None:
        import json

        import jsonschema

        schema = json.loads((repo_root / "schemas" / "audit-record.v1.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        chain = Chain("sidecar/0", "writer-1")
        for kind in ("partition_assigned", "config", "alert", "review", "partition_released"):
            jsonschema.validate(orjson.loads(chain.append(kind, {"x": 1}, AT)), schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(orjson.loads(_edit(_chain(1)[0], extra=1)), schema)


class TestContent:
    def test_secrets_are_redacted_and_the_hash_is_of_the_content(self) -> None:
        settings = Settings(
            kafka=KafkaSettings(
                librdkafka={"sasl.password": "hunter2", "sasl.username": "detector"}
            )
        )
        content = config_content(settings)
        assert content["kafka"]["librdkafka"] == {
            "sasl.password": "***",
            "sasl.username": "detector",
        }
        body = config_body(settings)
        assert body["config_hash"] == digest(content) and "hunter2" not in str(body)
        assert config_body(Settings())["config_hash"] != body["config_hash"]


def _keys(tmp_path: Any) -> tuple[Any, Any]:
    return write_keys(tmp_path)


class TestSignatures:
    def _signed(self, tmp_path: Any) -> tuple[list[bytes], Any, Any]:
        from detector.audit.signing import Checker, Signer

        private, public = _keys(tmp_path)
        signer = Signer.from_file(str(private))
        chain = Chain("sidecar/0", "pod-0")
        values = [chain.append("alert", {"n": i}, AT) for i in range(3)]
        values.append(chain.append("signature", signer.body(chain.head), AT))
        values.append(chain.append("alert", {"n": 3}, AT))
        return values, Checker.from_file(str(public)), signer

    def test_a_signed_head_verifies_and_says_how_far(self, tmp_path: Any) -> None:
        values, checker, signer = self._signed(tmp_path)
        assert checker.key_id == signer.key_id and len(signer.key_id) == 16
        result = verify(_log(values), checker)
        assert result.ok and result.chains[(0, "sidecar/0")].signed_seq == 2
        assert verify(_log(values)).chains[(0, "sidecar/0")].signed_seq is None

    def test_a_forged_signature_or_another_key_is_a_break(self, tmp_path: Any) -> None:
        from detector.audit.signing import Checker

        values, checker, _ = self._signed(tmp_path)
        record = orjson.loads(values[3])
        forged = _rehash(values[3], body=dict(record["body"], signature="A" * 88))
        tampered = [*values[:3], forged]
        broken = verify(_log(tampered), checker).broken
        assert str(broken) == (
            "partition 0 offset 3 (chain sidecar/0, seq 3): the signature does not verify "
            "with the public key"
        )
        (tmp_path / "other").mkdir()
        other = Checker.from_file(str(_keys(tmp_path / "other")[1]))
        assert not verify(_log(values), other).ok

    def test_a_signature_of_another_record_is_a_break(self, tmp_path: Any) -> None:
        values, checker, _ = self._signed(tmp_path)
        record = orjson.loads(values[3])
        moved = _rehash(values[3], body=dict(record["body"], signs_seq=0))
        assert str(verify(_log([*values[:3], moved]), checker).broken).endswith(
            "the signature does not sign the record before it"
        )

    def test_unusable_key_files_name_the_file(self, tmp_path: Any) -> None:
        from detector.audit.signing import Checker, Signer, SigningKeyError
        from detector.errors import ConfigError
        from detector.kafka.runner import Sidecar

        private, public = _keys(tmp_path)
        with pytest.raises(
            SigningKeyError, match=r"audit\.pub: not an unencrypted PEM private key"
        ):
            Signer.from_file(str(public))
        with pytest.raises(SigningKeyError, match=r"audit\.key: not a PEM public key"):
            Checker.from_file(str(private))
        missing = tmp_path / "none.key"
        settings = Settings(audit={"signing_key_file": str(missing)})  # type: ignore[arg-type]
        with pytest.raises(ConfigError) as caught:
            Sidecar(settings)
        assert str(caught.value) == (
            f"audit.signing_key_file: {missing}: cannot read: No such file or directory"
        )


def test_a_bad_signing_key_fails_the_config_naming_both_files(tmp_path: Any) -> None:
    from detector.config import load_settings
    from detector.errors import ConfigError

    private, public = _keys(tmp_path)
    config = tmp_path / "detector.yaml"
    config.write_text(f"audit:\n  signing_key_file: {public}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    assert str(caught.value) == (
        f"{config}: audit.signing_key_file: {public}: not an unencrypted PEM private key"
    )
    config.write_text(f"audit:\n  signing_key_file: {private}\n")
    assert load_settings(config, env={}).audit.signing_key_file == str(private)


def test_the_signing_key_file_can_come_from_the_environment(tmp_path: Any) -> None:
    """DETECTOR_AUDIT_SIGNING_KEY_FILE (set on the sidecar's container alone by deploy/'s
    audit-signing component) beats the file, and a bad key still fails the config."""
    from detector.config import load_settings
    from detector.errors import ConfigError

    private, public = _keys(tmp_path)
    config = tmp_path / "detector.yaml"
    config.write_text("log:\n  level: info\n")
    assert load_settings(config, env={}).audit.signing_key_file is None
    env = {"DETECTOR_AUDIT_SIGNING_KEY_FILE": str(private)}
    assert load_settings(config, env=env).audit.signing_key_file == str(private)
    config.write_text(f"audit:\n  signing_key_file: {public}\n")
    assert load_settings(config, env=env).audit.signing_key_file == str(private)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={"DETECTOR_AUDIT_SIGNING_KEY_FILE": str(public)})
    assert str(caught.value) == (
        f"{config} + $DETECTOR_AUDIT_SIGNING_KEY_FILE: audit.signing_key_file: {public}: "
        "not an unencrypted PEM private key"
    )
