"""Write PyTorch checkpoint files *without torch*, for testing minitune's reader.

A pickle is a program for a small stack machine. We emit the opcodes torch's pickler
would emit for a state dict (protocol 2), by hand, so tests do not need torch and
every byte of the file is under the test's control. See docs/checkpoints.md.

    entries = tensor_entries({"w": np.ones((2, 3), np.float32)})
    write_zip(path, state_dict_pickle(entries), entries.storages)
"""

import io
import struct
import tarfile
import zipfile
from dataclasses import dataclass, field

import numpy as np

# --- a tiny protocol-2 pickle emitter --------------------------------------------------


@dataclass(frozen=True)
class Global:
    """A ``GLOBAL module name`` opcode (what ``find_class`` is asked to resolve)."""

    module: str
    name: str


@dataclass(frozen=True)
class Call:
    """``func(*args)`` pickled as func, args-tuple, REDUCE."""

    func: object
    args: tuple


@dataclass(frozen=True)
class PersistentId:
    """An object stored outside the pickle: value, then BINPERSID."""

    value: object


@dataclass
class ODict:
    """``collections.OrderedDict()`` followed by SETITEMS with the given pairs."""

    items: list = field(default_factory=list)


def dumps(obj):
    """Serialize ``obj`` (built from the classes above and plain values) to pickle bytes."""
    out = io.BytesIO()
    out.write(b"\x80\x02")  # PROTO 2
    _emit(out, obj)
    out.write(b".")  # STOP
    return out.getvalue()


def _emit(out, obj):
    if obj is None:
        out.write(b"N")
    elif obj is True:
        out.write(b"\x88")
    elif obj is False:
        out.write(b"\x89")
    elif isinstance(obj, int):
        _emit_int(out, obj)
    elif isinstance(obj, str):
        data = obj.encode("utf-8")
        out.write(b"X" + struct.pack("<I", len(data)) + data)  # BINUNICODE
    elif isinstance(obj, tuple):
        out.write(b"(")  # MARK
        for item in obj:
            _emit(out, item)
        out.write(b"t")  # TUPLE
    elif isinstance(obj, list):
        out.write(b"](")  # EMPTY_LIST MARK
        for item in obj:
            _emit(out, item)
        out.write(b"e")  # APPENDS
    elif isinstance(obj, dict):
        out.write(b"}(")  # EMPTY_DICT MARK
        for key, value in obj.items():
            _emit(out, key)
            _emit(out, value)
        out.write(b"u")  # SETITEMS
    elif isinstance(obj, Global):
        out.write(b"c" + f"{obj.module}\n{obj.name}\n".encode("ascii"))
    elif isinstance(obj, Call):
        _emit(out, obj.func)
        _emit(out, tuple(obj.args))
        out.write(b"R")  # REDUCE
    elif isinstance(obj, PersistentId):
        _emit(out, obj.value)
        out.write(b"Q")  # BINPERSID
    elif isinstance(obj, ODict):
        _emit(out, Call(Global("collections", "OrderedDict"), ()))
        out.write(b"(")
        for key, value in obj.items:
            _emit(out, key)
            _emit(out, value)
        out.write(b"u")
    else:
        raise TypeError(f"cannot emit {type(obj).__name__}")


def _emit_int(out, value):
    if 0 <= value < 256:
        out.write(b"K" + bytes([value]))  # BININT1
    elif -(2**31) <= value < 2**31:
        out.write(b"J" + struct.pack("<i", value))  # BININT
    else:
        n = (value.bit_length() + 8) // 8
        out.write(b"\x8a" + bytes([n]) + value.to_bytes(n, "little", signed=True))  # LONG1


# --- state dicts ------------------------------------------------------------------------

STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


@dataclass
class Entry:
    """One state dict entry: a tensor view of storage ``key``."""

    name: str
    storage_name: str
    key: str
    numel: int  # elements of the whole storage
    offset: int
    size: tuple
    stride: tuple


@dataclass
class Entries:
    items: list
    storages: dict  # key -> raw little-endian bytes


def to_bf16_bits(array):
    """float32 -> bfloat16 bit patterns (truncation; exact for values bf16 can hold)."""
    return (np.asarray(array, np.float32).view(np.uint32) >> 16).astype("<u2")


