"""Where a launcher's kernels run: on the GPU through CuPy, or on the CPU in the emulator.

A launcher (``minitune/cuda/attention.py`` ...) is written once against this small interface:

    rt = runtime.for_array(q)       # cupy array -> GPU, numpy array -> the CPU emulator
    out = rt.xp.empty(shape, dtype)
    rt.launch("attention.cu", "attention_forward", grid, block, args, shared_mem)

Arguments are arrays (passed as device pointers), None (a null pointer) and numpy scalars of the
kernel parameter's exact C type (``np.int32``, ``np.float32``, ``np.uint64``): a Python number
has no C type, and CuPy would pass an int as 8 bytes to a 4-byte ``int`` parameter. ``dispatch``
only ever hands cupy arrays to the kernel table; numpy arrays reach a launcher from the tests,
which is how CI runs every launcher on machines without a GPU.

The GPU side compiles each kernel file once per process with ``cupy.RawModule(code=...)``
(NVRTC, ``nvrtc.compile_options()``; CuPy also caches the binary on disk) and launches with
the current stream.
"""
import contextlib
import functools
import warnings

import numpy as np

from ..backend import _import_cupy, is_cupy_array
from . import emulator
from . import nvrtc
from .source import load_source


class GpuRuntime:
    """Kernels from ``cupy.RawModule``, on cupy arrays."""

    def __init__(self, cupy=None):
        self.xp = cupy if cupy is not None else _import_cupy()
        self._modules = {}
        self._functions = {}

    @functools.cached_property
    def sm_count(self):
        """Multiprocessors of the current device (launchers size their grids by it)."""
        return self.xp.cuda.Device().attributes["MultiProcessorCount"]

    @functools.cached_property
    def tensor_cores(self):
        """True from compute capability 8.0 (the TF32/BF16 mma of kernels/matmul_tc.cu) where
        CUDA's ``crt/mma.h`` header is found (``nvrtc.crt_include_dir``); without it, a warning
        and the rounded-operand path (matmul.py)."""
        if int(self.xp.cuda.Device().compute_capability) < 80:
            return False
        if nvrtc.crt_include_dir() is None:
            warnings.warn("minitune: CUDA's crt/mma.h header was not found (pip install "
                          "nvidia-cuda-crt, or set CUDA_PATH to a CUDA toolkit): tf32/bf16 "
                          "products run as rounded operands on the fp32 GEMM kernel, without "
                          "tensor cores", RuntimeWarning, stacklevel=2)
            return False
        return True

    def function(self, name, kernel):
        """Kernel ``kernel`` of kernels/``name``; the file is compiled once per process."""
        fn = self._functions.get((name, kernel))
        if fn is None:
            module = self._modules.get(name)
            if module is None:
                module = self._modules[name] = self.xp.RawModule(code=load_source(name),
                                                                 options=nvrtc.compile_options())
            fn = self._functions[(name, kernel)] = module.get_function(kernel)
        return fn

    @staticmethod
    def pointer(array):
        """The device address of ``array``'s first element (for pointer tables)."""
        return array.data.ptr

    def launch(self, name, kernel, grid, block, args, shared_mem=0):
        args = tuple(np.uint64(0) if a is None else a for a in args)
        self.function(name, kernel)(_dim3(grid), _dim3(block), args, shared_mem=shared_mem)


class EmulatorRuntime:
    """Kernels from the CPU emulator, on numpy arrays (tests, study)."""

    xp = np
    sm_count = 2              # small, so that the tests reach the launchers' split paths
    tensor_cores = False      # the emulator cannot run tensor-core code

    @staticmethod
    def pointer(array):
        return array.ctypes.data

    def launch(self, name, kernel, grid, block, args, shared_mem=0):
        if _recording is not None:              # an emulated CUDA graph is being captured
            _recording.append((name, kernel, _dim3(grid), _dim3(block), args, shared_mem))
            return
        emulated_launch(name, kernel, _dim3(grid), _dim3(block), args, shared_mem)


def _dim3(d):
    return (d,) if isinstance(d, int) else tuple(d)


def emulated_launch(name, kernel, grid, block, args, shared_mem=0):
    """Run one kernel in the CPU emulator now."""
    emulator.launch(name, kernel, grid, block, args, shared_mem)


_recording = None           # a list while the emulator records launches (cuda/graph.py)


@contextlib.contextmanager
def recording():
    """Inside the block, emulated launches are recorded, not run: the CPU's picture of a CUDA
    graph capture (the arguments are kept as given -- arrays by reference, scalars by value,
    as a captured launch keeps them). Yields the list of (file, kernel, grid, block, args,
    shared_mem)."""
    global _recording
    previous, _recording = _recording, []
    try:
        yield _recording
    finally:
        _recording = previous


_gpu = None
_emulated = EmulatorRuntime()


def for_array(array):
    """The runtime for ``array``'s device: the GPU for cupy arrays, else the emulator."""
    global _gpu
    if is_cupy_array(array):
        if _gpu is None:
            _gpu = GpuRuntime()
        return _gpu
    return _emulated
