"""Read and write the safetensors format.

Layout of a ``.safetensors`` file (see docs/checkpoints.md)::

    [8 bytes]  N, the header length, unsigned little-endian 64-bit integer
    [N bytes]  JSON header: {"__metadata__": {str: str},            (optional)
                             "<name>": {"dtype": "F32", "shape": [d0, d1, ...],
                                        "data_offsets": [begin, end]}, ...}
    [rest]     the data section: raw little-endian tensor bytes, row-major;
               offsets are relative to the start of this section

The file holds only data, so reading it can never run code (unlike a pickle).
We validate the header ourselves first, so a truncated or corrupt file gives a
message naming the file and the problem, then read the tensors with the
``safetensors`` package. NumPy has no bfloat16, so BF16 tensors are decoded by
hand; BF16 and F16 are returned as float32, the dtype minitune computes in.
"""

import json
import struct
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .errors import CheckpointError

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
        ``__metadata__`` dict (empty when absent).

    Raises:
        CheckpointError: the file is missing, truncated or its header is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: safetensors file not found")
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_HEADER_LEN.size)
        if len(head) < _HEADER_LEN.size:
            raise CheckpointError(
                f"{path}: file is {file_size} bytes; a safetensors file starts with an "
                "8-byte header length (file empty or truncated)"
            )
        (header_len,) = _HEADER_LEN.unpack(head)
        if header_len > file_size - _HEADER_LEN.size:
            raise CheckpointError(
                f"{path}: header length field says {header_len} bytes but only "
                f"{file_size - _HEADER_LEN.size} bytes follow (truncated, or not a "
                "safetensors file)"
            )
        raw_header = f.read(header_len)
    data_start = _HEADER_LEN.size + header_len
    entries, metadata = _parse_header(path, raw_header)
    _check_offsets(path, entries, file_size - data_start)
    return entries, metadata, data_start


def _parse_header(path, raw_header):
    """Decode the JSON header into (entries, metadata); check each entry's fields."""
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is JSON but not an object")
    metadata = header.pop("__metadata__", None) or {}
    entries = {}
    for name, info in header.items():
        try:
            dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        except (TypeError, KeyError):
            raise CheckpointError(
                f"{path}: header entry {name!r} lacks dtype/shape/data_offsets: {info!r}"
            ) from None
        if dtype not in _DTYPES:
            raise CheckpointError(
                f"{path}: tensor {name!r} has dtype {dtype!r}, which minitune cannot read "
                f"(supported: {', '.join(_DTYPES)})"
            )
        if not _is_int_list(shape) or any(d < 0 for d in shape):
            raise CheckpointError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
        if not _is_int_list(offsets) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1]:
            raise CheckpointError(
                f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}"
            )
        entries[name] = {"dtype": dtype, "shape": tuple(shape), "data_offsets": tuple(offsets)}
    return entries, metadata


def _is_int_list(value):
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )


def _check_offsets(path, entries, data_size):
    """Each tensor's byte range must match its shape and lie inside the data section."""
    for name, info in entries.items():
        begin, end = info["data_offsets"]
        expected = int(np.prod(info["shape"], dtype=np.int64)) * _DTYPES[info["dtype"]].itemsize
        if end - begin != expected:
            raise CheckpointError(
                f"{path}: tensor {name!r} ({info['dtype']}, shape {list(info['shape'])}) "
                f"needs {expected} bytes but its data_offsets [{begin}, {end}] span "
                f"{end - begin}"
            )
        if end > data_size:
            raise CheckpointError(
                f"{path}: tensor {name!r} needs bytes [{begin}, {end}) of the data section "
                f"but the file holds only {data_size} data bytes (truncated file?)"
            )


def read_safetensors(path):
    """Read every tensor of a safetensors file into NumPy arrays.

    Args:
        path: the ``.safetensors`` file.

    Returns:
        dict name -> np.ndarray (in file order). F16/BF16 tensors come back as float32.

    Raises:
        CheckpointError: missing, truncated or corrupt file (the message names it).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    entries, _, data_start = read_safetensors_header(path)
    tensors = {}
    try:
        with safe_open(str(path), framework="numpy") as f:
            for name, info in entries.items():
                if info["dtype"] == "BF16":
                    tensors[name] = _read_bf16(path, info, data_start)
                else:
                    tensors[name] = f.get_tensor(name)
    except SafetensorError as e:
        raise CheckpointError(f"{path}: corrupt safetensors file ({e})") from None
    for name, array in tensors.items():
        if array.dtype == np.float16:
            tensors[name] = array.astype(np.float32)
    return tensors


def _read_bf16(path, info, data_start):
    """Read one BF16 tensor by hand (NumPy has no bfloat16) and decode it to float32."""
    begin, end = info["data_offsets"]
    with open(path, "rb") as f:
        f.seek(data_start + begin)
        raw = f.read(end - begin)
    bits = np.frombuffer(raw, dtype=_DTYPES["BF16"]).reshape(info["shape"])
    return bf16_to_float32(bits)


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
