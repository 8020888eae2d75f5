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
    """True when cupy imports and sees at least one CUDA device; never raises."""
    return cuda_unavailable_reason() is None


def cuda_available():
    """``minitune.cuda_available()``: True when ``--device cuda`` can run; never raises."""
    return gpu_available()


def cuda_unavailable_reason():
    """None when a CUDA device is usable through cupy, else one line saying why not."""
    try:
        cupy = _import_cupy()
    except Exception as e:                  # a broken install (a CUDA library that fails to load)
        return f"cupy failed to import ({type(e).__name__}: {_first_line(e)})"
    if cupy is None:
        return "cupy is not installed (pip install 'minitune[gpu]')"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:                  # CUDARuntimeError: no driver, driver too old ...
        return f"cupy sees no CUDA device ({_first_line(e)})"
    return None if count > 0 else "cupy sees no CUDA device (0 devices)"


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


DEVICES = ("cpu", "cuda", "auto")


def resolve_device(name):
    """The device to compute on for a requested ``name``: "cpu" -> "cpu"; "cuda" (or "gpu")
    -> "gpu", or a RuntimeError of one line saying why no CUDA device can be used; "auto" ->
    "gpu" when one can, else "cpu"."""
    if name == "cpu":
        return "cpu"
    if name not in ("cuda", "gpu", "auto"):
        raise ValueError(f"unknown device {name!r}; use one of {', '.join(DEVICES)}")
    reason = cuda_unavailable_reason()
    if reason is None:
        return "gpu"
    if name == "auto":
        return "cpu"
    raise RuntimeError(f"device 'cuda' requested, but {reason}; use --device cpu (or auto)")


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
