"""The changelog format of detector state: one versioned, self-describing entry per model.

An entry is ``b"DDST"`` + one format-version byte + a pickle of the model's monitors (River
detectors are picklable and are kept as River objects, so restored state is River state).
The changelog topic is internal to the sidecar's consumer group and must be writable by it
alone: a pickle is only as trustworthy as whoever can write the topic.
"""

from __future__ import annotations

import pickle
from typing import Any

MAGIC = b"DDST"
#: 2: compiled trackers (detector.core._kernel). Version 1 entries are refused, not guessed at.
FORMAT_VERSION = 2


class StateFormatError(Exception):
    """A changelog entry cannot be restored (unknown format version or corrupt)."""


def encode_model(state: Any) -> bytes:
    return MAGIC + bytes([FORMAT_VERSION]) + pickle.dumps(state, protocol=5)


def decode_model(blob: bytes, key: str) -> Any:
    if len(blob) < 5 or blob[:4] != MAGIC:
        raise StateFormatError(
            f"changelog entry for model {key!r} is not detector state (bad header); "
            "refusing to start fresh over it"
        )
    version = blob[4]
    if version != FORMAT_VERSION:
        raise StateFormatError(
            f"changelog entry for model {key!r} has state format version {version}; "
            f"this build reads version {FORMAT_VERSION}"
        )
    try:
        return pickle.loads(blob[5:])
    except Exception as exc:  # any unpickling failure means corrupt state
        raise StateFormatError(
            f"changelog entry for model {key!r} is corrupt ({type(exc).__name__})"
        ) from None
