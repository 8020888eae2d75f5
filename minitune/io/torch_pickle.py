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
``RestrictedUnpickler.find_class`` therefore maps the handful of globals a state dict
needs to our own NumPy-building stand-ins and raises ``UnsafeCheckpointError`` for every
other name, before anything is called. Tensors come out of unpickling as ``_TensorRef``
records; once the storage bytes are available each one becomes a NumPy array (a bounds-
checked ``as_strided`` view of its storage, then copied).
"""

import collections
import dataclasses
import pickle
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import CheckpointError, UnsafeCheckpointError
from .safetensors_io import bf16_to_float32

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
        raise CheckpointError(f"tensor rebuilt from a {type(storage).__name__}, not a storage")
    if not (_is_int_tuple(size) and _is_int_tuple(stride) and len(size) == len(stride)
            and _is_int(offset)):
        raise CheckpointError(
            f"malformed tensor: offset={offset!r} size={size!r} stride={stride!r}"
        )
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
        raise CheckpointError(f"_rebuild_from_type_v2 with unsupported {func!r}/{new_type!r}")
    return func(*args)


_REBUILD_FUNCTIONS = (_rebuild_tensor_v2, _rebuild_tensor, _rebuild_parameter,
                      _rebuild_parameter_with_state)

# The complete list of globals a state dict pickle may name, mapped to stand-ins.
# Anything else -- os.system, builtins.eval/exec/getattr, torch.storage._load_from_bytes
# (it would unpickle a nested, unrestricted pickle) -- raises UnsafeCheckpointError.
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _Marker("torch.Tensor"),
    ("torch.nn.parameter", "Parameter"): _Marker("torch.nn.parameter.Parameter"),
    **{("torch", name): StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only ``ALLOWED_GLOBALS`` (plus ``extra_globals``).

    Args:
        file: binary file object positioned at a pickle.
        source: what to name in error messages (file path, archive member).
        persistent_load: function(pid) -> object for BINPERSID opcodes, or None to
            reject persistent ids.
        extra_globals: further (module, name) -> object entries (the tar reader's tags).
    """

    def __init__(self, file, source, persistent_load=None, extra_globals=None):
        super().__init__(file, encoding="utf-8")
        self._source = source
        self._persistent_load = persistent_load
        self._extra_globals = extra_globals or {}

    def find_class(self, module, name):
        key = (module, name)
        found = ALLOWED_GLOBALS.get(key, self._extra_globals.get(key))
        if isinstance(found, (StorageType, _Marker)):
            # A fresh copy: a BUILD opcode can rewrite an object's __dict__ (even a frozen
            # dataclass's), and must not be able to alter the shared table entries.
            return dataclasses.replace(found)
        if found is not None:
            return found
        if module == "torch" and name.endswith("Storage"):
            raise CheckpointError(f"{self._source}: unsupported storage type torch.{name}")
        raise UnsafeCheckpointError(
            f"{self._source}: refusing to load: the pickle asks for the global "
            f"{module}.{name}, which a state dict of tensors never needs (a pickle can "
            "run any function it names, so only tensor-rebuilding globals are allowed). "
            "Nothing was executed. If you trust this file, convert it to safetensors."
        )

    def persistent_load(self, pid):
        if self._persistent_load is None:
            raise CheckpointError(f"{self._source}: unexpected persistent id {pid!r}")
        return self._persistent_load(pid)


def _unpickle(file, source, persistent_load=None, extra_globals=None):
    """Run the restricted unpickler on ``file``; wrap pickle-level failures."""
    try:
        return RestrictedUnpickler(file, source, persistent_load, extra_globals).load()
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure on untrusted bytes means "corrupt"
        raise CheckpointError(f"{source}: corrupt pickle ({type(e).__name__}: {e})") from None


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
        raise CheckpointError(f"{path}: PyTorch checkpoint file not found")
    if zipfile.is_zipfile(path):
        obj, storages = _read_zip(path)
    elif _has_legacy_magic(path):
        obj, storages = _read_legacy(path)
    elif _is_tarfile(path):
        obj, storages = _read_tar(path)
    else:
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (neither a zip archive, a legacy torch.save "
            "stream nor a tar archive)"
        )
    return _to_state_dict(path, obj, storages)


