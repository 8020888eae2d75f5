"""The exceptions minitune raises for bad model files (docs/security.md).

Every file a model directory holds -- weights, ``config.json``, the tokenizer's files,
a shard index -- is read as untrusted data. Whatever bytes it contains, reading it
either succeeds or raises one of these::

    ValueError
     └── CheckpointError            a file is missing, corrupt, truncated, too large,
          │                         or does not fit the model
          ├── UnsafeCheckpointError a pickle asked for a Python global outside the
          │                         allowed list (nothing was executed)
          └── ConfigError           a configuration value has the wrong type or range
                                    (config.json, tokenizer_config.json, or code)
     DataError                      a training / evaluation / prediction data file is
                                    unreadable or malformed ("path:line: what: 'the line'")

The message names the file and what is wrong; ``error.path``, ``error.key`` and
``error.line`` hold the same facts for programs (None when they do not apply).
"""


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, truncated, too large or does not fit the model.

    Args:
        message: the full message; it starts with the file (or directory) it is about.
        path: that file, when there is one.
        key: the JSON key or tensor name at fault, when there is one.
        line: the line of the file the problem is on (1-based), when known.
    """

    def __init__(self, message, *, path=None, key=None, line=None):
        super().__init__(message)
        self.path = path
        self.key = key
        self.line = line


class UnsafeCheckpointError(CheckpointError):
    """A pickled checkpoint asked for a Python global outside the allowed list.

    Unpickling can call any importable function (``os.system``, ``builtins.eval``),
    so minitune's pickle reader refuses every global it does not know and raises
    this error *before* anything is called. The message names ``module.name``.
    """


class ConfigError(CheckpointError):
    """A configuration value is invalid: wrong type, out of range, or inconsistent.

    Raised for ``config.json`` and ``tokenizer_config.json`` (the message starts with
    ``path:line: key:``), for a config that contradicts the checkpoint's own tensor
    shapes, and for a ``BertConfig`` built in code with bad values (then the message
    starts with ``BertConfig: key:``).
    """


class DataError(ValueError):
    """A data file (training, evaluation or texts to label) is unreadable or malformed.

    The message starts with ``path:line:`` where a line is at fault (lines end at ``\\n``,
    ``\\r\\n`` or ``\\r``, as Python and most editors count them), and names the flag
    that changes the reading (``--encoding``, ``--label-column``) where one would help.
    """
