"""The bounds every reader of untrusted files checks, in one place (docs/security.md).

A file states sizes -- a header length, a tensor shape, a string length, an element
count -- and a reader that trusts them before comparing them with the bytes actually
present can be made to allocate terabytes or loop for hours by a few bytes. Each bound
below says why it exists; each is far above what any real checkpoint needs.
"""

import itertools
import math
from pathlib import Path

from .errors import CheckpointError

MiB = 1 << 20

# JSON files (config.json, tokenizer_config.json, special_tokens_map.json, shard
# indexes). Real ones are a few KiB; one with 100,000 labels is about 4 MiB. Parsed into
# Python objects a JSON byte can cost up to ~30 bytes, so 16 MiB keeps parsing < 0.5 GiB.
MAX_JSON_BYTES = 16 * MiB
# tokenizer.json holds the whole vocabulary (a 250,000-token one is ~20 MiB); it is
# parsed by the Rust tokenizers library, which stores it compactly.
MAX_TOKENIZER_JSON_BYTES = 64 * MiB
# vocab.txt: one token per line (bert-base-multilingual's 120,000 tokens are 0.9 MiB).
MAX_VOCAB_BYTES = 64 * MiB
# Nesting of JSON arrays/objects. Real files nest at most ~8 deep; Python's parser
# recurses once per level and fails at ~1,000 with a RecursionError.
MAX_JSON_DEPTH = 64

# The JSON header of a safetensors file (the limit of the reference implementation).
MAX_SAFETENSORS_HEADER = 100_000_000

# One pickle of a .bin checkpoint (zip: data.pkl; legacy: the main pickle). It only
# describes tensors -- the bytes of the storages live outside it -- at ~110 bytes per
# tensor: bert-base's is 22 KiB, a 70B-parameter model's ~80 KiB, and 4 MiB hold ~37,000
# tensors. minitune runs a pickle at ~1 us per opcode, and one opcode byte can build an
# object of ~100 bytes, so this also bounds a pickle's time (seconds) and memory (< 1 GiB).
MAX_PICKLE_BYTES = 4 * MiB
# Integers in a pickle (LONG1/LONG4). torch never writes more than 9 bytes; an integer
# of a million digits would make every later use of it (repr, arithmetic) slow.
MAX_PICKLE_INT_BYTES = 64

# Dimensions of one tensor: NumPy's own limit.
MAX_NDIM = 64
# A tensor's byte size must fit a signed 64-bit integer with room to spare, or NumPy
# refuses the shape with an undocumented "array is too big" ValueError.
MAX_TENSOR_BYTES = 1 << 62

# config.json: the model is built with one Python object per layer and one head row
# per label before any weight is loaded, so counts are bounded first.
MAX_LAYERS = 1024            # the deepest published BERTs have 48
MAX_LABELS = 100_000         # classes of a classification head
# Parameters a config may imply when no checkpoint is there to compare with (building a
# model from scratch): 2**31 float32 parameters are 8 GiB; bert-large has 3.4e8.
MAX_PARAMETERS = 1 << 31


def check_shape(shape, itemsize, path, name):
    """Check a tensor shape read from a file; return it as a tuple of ints.

    Args:
        shape: the shape as read (any object).
        itemsize: bytes per element.
        path / name: the file and the tensor, named in the error.

    Raises:
        CheckpointError: not a sequence of non-negative ints, more than MAX_NDIM
            dimensions, or more than MAX_TENSOR_BYTES bytes (zero-sized tensors too:
            NumPy refuses a (0, 2**62) shape as well).
    """
    if not (isinstance(shape, (list, tuple)) and len(shape) <= MAX_NDIM):
        problem = f"not a list of at most {MAX_NDIM} integers"
    elif not all(type(d) is int and d >= 0 for d in shape):  # noqa: E721 - not bool
        problem = "an entry is not a non-negative integer"
    elif math.prod(d for d in shape if d) * itemsize > MAX_TENSOR_BYTES:
        problem = "larger than any tensor can be (over 2**62 bytes)"
    else:
        return tuple(shape)
    raise CheckpointError(f"{path}: tensor {name!r}: invalid shape {describe(shape)}: "
                          f"{problem}", path=path, key=name)


def is_int(value):
    """An int that is not a bool (``True`` is an int in Python, never a size)."""
    return isinstance(value, int) and not isinstance(value, bool)


