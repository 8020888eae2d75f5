"""Read PyTorch ``pytorch_model.bin`` checkpoints without importing torch.

``torch.save(state_dict, f)`` writes a *pickle* of the state dict in which every tensor
is reduced to a call ``torch._utils._rebuild_tensor_v2(storage, storage_offset, size,
stride, requires_grad, backward_hooks)`` and every storage (the flat buffer behind one or
more tensors) is replaced by a *persistent id* ``('storage', torch.FloatStorage, key,
location, numel)``; the raw bytes of the storages are kept outside the pickle. Three
container layouts exist (docs/checkpoints.md has diagrams):

* zip (torch >= 1.6, the default): ``<archive>/data.pkl`` holds the pickle,
  ``<archive>/data/<key>`` the bytes of storage ``key``, ``<archive>/byteorder`` says
  ``little`` or ``big``.
* legacy (``_use_new_zipfile_serialization=False``): one stream of five pickles --
  magic number, protocol version, sys_info, the main pickle, the list of storage
  keys -- followed by each storage as a little-endian int64 element count and its bytes.
* tar (torch < 0.4): a tar file with members ``storages``, ``tensors`` and ``pickle``.

Unpickling is a small stack machine that can import and call *any* global (opcodes
GLOBAL/STACK_GLOBAL then REDUCE), so a malicious ``.bin`` can run ``os.system`` on load.
minitune runs that machine itself (``pickle_vm.py``): ``_find_global`` maps the handful
of globals a state dict needs to our own NumPy-building stand-ins and raises
``UnsafeCheckpointError`` for every other name, before anything is called. Tensors come
out of unpickling as ``_TensorRef`` records; once the storage bytes are available each
one becomes a NumPy array (a bounds-checked ``as_strided`` view of its storage, then
copied).

Sizes found in the file are never trusted: a pickle is at most MAX_PICKLE_BYTES, a
storage's byte count is compared with the bytes present before it is read (a zip
member is read with that count as its limit, so a compression bomb stops there), and
the arrays built may hold at most twice the bytes of the storages (tied weights share
a storage), so the memory a file can make minitune use is a small multiple of its size.
"""

import collections
import dataclasses
import inspect
import lzma
import math
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import CheckpointError, UnsafeCheckpointError
from .limits import (MAX_PICKLE_BYTES, check_shape, describe, is_int, open_capped, read_limited,
                     shorten)
from .pickle_vm import PickleTruncated, run_pickle
from .safetensors_io import to_compute_dtype

# First pickle of a legacy file, and the second (torch.serialization constants).
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# torch storage class name -> dtype of its elements as stored (little-endian).
# BFloat16 has no NumPy dtype: its raw 16-bit patterns are read as uint16.
STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "ComplexFloatStorage": np.dtype("<c8"),
    "ComplexDoubleStorage": np.dtype("<c16"),
}

# Tensor type names the tar format's "tensors" member may name: its allow-list of globals.
_TAR_TENSOR_TYPES = [name.replace("Storage", "Tensor") for name in STORAGE_DTYPES]


# --- stand-ins for the torch globals a state dict pickle refers to --------------------


@dataclasses.dataclass(frozen=True)
class StorageType:
    """Stands in for a class such as ``torch.FloatStorage``: just a name and a dtype."""

    name: str
    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _Marker:
    """Stands in for a torch class only used as a type tag (``torch.Tensor``...)."""

    name: str


@dataclasses.dataclass
class _StorageRef:
    """A storage named by a persistent id; its bytes are read later.

    ``view_offset``/``view_numel`` describe a legacy storage view (a slice of a root
    storage, in elements); for a plain storage they are 0 and ``numel``.
    """

    key: str
    storage_type: StorageType
    numel: int
    view_offset: int
    view_numel: int


