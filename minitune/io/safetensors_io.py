"""Read and write the safetensors format.

Layout of a ``.safetensors`` file (see docs/checkpoints.md)::

    [8 bytes]  N, the header length, unsigned little-endian 64-bit integer
    [N bytes]  JSON header: {"__metadata__": {str: str},            (optional)
                             "<name>": {"dtype": "F32", "shape": [d0, d1, ...],
                                        "data_offsets": [begin, end]}, ...}
    [rest]     the data section: raw little-endian tensor bytes, row-major;
               offsets are relative to the start of this section

The file holds only data, so reading it can never run code (unlike a pickle). We
validate the whole header before reading a byte of data -- every dtype known, every
shape bounded, every tensor's byte range exactly its shape's size, the ranges back to
back from 0 to the end of the file (as the reference implementation requires) -- so a
truncated, corrupt or hostile file gives a CheckpointError naming the file and the
tensor, and the memory used is at most the data present. Then each tensor is read with
one ``read``. NumPy has no bfloat16, so BF16 tensors are decoded by hand; BF16 and F16
are returned as float32, the dtype minitune computes in.
"""

import math
import struct
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .errors import CheckpointError
from .json_io import parse_json
from .limits import MAX_SAFETENSORS_HEADER, check_shape, describe, is_int

# safetensors dtype code -> numpy dtype of the stored bytes (little-endian; its itemsize is the
# bytes per element).
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # stored as raw 16-bit patterns, see bf16_to_float32
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

# Header length field: 8 bytes, little-endian unsigned.
_HEADER_LEN = struct.Struct("<Q")


def bf16_to_float32(bits):
    """Decode bfloat16 bit patterns (uint16 array) to float32.

    bfloat16 is the top half of a float32 (sign, 8 exponent bits, 7 mantissa bits),
    so shifting the 16 bits into the high half of a 32-bit word gives the float32
    with the same value exactly.
    """
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_safetensors_header(path):
    """Parse and validate the header of a safetensors file.

    Args:
        path: the ``.safetensors`` file.

    Returns:
        (entries, metadata, data_start): ``entries`` maps tensor name to a dict with
        ``dtype`` (str), ``shape`` (tuple) and ``data_offsets`` (begin, end) relative to
        ``data_start``, the absolute file offset of the data section; ``metadata`` is the
        ``__metadata__`` dict of strings (empty when absent).

    Raises:
        CheckpointError: the file is missing, truncated or its header is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: safetensors file not found", path=path)
    with open(path, "rb") as f:
        file_size = path.stat().st_size
        head = f.read(_HEADER_LEN.size)
        if len(head) < _HEADER_LEN.size:
            raise CheckpointError(
                f"{path}: file is {file_size} bytes; a safetensors file starts with an "
                "8-byte header length (file empty or truncated)", path=path
            )
        (header_len,) = _HEADER_LEN.unpack(head)
        if header_len > file_size - _HEADER_LEN.size:
            raise CheckpointError(
                f"{path}: header length field says {header_len} bytes but only "
                f"{file_size - _HEADER_LEN.size} bytes follow (truncated, or not a "
                "safetensors file)", path=path
            )
        if header_len > MAX_SAFETENSORS_HEADER:
            raise CheckpointError(
                f"{path}: header is {header_len} bytes; at most {MAX_SAFETENSORS_HEADER} "
                "are allowed (docs/security.md)", path=path
            )
        raw_header = f.read(header_len)
    data_start = _HEADER_LEN.size + header_len
    entries, metadata = _parse_header(path, raw_header)
    _check_offsets(path, entries, file_size - data_start)
    return entries, metadata, data_start


def _parse_header(path, raw_header):
    """Decode the JSON header into (entries, metadata); check each entry's fields."""
    header = parse_json(raw_header, path, "header", CheckpointError, max_depth=3)
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is JSON but not an object", path=path)
    metadata = header.pop("__metadata__", None) or {}
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise CheckpointError(f"{path}: __metadata__ must be an object of strings, got "
                              f"{describe(metadata)}", path=path, key="__metadata__")
    entries = {}
    for name, info in header.items():
        if not (isinstance(info, dict) and "dtype" in info and "shape" in info
                and "data_offsets" in info):
            raise CheckpointError(
                f"{path}: header entry {name!r} lacks dtype/shape/data_offsets: "
                f"{describe(info)}", path=path, key=name
            )
        dtype, offsets = info["dtype"], info["data_offsets"]
        if not (isinstance(dtype, str) and dtype in _DTYPES):
            raise CheckpointError(
                f"{path}: tensor {name!r} has dtype {describe(dtype)}, which minitune cannot "
                f"read (supported: {', '.join(_DTYPES)})", path=path, key=name
            )
        shape = check_shape(info["shape"], _DTYPES[dtype].itemsize, path, name)
        if not (isinstance(offsets, list) and len(offsets) == 2 and is_int(offsets[0])
                and is_int(offsets[1]) and 0 <= offsets[0] <= offsets[1]):
            raise CheckpointError(
                f"{path}: tensor {name!r} has invalid data_offsets {describe(offsets)}",
                path=path, key=name
            )
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": tuple(offsets)}
    return entries, metadata


