"""Exceptions raised while reading or writing checkpoints."""


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated or does not fit the model.

    The message always names the file (or directory) and what is wrong with it.
    """


class UnsafeCheckpointError(CheckpointError):
    """A pickled checkpoint asked for a Python global outside the allowed list.

    Unpickling can call any importable function (``os.system``, ``builtins.eval``),
    so the restricted unpickler refuses every global it does not know and raises
    this error *before* anything is called. The message names ``module.name``.
    """