@dataclasses.dataclass
class _TensorRef:
    """A tensor as described by ``_rebuild_tensor_v2``; turned into an array later."""

    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: record where the tensor lives."""
    return _make_tensor_ref(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    """Stand-in for the older ``torch._utils._rebuild_tensor`` (same arguments)."""
    return _make_tensor_ref(storage, storage_offset, size, stride)


def _make_tensor_ref(storage, offset, size, stride):
    if not isinstance(storage, _StorageRef):
        raise CheckpointError(f"tensor rebuilt from {describe(storage)}, not a storage")
    if not (_is_int_tuple(size) and _is_int_tuple(stride) and len(size) == len(stride)
            and is_int(offset)):
        raise CheckpointError(f"malformed tensor: offset={describe(offset)} "
                              f"size={describe(size)} stride={describe(stride)}")
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad, backward_hooks):
    """Stand-in for ``torch._utils._rebuild_parameter``: a Parameter is its data."""
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    """Stand-in for ``torch._utils._rebuild_parameter_with_state``."""
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    """Stand-in for ``torch._tensor._rebuild_from_type_v2`` (tensor subclasses).

    Only our own rebuild functions and the Tensor/Parameter type tags are accepted,
    so this cannot be used to call anything else.
    """
    if func not in _REBUILD_FUNCTIONS or not isinstance(new_type, _Marker):
        raise CheckpointError(f"_rebuild_from_type_v2 with unsupported {describe(func)}/"
                              f"{describe(new_type)}")
    if not isinstance(args, tuple):
        raise CheckpointError(f"_rebuild_from_type_v2 with arguments {describe(args)}")
    low, high = _CALLS[func]
    if not low <= len(args) <= high:
        raise CheckpointError(f"_rebuild_from_type_v2: {func.__name__} takes {low} to {high} "
                              f"arguments, got {len(args)}")
    return func(*args)


def _ordered_dict(*args):
    """Stand-in for ``collections.OrderedDict``: torch calls it without arguments and
    fills it with SETITEMS, whose keys the pickle machine checks."""
    if args:
        raise CheckpointError("OrderedDict called with arguments; torch never does that")
    return collections.OrderedDict()


_REBUILD_FUNCTIONS = (_rebuild_tensor_v2, _rebuild_tensor, _rebuild_parameter,
                      _rebuild_parameter_with_state)

# The complete list of globals a state dict pickle may name, mapped to stand-ins.
# Anything else -- os.system, builtins.eval/exec/getattr, torch.storage._load_from_bytes
# (it would unpickle a nested, unrestricted pickle) -- raises UnsafeCheckpointError.
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _Marker("torch.Tensor"),
    ("torch.nn.parameter", "Parameter"): _Marker("torch.nn.parameter.Parameter"),
    **{("torch", name): StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()},
}


def _arity(func):
    """(fewest, most) positional arguments ``func`` accepts."""
    params = inspect.signature(func).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 0, 8
    return sum(p.default is p.empty for p in params), len(params)


# The functions the pickle machine may call (REDUCE), with their argument counts.
_CALLS = {f: _arity(f) for f in ALLOWED_GLOBALS.values() if inspect.isfunction(f)}


def _unpickle(data, source, persistent_load=None, extra_globals=None, start=0,
              more_to_read=False):
    """Run the pickle at ``data[start]`` with only the allowed globals.

    Args:
        more_to_read: ``data`` may be only the start of the pickle: raise
            PickleTruncated (rather than a plain CheckpointError) if it ends early.

    Returns:
        (value, end): the value and the offset after the pickle's STOP.
    """
    extra_globals = extra_globals or {}

    def find_global(module, name):
        key = (module, name)
        found = ALLOWED_GLOBALS.get(key, extra_globals.get(key))
        if found is not None:
            return found
        if module == "torch" and name.endswith("Storage"):
            raise CheckpointError(f"{source}: unsupported storage type torch.{name}")
        raise UnsafeCheckpointError(
            f"{source}: refusing to load: the pickle asks for the global "
            f"{module}.{name}, which a state dict of tensors never needs (a pickle can "
            "run any function it names, so only tensor-rebuilding globals are allowed). "
            "Nothing was executed. If you trust this file, convert it to safetensors."
        )

    def checked_persistent_load(pid):
        if persistent_load is None:
            raise CheckpointError(f"{source}: unexpected persistent id {describe(pid)}")
        return persistent_load(pid)

    try:
        return run_pickle(data, source, find_global, _CALLS, checked_persistent_load, start)
    except PickleTruncated as e:
        if more_to_read:
            raise
        raise CheckpointError(str(e), path=source) from None
    except CheckpointError as e:
        if str(e).startswith(str(source)):
            raise
        raise type(e)(f"{source}: {e}", path=source) from None


def _unpickle_from(f, source, persistent_load=None, extra_globals=None):
    """Unpickle from the current position of file ``f``; leave it just after STOP.

    The pickle is read into memory first, 64 KiB at a time up to MAX_PICKLE_BYTES, so
    the machine works on bytes whose length it knows.
    """
    begin = f.tell()
    size = 1 << 16
    while True:
        f.seek(begin)
        data = f.read(size)
        try:
            value, end = _unpickle(data, source, persistent_load, extra_globals,
                                   more_to_read=True)
        except PickleTruncated as e:
            if len(data) < size:  # the file ends inside the pickle
                raise CheckpointError(str(e), path=source) from None
            if size >= MAX_PICKLE_BYTES:
                raise CheckpointError(f"{source}: pickle is longer than {MAX_PICKLE_BYTES} "
                                      "bytes (docs/security.md)", path=source) from None
            size = min(size * 8, MAX_PICKLE_BYTES)
            continue
        f.seek(begin + end)
        return value


# --- public entry point ---------------------------------------------------------------


def read_torch_bin(path):
    """Read a PyTorch ``.bin``/``.pt`` state dict into NumPy arrays, without torch.

    Handles the zip format, the legacy stream format and the old tar format. Only
    the globals in ``ALLOWED_GLOBALS`` may appear in the pickle.

    Args:
        path: checkpoint file.

    Returns:
        dict name -> np.ndarray, in the checkpoint's order. float16 and bfloat16
        tensors are returned as float32; big-endian data is converted to native order.

    Raises:
        UnsafeCheckpointError: the pickle names a global outside the allowed list.
        CheckpointError: missing, truncated or corrupt file, or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: PyTorch checkpoint file not found", path=path)
    if zipfile.is_zipfile(path):
        obj, storages = _read_zip(path)
    elif _has_legacy_magic(path):
        obj, storages = _read_legacy(path)
    else:
        obj, storages = _read_tar(path)
    return _to_state_dict(path, obj, storages)


