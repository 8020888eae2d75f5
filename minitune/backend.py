"""The one place where the array module is chosen.

minitune computes on NumPy arrays (CPU) or, when a CUDA device and CuPy are present, on CuPy
arrays (GPU). Ops never import either directly: they ask ``xp = get_array_module(x)`` and write
``xp.exp(x)``. CuPy is imported lazily, so machines without it never pay for it.
"""
import numpy as np

_cupy = None          # the cupy module once imported; False when unavailable


def _import_cupy():
    """Return the cupy module, or None when it is not installed."""
    global _cupy
    if _cupy is None:
        try:
            import cupy
            _cupy = cupy
        except ImportError:
            _cupy = False
    return _cupy or None


def is_cupy_array(array):
    """True when ``array`` is a cupy.ndarray (checked without importing cupy)."""
    return type(array).__module__.split(".")[0] == "cupy"


def get_array_module(*arrays):
    """Return numpy, or cupy when any argument is a cupy array.

    Arguments may be arrays, Tensors (their ``.data`` is used), scalars or None.
    """
    for a in arrays:
        if type(a) is np.ndarray:                      # the common case, checked cheaply
            continue
        if is_cupy_array(a) or is_cupy_array(getattr(a, "data", None)):   # array or Tensor
            return _import_cupy()
    return np


def gpu_available():
    """True when cupy imports and sees at least one CUDA device."""
    cupy = _import_cupy()
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except cupy.cuda.runtime.CUDARuntimeError:
        return False


def gpu_count():
    """The number of CUDA devices cupy sees (0 without cupy)."""
    return cupy_module().cuda.runtime.getDeviceCount() if gpu_available() else 0


def use_gpu(index):
    """Make CUDA device ``index`` this process's current device (one GPU per data-parallel
    rank); arrays created afterwards live there."""
    cupy_module().cuda.Device(index).use()


def cupy_module():
    """The cupy module (for the few places that call CUDA libraries directly, such as NCCL);
    raises when cupy is not installed."""
    cupy = _import_cupy()
    if cupy is None:
        raise RuntimeError("cupy is not installed (pip install 'minitune[gpu]')")
    return cupy


def to_device(array, device):
    """Copy ``array`` to ``device`` ("cpu" or "gpu"/"cuda"); a no-op when it is already there."""
    if device == "cpu":
        return array.get() if is_cupy_array(array) else np.asarray(array)
    if device in ("gpu", "cuda"):
        if not gpu_available():
            raise RuntimeError("device 'gpu' requested but no CUDA device "
                               "(or no cupy) is available")
        return _import_cupy().asarray(array)
    raise ValueError(f"unknown device {device!r}; use 'cpu' or 'gpu'")


def device_of(array):
    """'gpu' for cupy arrays, else 'cpu'."""
    return "gpu" if is_cupy_array(array) else "cpu"


def asnumpy(array):
    """Return ``array`` as a numpy array (copying from the GPU when needed)."""
    return to_device(array, "cpu")
