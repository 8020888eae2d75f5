"""The checkpoint exceptions, defined in minitune/errors.py (so that ``import minitune`` can
export them without loading the readers of io/); re-exported here for io's modules."""

from ..errors import CheckpointError, ConfigError, UnsafeCheckpointError

__all__ = ["CheckpointError", "ConfigError", "UnsafeCheckpointError"]
