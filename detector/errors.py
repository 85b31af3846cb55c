"""Errors shared by the configuration loader and the modules it uses.

:class:`ConfigError` lives here, below both :mod:`detector.config` and
:mod:`detector.ops.secrets` (whose ``SecretError`` is a ``ConfigError``, and which the
loader uses to keep secrets out of its messages), so that neither imports the other back.
Import it from :mod:`detector.config` as before.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration value is missing or invalid. The message says where and what."""


class TuningError(Exception):
    """A bad source, injected change or option of a tuning command (``detector replay``,
    ``detector calibrate``): printed as one line, exit code 2."""


class UsageError(TuningError):
    """A bad option or unreadable input of another command (``detector audit``): printed
    as one line, exit code 2, as a tuning command's."""
