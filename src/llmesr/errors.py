"""The error a user can fix: bad input named by its file, line or key, printed on one line.

Every library layer raises this (or a subclass: ``DataFormatError``, ``CheckpointError``,
``EncoderError``, ``BundleError``) on purpose; the CLI prints it and exits with code 2. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration or input that cannot be used; the message names the key or file."""
