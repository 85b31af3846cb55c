"""Ed25519 signatures of chain heads (``audit.signing_key_file``; docs/audit.md).

A ``signature`` record signs the record before it: its body holds that record's ``seq``
and ``hash`` (``signs_seq``, ``signs_hash``), the key's id (the first 16 hex digits of the
SHA-256 of the raw public key) and the Ed25519 signature of the hash's 64 ASCII hex digits,
base64. The sidecar appends one to each chain that moved at every checkpoint, in the same
transaction: whoever can write the topic can append records, but only the key's holder can
sign them, so ``detector audit verify --public-key`` tells which part of each chain the
sidecar vouched for.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from detector.audit.chain import Head


class SigningKeyError(ValueError):
    """A key file that cannot be used; the message says which file and why."""


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _load(path: str, load: Callable[[bytes], Any], what: str) -> Any:
    """The key in the file at ``path``, read by ``load``; SigningKeyError naming the file
    (never its content) when it cannot be read or is not ``what``."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return load(data)
    except (ValueError, TypeError):
        raise SigningKeyError(f"{path}: not {what}") from None


class Signer:
    """Signs heads with an Ed25519 private key (PEM, PKCS#8, unencrypted)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.key_id = _key_id(key.public_key())

    @classmethod
    def from_file(cls, path: str) -> Signer:
        def load(data: bytes) -> Any:
            return serialization.load_pem_private_key(data, password=None)

        key = _load(path, load, "an unencrypted PEM private key")
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{path}: expected an Ed25519 private key")
        return cls(key)

    def body(self, head: Head) -> dict[str, Any]:
        """The body of a signature record signing the record before ``head``."""
        signature = self._key.sign(head.hash.encode("ascii"))
        return {
            "signs_seq": head.seq - 1,
            "signs_hash": head.hash,
            "key_id": self.key_id,
            "signature": base64.b64encode(signature).decode("ascii"),
        }


class Checker:
    """Checks signatures with an Ed25519 public key (PEM, SubjectPublicKeyInfo)."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self.key_id = _key_id(key)

    @classmethod
    def from_file(cls, path: str) -> Checker:
        key = _load(path, serialization.load_pem_public_key, "a PEM public key")
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError(f"{path}: expected an Ed25519 public key")
        return cls(key)

    def __call__(self, signed_hash: str, signature: str) -> bool:
        try:
            self._key.verify(base64.b64decode(signature, validate=True), signed_hash.encode())
        except (InvalidSignature, ValueError):
            return False
        return True


__all__ = ["Checker", "Signer", "SigningKeyError"]