def _to_state_dict(path, obj, storages):
    """Check ``obj`` is a mapping name -> tensor and turn each tensor into an array."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, _TensorRef))]
    if bad:
        raise CheckpointError(
            f"{path}: not a plain state dict; entries that are not name -> tensor: "
            f"{', '.join(map(repr, bad[:10]))}"
        )
    return {name: _materialize(path, name, ref, storages) for name, ref in obj.items()}


# --- zip format -----------------------------------------------------------------------


def _read_zip(path):
    """Unpickle ``<archive>/data.pkl``; return (object, storage bytes loader)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
            if not pickles:
                raise CheckpointError(
                    f"{path}: zip archive without <archive>/data.pkl; not a torch.save file"
                )
            prefix = pickles[0][: -len("data.pkl")]
            byteorder = "little"
            if prefix + "byteorder" in names:
                byteorder = zf.read(prefix + "byteorder").decode("ascii").strip()
            if byteorder not in ("little", "big"):
                raise CheckpointError(f"{path}: unknown byteorder record {byteorder!r}")
            refs = []
            with zf.open(pickles[0]) as f:
                obj = _unpickle(f, f"{path}:{pickles[0]}", _storage_pid_loader(refs))
            storages = {}
            for ref in refs:
                if ref.key not in storages:
                    member = f"{prefix}data/{ref.key}"
                    if member not in names:
                        raise CheckpointError(f"{path}: storage record {member} is missing")
                    storages[ref.key] = _storage_array(
                        f"{path}:{member}", zf.read(member), ref.storage_type, ref.numel,
                        byteorder,
                    )
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
        raise CheckpointError(f"{path}: corrupt zip archive ({e})") from None
    return obj, storages


