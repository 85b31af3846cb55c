"""What the sidecar's audit records say about it: the config in force (secrets redacted)
and its hash, and the instance's versions."""

from __future__ import annotations

import platform
from typing import Any

from detector.audit.chain import digest
from detector.config import Settings
from detector.ops.secrets import redact_config


def config_content(settings: Settings) -> dict[str, Any]:
    """The settings as recorded: every section, ``kafka.librdkafka`` with its secret
    values replaced by ``***`` (file: and env: references are kept)."""
    content = settings.model_dump(mode="json")
    content["kafka"]["librdkafka"] = redact_config(settings.kafka.librdkafka)
    return content


def config_body(settings: Settings) -> dict[str, Any]:
    """``config_hash`` (SHA-256 of the canonical content) and ``config`` (the content)."""
    content = config_content(settings)
    return {"config_hash": digest(content), "config": content}


def versions() -> dict[str, str]:
    """The detector's, River's and Python's versions."""
    from detector import __version__
    from detector.core.state import river_version

    return {"version": __version__, "river": river_version(), "python": platform.python_version()}


__all__ = ["config_body", "config_content", "versions"]
