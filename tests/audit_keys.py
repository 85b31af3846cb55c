"""An Ed25519 key pair as files, for the audit log's signing tests (unit and integration)."""

from __future__ import annotations

from pathlib import Path


def write_keys(directory: Path) -> tuple[Path, Path]:
    """A new key pair in ``directory``: (private key PEM PKCS#8, public key PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private, public = directory / "audit.key", directory / "audit.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public