def _storage_pid_loader(refs):
    """persistent_load for zip and legacy pickles: ids -> _StorageRef (collected in refs).

    Zip ids are ``('storage', storage_type, key, location, numel)``; legacy ids add
    ``view_metadata``: None, or ``(view_key, offset, numel)`` for a slice of the root.
    """

    def persistent_load(pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {pid!r} (expected a storage)")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, StorageType) or not _is_int(numel) or numel < 0:
            raise CheckpointError(f"malformed storage id {pid!r}")
        ref = _StorageRef(str(key), storage_type, numel, 0, numel)
        view = pid[5] if len(pid) == 6 else None
        if view is not None:
            _view_key, offset, view_numel = view
            if not (_is_int(offset) and _is_int(view_numel)):
                raise CheckpointError(f"malformed storage view {view!r}")
            ref = _StorageRef(str(key), storage_type, numel, offset, view_numel)
        refs.append(ref)
        return ref

    return persistent_load


# --- legacy stream format -------------------------------------------------------------


def _has_legacy_magic(path):
    """True if the file starts with a pickled LEGACY_MAGIC_NUMBER."""
    try:
        with open(path, "rb") as f:
            return _unpickle(f, str(path)) == LEGACY_MAGIC_NUMBER
    except UnsafeCheckpointError:
        raise  # a bare malicious pickle: say so rather than "not a checkpoint"
    except CheckpointError:
        return False


def _read_legacy(path):
    """Read the five pickles and then the raw storages of a legacy stream."""
    with open(path, "rb") as f:
        _unpickle(f, f"{path} (magic number)")
        version = _unpickle(f, f"{path} (protocol version)")
        if version != LEGACY_PROTOCOL_VERSION:
            raise CheckpointError(
                f"{path}: legacy protocol version {version!r}, expected "
                f"{LEGACY_PROTOCOL_VERSION}"
            )
        sys_info = _unpickle(f, f"{path} (sys_info)")
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            # Legacy files store storages little-endian whatever the machine; the
            # flag only matters for files written by very old big-endian builds.
            raise CheckpointError(f"{path}: written on a big-endian machine; not supported")
        refs = []
        obj = _unpickle(f, f"{path} (main pickle)", _storage_pid_loader(refs))
        keys = _unpickle(f, f"{path} (storage keys)")
        if not isinstance(keys, list):
            raise CheckpointError(f"{path}: storage key list is a {type(keys).__name__}")
        types = {ref.key: ref for ref in refs}
        storages = {}
        for key in keys:
            key = str(key)
            if key not in types:
                raise CheckpointError(f"{path}: storage {key!r} listed but never referenced")
            storage_type = types[key].storage_type
            storages[key] = _read_counted_storage(f, f"{path} (storage {key})", storage_type)
    return obj, storages


def _read_counted_storage(f, source, storage_type):
    """Read an int64 element count, then that many elements of ``storage_type``."""
    head = f.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{source}: file ends before the storage (truncated)")
    (count,) = struct.unpack("<q", head)
    itemsize = _storage_dtype(source, storage_type).itemsize
    if count < 0:
        raise CheckpointError(f"{source}: negative element count {count}")
    raw = f.read(count * itemsize)
    if len(raw) < count * itemsize:
        raise CheckpointError(
            f"{source}: needs {count * itemsize} bytes, file has {len(raw)} (truncated)"
        )
    return _storage_array(source, raw, storage_type, count, "little")


# --- tar format (torch < 0.4) ---------------------------------------------------------


def _is_tarfile(path):
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _read_tar(path):
    """Read the members ``storages``, ``tensors`` and ``pickle`` of a tar checkpoint.

    Here the main pickle's persistent ids are tensor keys, and the tensors' geometry
    is stored in the ``tensors`` member instead of in ``_rebuild_tensor_v2`` calls.
    """
    tensor_tags = {("torch", name): _Marker(f"torch.{name}") for name in _TAR_TENSOR_TYPES}
    try:
        with tarfile.open(path, mode="r:") as tar:
            storages, refs = _read_tar_storages(path, _tar_member(path, tar, "storages"))
            tensors = _read_tar_tensors(
                path, _tar_member(path, tar, "tensors"), refs, tensor_tags
            )

            def persistent_load(saved_id):
                key = str(saved_id)
                if key not in tensors:
                    raise CheckpointError(f"{path}: pickle refers to unknown tensor {key!r}")
                return tensors[key]

            obj = _unpickle(_tar_member(path, tar, "pickle"), f"{path}:pickle", persistent_load)
    except tarfile.TarError as e:
        raise CheckpointError(f"{path}: corrupt tar archive ({e})") from None
    return obj, storages


def _tar_member(path, tar, name):
    try:
        member = tar.extractfile(name)
    except KeyError:
        member = None
    if member is None:
        raise CheckpointError(f"{path}: tar checkpoint lacks the file member {name!r}")
    return member


def _read_tar_storages(path, f):
    """Member ``storages``: a count, then per storage a pickled (key, location, type)
    followed by its counted bytes; then a pickled list of views (target, root, offset,
    numel), each a slice of a root storage in elements.

    Returns:
        (arrays, refs): key -> 1-D array of root storages; key -> _StorageRef for
        every storage and view.
    """
    source = f"{path}:storages"
    count = _unpickle(f, source)
    arrays, refs = {}, {}
    for _ in range(count):
        key, _location, storage_type = _unpickle(f, source)
        key = str(key)
        if not isinstance(storage_type, StorageType):
            raise CheckpointError(f"{source}: storage {key!r} has type {storage_type!r}")
        arrays[key] = _read_counted_storage(f, f"{source} (storage {key})", storage_type)
        refs[key] = _StorageRef(key, storage_type, arrays[key].size, 0, arrays[key].size)
    for target, root, offset, numel in _unpickle(f, source):
        root = refs[str(root)]
        refs[str(target)] = _StorageRef(root.key, root.storage_type, root.numel, offset, numel)
    return arrays, refs


def _read_tar_tensors(path, f, storage_refs, extra_globals):
    """Member ``tensors``: a count, then per tensor a pickled (key, storage id, type)
    followed by its raw geometry: int32 ndim, 4 padding bytes, ndim int64 sizes, ndim
    int64 strides, int64 storage offset (all little-endian).
    """
    source = f"{path}:tensors"
    count = _unpickle(f, source, extra_globals=extra_globals)
    tensors = {}
    for _ in range(count):
        key, storage_id, _tensor_type = _unpickle(f, source, extra_globals=extra_globals)
        if str(storage_id) not in storage_refs:
            raise CheckpointError(f"{source}: tensor {key!r} uses unknown storage {storage_id}")
        (ndim,) = struct.unpack("<i", _read_exact(f, 4, source))
        _read_exact(f, 4, source)
        size = struct.unpack(f"<{ndim}q", _read_exact(f, 8 * ndim, source))
        stride = struct.unpack(f"<{ndim}q", _read_exact(f, 8 * ndim, source))
        (offset,) = struct.unpack("<q", _read_exact(f, 8, source))
        tensors[str(key)] = _TensorRef(storage_refs[str(storage_id)], offset, size, stride)
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
        raise CheckpointError(f"{source}: invalid storage type {storage_type!r}")
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
    _check_ref(path, name, ref, storages)
    start, count = ref.storage.view_offset, ref.storage.view_numel
    storage = storages[ref.storage.key][start:start + count]
    size, stride, offset = ref.size, ref.stride, ref.offset
    if any(d < 0 for d in size) or any(s < 0 for s in stride) or offset < 0:
        raise CheckpointError(
            f"{path}: tensor {name!r} has negative size/stride/offset "
            f"(size {size}, stride {stride}, offset {offset})"
        )
    numel = int(np.prod(size, dtype=np.int64))
    if numel > storage.size:
        raise CheckpointError(
            f"{path}: tensor {name!r} has {numel} elements but its storage only "
            f"{storage.size}; overlapping (broadcast) tensors are not state dict entries"
        )
    if numel == 0:
        array = np.empty(size, dtype=storage.dtype)
    else:
        last = offset + sum((d - 1) * s for d, s in zip(size, stride))
        if last >= storage.size:
            raise CheckpointError(
                f"{path}: tensor {name!r} (size {list(size)}, stride {list(stride)}, offset "
                f"{offset}) reaches element {last} of a storage with {storage.size} elements"
            )
        itemsize = storage.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage[offset:], shape=size, strides=[s * itemsize for s in stride],
            writeable=False,
        )
        array = np.array(view, order="C")
    return _to_compute_dtype(array, ref.storage.storage_type)


def _check_ref(path, name, ref, storages):
    """Re-check a tensor record's field types just before use.

    ``_rebuild_tensor_v2`` checked them, but a later BUILD opcode in the pickle can
    rewrite any object's attributes, so nothing the pickle touched is trusted.
    """
    storage = ref.storage
    fields_ok = (
        isinstance(storage, _StorageRef) and isinstance(storage.key, str)
        and storage.key in storages and _is_int(storage.view_offset)
        and _is_int(storage.view_numel) and storage.view_offset >= 0
        and _is_int(ref.offset) and _is_int_tuple(ref.size) and _is_int_tuple(ref.stride)
        and len(ref.size) == len(ref.stride)
    )
    if not fields_ok:
        raise CheckpointError(f"{path}: tensor {name!r} has a malformed description {ref!r}")


def _to_compute_dtype(array, storage_type):
    """bf16 bits and float16 -> float32; other dtypes -> native byte order."""
    if storage_type.name == "BFloat16Storage":
        return bf16_to_float32(array.astype("<u2"))
    if array.dtype.kind == "f" and array.dtype.itemsize == 2:
        return array.astype(np.float32)
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_int_tuple(value):
    return isinstance(value, (tuple, list)) and all(_is_int(v) for v in value)