def describe(value, limit=80):
    """A short, always-safe description of a value read from a file, for messages.

    ``repr`` is not safe on hostile data: it recurses into nested containers
    (RecursionError) and refuses integers of more than 4,300 digits (ValueError).
    """
    if is_int(value):
        if value.bit_length() > 200:
            return f"an integer of {value.bit_length()} bits"
        return str(value)
    if isinstance(value, (str, bytes)):
        text = repr(value[: limit + 1])
    elif isinstance(value, (float, bool, type(None))):
        text = repr(value)
    elif isinstance(value, dict):
        pairs = itertools.islice(value.items(), 8)
        inner = [f"{describe(k, 20)}: {_shallow(v)}" for k, v in pairs]
        text = _bracket(value, "{", inner, "}")
    elif isinstance(value, (list, tuple)):
        inner = [_shallow(v) for v in value[:8]]
        text = _bracket(value, "[" if isinstance(value, list) else "(", inner,
                        "]" if isinstance(value, list) else ")")
    else:
        text = f"a {type(value).__name__}"
    return shorten(text, limit)


def shorten(text, limit=200):
    """``text`` cut to ``limit`` characters (for quoting library messages)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bracket(value, left, items, right):
    more = ", ..." if len(value) > len(items) else ""
    prefix = "" if type(value) in (dict, list, tuple) else type(value).__name__
    return f"{prefix}{left}{', '.join(items)}{more}{right}"


def _shallow(value):
    """One level of ``describe``: containers inside containers are only named."""
    if isinstance(value, (list, tuple, dict)):
        return f"<{type(value).__name__} of {len(value)}>"
    return describe(value, 20)


class CappedFile:
    """A read-only binary file whose ``read(n)`` never asks for more than is left.

    ``io.BufferedReader.read(n)`` allocates ``n`` bytes before reading, so a size
    field of 2**40 taken from a hostile file (a tar header, a zip directory size, a
    legacy storage count) raises MemoryError even when the file is 100 bytes long.
    Capped at the bytes that remain, such a read simply comes back short, and the
    caller's length check reports a truncated file. tarfile and zipfile get this
    wrapper instead of the plain file for the same reason.
    """

    def __init__(self, file):
        self._file = file
        file.seek(0, 2)
        self.size = file.tell()
        file.seek(0)
        self.name = getattr(file, "name", None)
        self.mode = "rb"

    def read(self, n=-1):
        left = self.size - self._file.tell()
        if n is None or n < 0 or n > left:
            n = max(left, 0)
        return self._file.read(n)

    def readinto(self, buffer):
        view = memoryview(buffer).cast("B")
        return self._file.readinto(view[: self.remaining()])

    def readline(self, limit=-1):
        left = max(self.size - self._file.tell(), 0)
        return self._file.readline(left if limit is None or limit < 0 else min(limit, left))

    def remaining(self):
        """Bytes between the current position and the end of the file."""
        return max(self.size - self._file.tell(), 0)

    def seek(self, offset, whence=0):
        return self._file.seek(offset, whence)

    def tell(self):
        return self._file.tell()

    def seekable(self):
        return True

    def readable(self):
        return True

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_capped(path):
    """Open ``path`` for reading as a ``CappedFile``."""
    return CappedFile(open(path, "rb"))


def read_limited(file, limit, where, what):
    """Read ``file`` to its end, refusing (before reading them) more than ``limit`` bytes.

    Args:
        file: a binary file object (an archive member, a CappedFile...).
        limit: the most bytes allowed.
        where: the start of the error message (file or member).
        what: what is being read, for the message ("data.pkl", "storage 0").

    Raises:
        CheckpointError: the data is longer than ``limit``.
    """
    data = file.read(limit + 1)
    if len(data) > limit:
        raise CheckpointError(f"{where}: {what} is longer than {limit} bytes, more than a "
                              "valid file can hold here (docs/security.md)")
    return data


def read_file_limited(path, what, max_bytes, error=CheckpointError):
    """The bytes of a whole file, after checking it exists and holds at most ``max_bytes``.

    Args:
        path: the file.
        what: what it is, for messages ("model config", "vocabulary file").
        max_bytes: the most bytes read.
        error: the exception class to raise (a CheckpointError subclass).
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found", path=path)
    size = path.stat().st_size
    if size > max_bytes:
        raise error(f"{path}: {what} is {size} bytes; at most {max_bytes} are read "
                    "(docs/security.md)", path=path)
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)  # the file may have grown since stat()
    if len(data) > max_bytes:
        raise error(f"{path}: {what} is larger than {max_bytes} bytes", path=path)
    return data