def _check_offsets(path, entries, data_size):
    """Each tensor's byte range must match its shape, and the ranges must tile the data
    section exactly: back to back from 0 to its end, as the reference reader requires.
    No overlap means the tensors together hold at most the bytes of the file."""
    position = 0
    for name, info in sorted(entries.items(), key=lambda item: item[1]["data_offsets"]):
        begin, end = info["data_offsets"]
        expected = _nbytes(info)
        if end - begin != expected:
            raise CheckpointError(
                f"{path}: tensor {name!r} ({info['dtype']}, shape {list(info['shape'])}) "
                f"needs {expected} bytes but its data_offsets [{begin}, {end}] span "
                f"{end - begin}", path=path, key=name
            )
        if end > data_size:
            raise CheckpointError(
                f"{path}: tensor {name!r} needs bytes [{begin}, {end}) of the data section "
                f"but the file holds only {data_size} data bytes (truncated file?)",
                path=path, key=name
            )
        if begin != position:
            problem = "overlaps the tensor before it" if begin < position else (
                f"leaves a gap: bytes [{position}, {begin}) belong to no tensor")
            raise CheckpointError(f"{path}: tensor {name!r} at data_offsets [{begin}, {end}] "
                                  f"{problem}", path=path, key=name)
        position = end
    if position != data_size:
        raise CheckpointError(f"{path}: {data_size - position} bytes after the last tensor "
                              "belong to no tensor (corrupt file)", path=path)


def _nbytes(info):
    return math.prod(info["shape"]) * _DTYPES[info["dtype"]].itemsize


def read_safetensors(path):
    """Read every tensor of a safetensors file into NumPy arrays.

    Args:
        path: the ``.safetensors`` file.

    Returns:
        dict name -> np.ndarray (in file order). F16/BF16 tensors come back as float32.

    Raises:
        CheckpointError: missing, truncated or corrupt file (the message names it).
    """
    path = Path(path)
    entries, _, data_start = read_safetensors_header(path)
    tensors = {}
    with open(path, "rb") as f:
        for name, info in entries.items():
            f.seek(data_start + info["data_offsets"][0])
            tensors[name] = _read_tensor(f, path, name, info)
    return tensors


def _read_tensor(f, path, name, info):
    """Read one tensor's bytes straight into its array; F16/BF16 -> float32, BOOL -> 0/1.

    The header check guaranteed that the size is the byte range present in the file.
    """
    stored = np.empty(info["shape"], dtype=_DTYPES[info["dtype"]])
    if stored.nbytes and f.readinto(memoryview(stored.reshape(-1).view(np.uint8))) != \
            stored.nbytes:  # the file shrank since its header was checked
        raise CheckpointError(f"{path}: tensor {name!r} is truncated", path=path, key=name)
    return to_compute_dtype(stored, bf16=info["dtype"] == "BF16")


def to_compute_dtype(stored, bf16=False):
    """A tensor as read from a checkpoint -> the array minitune computes with: bfloat16 bit
    patterns (``bf16``: uint16 bits) and float16 -> float32, bool bytes -> bool (any
    nonzero byte is True, as in torch), anything else in native byte order. Shared by the
    safetensors and the PyTorch readers."""
    if bf16:
        return bf16_to_float32(stored.astype("<u2", copy=False))
    if stored.dtype.kind == "f" and stored.dtype.itemsize == 2:
        return stored.astype(np.float32)
    if stored.dtype.kind == "b":
        return stored.view(np.uint8) != 0
    return stored.astype(stored.dtype.newbyteorder("="), copy=False)


def safetensors_metadata(path):
    """Return the ``__metadata__`` dict of a safetensors file (empty when absent)."""
    return read_safetensors_header(path)[1]


def write_safetensors(tensors, path, metadata=None):
    """Write NumPy arrays to a safetensors file, atomically.

    Args:
        tensors: dict name -> np.ndarray (any shape; copied to C order if needed).
        path: destination ``.safetensors`` file; replaced atomically if it exists.
        metadata: optional dict str -> str for ``__metadata__``. Defaults to
            ``{"format": "pt"}``, the value Hugging Face's loaders require to accept
            the file as PyTorch weights.

    Returns:
        The destination as a ``pathlib.Path``.
    """
    from safetensors.numpy import save

    if metadata is None:
        metadata = {"format": "pt"}
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(value, np.ndarray):
            raise TypeError(
                f"write_safetensors: {name!r} is a {type(value).__name__}, expected a NumPy "
                "array (move device arrays to the host first)"
            )
        # np.ascontiguousarray would turn a 0-d array into shape (1,); np.array keeps it.
        arrays[name] = value if value.flags.c_contiguous else np.array(value, order="C")
    return atomic_write_bytes(path, save(arrays, metadata=metadata))