def tensor_entries(tensors, bf16=(), key_prefix=""):
    """One contiguous storage per array; names in ``bf16`` are stored as bfloat16."""
    items, storages = [], {}
    for i, (name, array) in enumerate(tensors.items()):
        array = np.array(array, order="C")  # keeps 0-d arrays 0-d
        key = f"{key_prefix}{i}"
        if name in bf16:
            storage_name, raw = "BFloat16Storage", to_bf16_bits(array).tobytes()
        else:
            storage_name = STORAGE_NAMES[array.dtype]
            raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        stride = tuple(s // array.itemsize for s in array.strides)
        items.append(Entry(name, storage_name, key, array.size, 0, array.shape, stride))
        storages[key] = raw
    return Entries(items, storages)


def rebuild_call(entry, legacy=False):
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, {})``."""
    pid = ("storage", Global("torch", entry.storage_name), entry.key, "cpu", entry.numel)
    if legacy:
        pid = pid + (None,)  # view_metadata
    args = (PersistentId(pid), entry.offset, tuple(entry.size), tuple(entry.stride), False,
            ODict())
    return Call(Global("torch._utils", "_rebuild_tensor_v2"), args)


def state_dict_pickle(entries, legacy=False, extra_items=()):
    """Pickle bytes of an OrderedDict name -> tensor, as torch.save writes it."""
    items = [(e.name, rebuild_call(e, legacy)) for e in entries.items] + list(extra_items)
    return dumps(ODict(items))


# --- containers -------------------------------------------------------------------------


def write_zip(path, pickle_bytes, storages, archive="archive", byteorder="little"):
    """The torch >= 1.6 layout: <archive>/data.pkl, <archive>/data/<key>, byteorder."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{archive}/data.pkl", pickle_bytes)
        if byteorder is not None:
            zf.writestr(f"{archive}/byteorder", byteorder)
        for key, raw in storages.items():
            zf.writestr(f"{archive}/data/{key}", raw)
        zf.writestr(f"{archive}/version", "3\n")


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def legacy_header(little_endian=True):
    """The first three pickles of a legacy file: magic, protocol 1001, sys_info."""
    sys_info = {"protocol_version": 1001, "little_endian": little_endian,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return dumps(LEGACY_MAGIC) + dumps(1001) + dumps(sys_info)


def write_legacy(path, pickle_bytes, storages, itemsizes):
    """The ``_use_new_zipfile_serialization=False`` stream; ``itemsizes``: key -> bytes."""
    keys = sorted(storages)
    with open(path, "wb") as f:
        f.write(legacy_header())
        f.write(pickle_bytes)
        f.write(dumps(list(keys)))
        for key in keys:
            raw = storages[key]
            f.write(struct.pack("<q", len(raw) // itemsizes[key]))
            f.write(raw)


def itemsizes(entries):
    sizes = {"DoubleStorage": 8, "LongStorage": 8, "FloatStorage": 4, "IntStorage": 4,
             "HalfStorage": 2, "BFloat16Storage": 2, "ShortStorage": 2}
    return {e.key: sizes.get(e.storage_name, 1) for e in entries.items}


def write_tar(path, entries):
    """The torch < 0.4 tar layout: members storages, tensors, pickle."""
    sizes = itemsizes(entries)
    storages = io.BytesIO()
    storages.write(dumps(len(entries.storages)))
    by_key = {e.key: e for e in entries.items}
    for key, raw in entries.storages.items():
        storages.write(dumps((key, "cpu", Global("torch", by_key[key].storage_name))))
        storages.write(struct.pack("<q", len(raw) // sizes[key]) + raw)
    storages.write(dumps([]))  # no storage views
    tensors = io.BytesIO()
    tensors.write(dumps(len(entries.items)))
    for i, e in enumerate(entries.items):
        tensor_type = Global("torch", e.storage_name.replace("Storage", "Tensor"))
        tensors.write(dumps((f"t{i}", e.key, tensor_type)))
        ndim = len(e.size)
        tensors.write(struct.pack("<i", ndim) + b"\0" * 4)
        tensors.write(struct.pack(f"<{ndim}q", *e.size) + struct.pack(f"<{ndim}q", *e.stride))
        tensors.write(struct.pack("<q", e.offset))
    main = dumps(ODict([(e.name, PersistentId(f"t{i}")) for i, e in enumerate(entries.items)]))
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        sys_info = dumps({"protocol_version": 1000, "little_endian": True})
        for name, data in [("sys_info", sys_info), ("pickle", main),
                           ("storages", storages.getvalue()), ("tensors", tensors.getvalue())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