def _to_state_dict(path, obj, storages):
    """Check ``obj`` is a mapping name -> tensor and turn each tensor into an array."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds {describe(obj)}, not a state dict", path=path)
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, _TensorRef))]
    if bad:
        raise CheckpointError(
            f"{path}: not a plain state dict; entries that are not name -> tensor: "
            f"{', '.join(describe(k) for k in bad[:10])}", path=path
        )
    _check_total_size(path, obj, storages)
    return {name: _materialize(path, name, ref, storages) for name, ref in obj.items()}


def _check_total_size(path, refs, storages):
    """The arrays to build may hold at most twice the storages' bytes.

    Tensors of a state dict are disjoint slices of their storages, except tied weights
    (an embedding and a decoder sharing one storage). Without this bound, a 1 MB file
    could describe a thousand tensors viewing the same 1 MB storage.
    """
    stored = sum(array.nbytes for array in storages.values())
    wanted = 0
    for ref in refs.values():
        if is_int(ref.storage.view_numel) and _is_int_tuple(ref.size):
            itemsize = ref.storage.storage_type.dtype.itemsize
            wanted += math.prod(max(d, 0) for d in ref.size) * itemsize
    if wanted > 2 * stored + (1 << 20):
        raise CheckpointError(f"{path}: its tensors would take {wanted} bytes, more than twice "
                              f"the {stored} bytes of storage in the file", path=path)


# --- zip format -----------------------------------------------------------------------

# Errors the zipfile and tarfile modules (and the decompressors under them) raise for
# corrupt archives; our own CheckpointError, a ValueError too, is re-raised unchanged.
_ARCHIVE_ERRORS = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, OSError,
                   EOFError, ValueError, NotImplementedError, RuntimeError, struct.error,
                   OverflowError, KeyError, IndexError)

# A zip's storages may inflate to at most this many times the file's size. torch stores
# them uncompressed (ratio 1); the bound stops a compression bomb before it fills memory.
MAX_INFLATION = 8


def _read_zip(path):
    """Unpickle ``<archive>/data.pkl``; return (object, storage arrays by key)."""
    try:
        with open_capped(path) as f, zipfile.ZipFile(f) as zf:
            return _read_zip_members(path, zf, budget=MAX_INFLATION * f.size + (1 << 20))
    except CheckpointError:
        raise
    except _ARCHIVE_ERRORS as e:
        raise CheckpointError(f"{path}: corrupt zip archive ({type(e).__name__}: "
                              f"{shorten(str(e))})", path=path) from None


def _read_zip_members(path, zf, budget):
    names = set(zf.namelist())
    pickles = sorted(n for n in names if n.endswith("data.pkl") and n.count("/") == 1)
    if not pickles:
        raise CheckpointError(
            f"{path}: zip archive without <archive>/data.pkl; not a torch.save file", path=path
        )
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
        raw = read_limited(zf.open(prefix + "byteorder"), 16, path, "byteorder record")
        byteorder = raw.decode("ascii", "replace").strip()
    if byteorder not in ("little", "big"):
        raise CheckpointError(f"{path}: unknown byteorder record {byteorder!r}", path=path)
    refs = []
    data = read_limited(zf.open(pickles[0]), MAX_PICKLE_BYTES, path, pickles[0])
    obj, _ = _unpickle(data, f"{path}:{pickles[0]}", _storage_pid_loader(refs))
    storages = {}
    for ref in refs:
        if ref.key in storages:
            continue
        member = f"{prefix}data/{ref.key}"
        if member not in names:
            raise CheckpointError(f"{path}: storage record {member} is missing", path=path)
        expected = ref.numel * _storage_dtype(path, ref.storage_type).itemsize
        if expected > budget:
            raise CheckpointError(
                f"{path}:{member}: storage of {ref.numel} elements needs {expected} bytes, "
                f"more than the archive can hold (at most {MAX_INFLATION}x its size)",
                path=path)
        budget -= expected
        raw = read_limited(zf.open(member), expected, path, f"storage record {member}")
        storages[ref.key] = _storage_array(f"{path}:{member}", raw, ref.storage_type,
                                           ref.numel, byteorder)
    return obj, storages


def _storage_pid_loader(refs):
    """persistent_load for zip and legacy pickles: ids -> _StorageRef (collected in refs).

    Zip ids are ``('storage', storage_type, key, location, numel)``; legacy ids add
    ``view_metadata``: None, or ``(view_key, offset, numel)`` for a slice of the root.
    A key used twice must name the same storage type and size both times.
    """
    seen = {}

    def persistent_load(pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {describe(pid)} "
                                  "(expected a storage)")
        _, storage_type, key, _location, numel = pid[:5]
        key = _storage_key(key)
        if not isinstance(storage_type, StorageType) or not is_int(numel) or numel < 0:
            raise CheckpointError(f"malformed storage id {describe(pid)}")
        if seen.setdefault(key, (storage_type, numel)) != (storage_type, numel):
            raise CheckpointError(f"storage {key!r} is described twice, differently")
        ref = _StorageRef(key, storage_type, numel, 0, numel)
        view = pid[5] if len(pid) == 6 else None
        if view is not None:
            if not (isinstance(view, tuple) and len(view) == 3 and is_int(view[1])
                    and is_int(view[2]) and view[1] >= 0 and view[2] >= 0):
                raise CheckpointError(f"malformed storage view {describe(view)}")
            ref = _StorageRef(key, storage_type, numel, view[1], view[2])
        refs.append(ref)
        return ref

    return persistent_load


def _storage_key(key):
    """Storage keys are strings ("0", "94823..."); very old files used integers."""
    if is_int(key):
        return str(key)
    if not isinstance(key, str) or len(key) > 256:
        raise CheckpointError(f"storage key {describe(key)} is not a short string")
    return key


# --- legacy stream format -------------------------------------------------------------


def _has_legacy_magic(path):
    """True if the file starts with a pickled LEGACY_MAGIC_NUMBER."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    try:
        return _unpickle(head, str(path))[0] == LEGACY_MAGIC_NUMBER
    except UnsafeCheckpointError:
        raise  # a bare malicious pickle: say so rather than "not a checkpoint"
    except CheckpointError:
        return False


def _read_legacy(path):
    """Read the five pickles and then the raw storages of a legacy stream."""
    with open_capped(path) as f:
        _unpickle_from(f, f"{path} (magic number)")
        version = _unpickle_from(f, f"{path} (protocol version)")
        if version != LEGACY_PROTOCOL_VERSION:
            raise CheckpointError(
                f"{path}: legacy protocol version {describe(version)}, expected "
                f"{LEGACY_PROTOCOL_VERSION}", path=path
            )
        sys_info = _unpickle_from(f, f"{path} (sys_info)")
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            # Legacy files store storages little-endian whatever the machine; the
            # flag only matters for files written by very old big-endian builds.
            raise CheckpointError(f"{path}: written on a big-endian machine; not supported",
                                  path=path)
        refs = []
        obj = _unpickle_from(f, f"{path} (main pickle)", _storage_pid_loader(refs))
        keys = _unpickle_from(f, f"{path} (storage keys)")
        if not isinstance(keys, list):
            raise CheckpointError(f"{path}: storage key list is {describe(keys)}", path=path)
        types = {ref.key: ref for ref in refs}
        storages = {}
        for key in keys:
            key = _storage_key(key)
            if key not in types:
                raise CheckpointError(f"{path}: storage {key!r} listed but never referenced",
                                      path=path)
            if key in storages:
                raise CheckpointError(f"{path}: storage {key!r} listed twice", path=path)
            storage_type = types[key].storage_type
            storages[key] = _read_counted_storage(f, f"{path} (storage {key})", storage_type)
    return obj, storages


def _read_counted_storage(f, source, storage_type):
    """Read an int64 element count, then that many elements of ``storage_type``.

    The count is compared with the bytes left in ``f`` before anything is allocated.
    """
    head = f.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{source}: file ends before the storage (truncated)")
    (count,) = struct.unpack("<q", head)
    dtype = _storage_dtype(source, storage_type)
    if count < 0:
        raise CheckpointError(f"{source}: negative element count {count}")
    left = _bytes_left(f)
    if count * dtype.itemsize > left:
        raise CheckpointError(
            f"{source}: needs {count * dtype.itemsize} bytes, file has {left} (truncated)"
        )
    array = np.empty(count, dtype=dtype)
    if f.readinto(memoryview(array.view(np.uint8))) != array.nbytes:
        raise CheckpointError(f"{source}: truncated")
    return array


def _bytes_left(f):
    here = f.tell()
    end = f.seek(0, 2)
    f.seek(here)
    return end - here


# --- tar format (torch < 0.4) ---------------------------------------------------------


def _read_tar(path):
    """Read the members ``storages``, ``tensors`` and ``pickle`` of a tar checkpoint.

    Here the main pickle's persistent ids are tensor keys, and the tensors' geometry
    is stored in the ``tensors`` member instead of in ``_rebuild_tensor_v2`` calls.
    A file that is not even a tar archive is "not a PyTorch checkpoint".
    """
    tensor_tags = {("torch", name): _Marker(f"torch.{name}") for name in _TAR_TENSOR_TYPES}
    try:
        with open_capped(path) as f:
            try:
                tar = tarfile.open(fileobj=f, mode="r:")
            except _ARCHIVE_ERRORS:
                raise CheckpointError(
                    f"{path}: not a PyTorch checkpoint (neither a zip archive, a legacy "
                    "torch.save stream nor a tar archive)", path=path) from None
            with tar:
                storages, refs = _read_tar_storages(path, _tar_member(path, tar, "storages"))
                tensors = _read_tar_tensors(
                    path, _tar_member(path, tar, "tensors"), refs, tensor_tags
                )

                def persistent_load(saved_id):
                    key = _storage_key(saved_id)
                    if key not in tensors:
                        raise CheckpointError(f"pickle refers to unknown tensor {key!r}")
                    return tensors[key]

                obj = _unpickle_from(_tar_member(path, tar, "pickle"), f"{path}:pickle",
                                     persistent_load)
    except CheckpointError:
        raise
    except _ARCHIVE_ERRORS as e:
        raise CheckpointError(f"{path}: corrupt tar archive ({type(e).__name__}: "
                              f"{shorten(str(e))})", path=path) from None
    return obj, storages


def _tar_member(path, tar, name):
    """Member ``name`` as a seekable file of known size."""
    try:
        member = tar.getmember(name)
    except KeyError:
        member = None
    if member is None or not member.isfile():
        raise CheckpointError(f"{path}: tar checkpoint lacks the file member {name!r}",
                              path=path)
    if member.offset_data + member.size > tar.fileobj.size:
        # sizes below are compared with the member's size: it must be bytes present
        raise CheckpointError(f"{path}: tar member {name!r} declares {member.size} bytes but "
                              "the file ends before them (truncated)", path=path)
    return tar.extractfile(member)


def _read_tar_storages(path, f):
    """Member ``storages``: a count, then per storage a pickled (key, location, type)
    followed by its counted bytes; then a pickled list of views (target, root, offset,
    numel), each a slice of a root storage in elements.

    Returns:
        (arrays, refs): key -> 1-D array of root storages; key -> _StorageRef for
        every storage and view.
    """
    source = f"{path}:storages"
    count = _unpickle_from(f, source)
    if not is_int(count) or not 0 <= count <= _bytes_left(f) // 8:
        raise CheckpointError(f"{source}: storage count {describe(count)} is not possible")
    arrays, refs = {}, {}
    for _ in range(count):
        record = _unpickle_from(f, source)
        if not (isinstance(record, tuple) and len(record) == 3):
            raise CheckpointError(f"{source}: storage record {describe(record)} is not "
                                  "(key, location, type)")
        key, storage_type = _storage_key(record[0]), record[2]
        if not isinstance(storage_type, StorageType):
            raise CheckpointError(f"{source}: storage {key!r} has type {describe(storage_type)}")
        arrays[key] = _read_counted_storage(f, f"{source} (storage {key})", storage_type)
        refs[key] = _StorageRef(key, storage_type, arrays[key].size, 0, arrays[key].size)
    views = _unpickle_from(f, source)
    if not isinstance(views, list):
        raise CheckpointError(f"{source}: storage views are {describe(views)}, not a list")
    for view in views:
        if not (isinstance(view, tuple) and len(view) == 4 and is_int(view[2])
                and is_int(view[3]) and view[2] >= 0 and view[3] >= 0):
            raise CheckpointError(f"{source}: malformed storage view {describe(view)}")
        target, root, offset, numel = _storage_key(view[0]), _storage_key(view[1]), *view[2:]
        if root not in refs:
            raise CheckpointError(f"{source}: view of unknown storage {root!r}")
        root = refs[root]
        refs[target] = _StorageRef(root.key, root.storage_type, root.numel, offset, numel)
    return arrays, refs


def _read_tar_tensors(path, f, storage_refs, extra_globals):
    """Member ``tensors``: a count, then per tensor a pickled (key, storage id, type)
    followed by its raw geometry: int32 ndim, 4 padding bytes, ndim int64 sizes, ndim
    int64 strides, int64 storage offset (all little-endian).
    """
    source = f"{path}:tensors"
    count = _unpickle_from(f, source, extra_globals=extra_globals)
    if not is_int(count) or not 0 <= count <= _bytes_left(f) // 16:
        raise CheckpointError(f"{source}: tensor count {describe(count)} is not possible")
    tensors = {}
    for _ in range(count):
        record = _unpickle_from(f, source, extra_globals=extra_globals)
        if not (isinstance(record, tuple) and len(record) == 3):
            raise CheckpointError(f"{source}: tensor record {describe(record)} is not "
                                  "(key, storage id, type)")
        key, storage_id = _storage_key(record[0]), _storage_key(record[1])
        if storage_id not in storage_refs:
            raise CheckpointError(f"{source}: tensor {key!r} uses unknown storage "
                                  f"{storage_id!r}")
        (ndim,) = struct.unpack("<i", _read_exact(f, 4, source))
        if not 0 <= ndim <= 64:
            raise CheckpointError(f"{source}: tensor {key!r} has {ndim} dimensions")
        _read_exact(f, 4, source)
        size = struct.unpack(f"<{ndim}q", _read_exact(f, 8 * ndim, source))
        stride = struct.unpack(f"<{ndim}q", _read_exact(f, 8 * ndim, source))
        (offset,) = struct.unpack("<q", _read_exact(f, 8, source))
        tensors[key] = _TensorRef(storage_refs[storage_id], offset, size, stride)
    return tensors


def _read_exact(f, n, source):
    data = f.read(n)
    if len(data) != n:
        raise CheckpointError(f"{source}: truncated (wanted {n} bytes, got {len(data)})")
    return data


# --- storages and tensors -------------------------------------------------------------


def _storage_dtype(source, storage_type):
    """The element dtype of a storage type, looked up by name in STORAGE_DTYPES."""
    if not isinstance(storage_type, StorageType) or storage_type.name not in STORAGE_DTYPES:
        raise CheckpointError(f"{source}: invalid storage type {describe(storage_type)}")
    return STORAGE_DTYPES[storage_type.name]


def _storage_array(source, raw, storage_type, numel, byteorder):
    """Bytes of one storage -> 1-D array of ``numel`` elements of its stored dtype."""
    dtype = _storage_dtype(source, storage_type)
    if byteorder == "big":
        dtype = dtype.newbyteorder(">")
    expected = numel * dtype.itemsize
    if len(raw) != expected:
        raise CheckpointError(
            f"{source}: storage has {len(raw)} bytes, expected {expected} "
            f"({numel} x {storage_type.name} elements; truncated or corrupt)"
        )
    return np.frombuffer(raw, dtype=dtype)


def _materialize(path, name, ref, storages):
    """Build the array of tensor ``name`` from its storage, offset, size and stride.

    Every index the strided view can touch is checked against the storage bounds
    first: ``as_strided`` itself does no checking and would read foreign memory.
    """
    where = f"{path}: tensor {name!r}"
    root = storages.get(ref.storage.key)
    if root is None:
        raise CheckpointError(f"{where}: its storage {ref.storage.key!r} is not in the file",
                              path=path, key=name)
    start, count = ref.storage.view_offset, ref.storage.view_numel
    if start + count > root.size:
        raise CheckpointError(f"{where}: storage view [{start}, {start + count}) lies outside "
                              f"its storage of {root.size} elements", path=path, key=name)
    storage = root[start:start + count]
    size, stride, offset = ref.size, ref.stride, ref.offset
    if any(d < 0 for d in size) or any(s < 0 for s in stride) or offset < 0:
        raise CheckpointError(
            f"{where} has negative size/stride/offset (size {describe(size)}, stride "
            f"{describe(stride)}, offset {describe(offset)})", path=path, key=name
        )
    check_shape(size, storage.itemsize, path, name)
    numel = math.prod(size)
    if numel > storage.size:
        raise CheckpointError(
            f"{where} has {numel} elements but its storage only "
            f"{storage.size}; overlapping (broadcast) tensors are not state dict entries",
            path=path, key=name
        )
    if numel == 0:
        array = np.empty(size, dtype=storage.dtype)
    else:
        last = offset + sum((d - 1) * s for d, s in zip(size, stride))
        if last >= storage.size:
            raise CheckpointError(
                f"{where} (size {list(size)}, stride {describe(stride)}, offset {offset}) "
                f"reaches element {last} of a storage with {storage.size} elements",
                path=path, key=name
            )
        itemsize = storage.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage[offset:], shape=size, strides=[s * itemsize for s in stride],
            writeable=False,
        )
        array = np.array(view, order="C")
    return to_compute_dtype(array, bf16=ref.storage.storage_type.name == "BFloat16Storage")


def _is_int_tuple(value):
    return isinstance(value, (tuple, list)) and all(is_int(v) for v in value)
