"""Linear layers for numpy arrays: the products in blocks of rows on minitune's pool, the bias
folded into the product (the reference: ops/matmul.py ``linear_forward`` / ``linear_backward``).

    forward   y  = x w^T + b        x (N, IN), w (OUT, IN), b (OUT,) or None -> y (N, OUT)
    backward  gx = gy w             (N, IN)
              gw = gy^T x           (OUT, IN)
              gb = sum of gy over the N rows

Every product is a BLAS GEMM, C = A B + beta C, called through ctypes so that three things the
reference (``x @ w.T``, then ``y += b``) cannot choose are chosen here:

- **beta.** numpy calls GEMM with beta = 0, and BLAS then writes zeros over C before it adds
  the product in. Here each block of C is first filled with the bias and the GEMM called with
  beta = 1: the fill replaces the zeroing, and the reference's separate ``y += b`` -- one more
  read and write of the whole (N, OUT) array, on one thread -- is gone.
- **Which BLAS.** Where Intel's MKL is installed (the ``mkl`` wheel; ``pip install
  minitune[mkl]``) its GEMM runs the products: on the 2-core AVX-512 machine of
  docs/performance.md it runs BERT's Linear shapes 15-20% faster than numpy's OpenBLAS, which is
  most of what separated minitune's eval forward from PyTorch's (whose ``addmm`` is MKL's).
  That was measured on an Intel CPU, so MKL is used on Intel CPUs only. Otherwise numpy's own
  OpenBLAS runs them, through the symbol of numpy's bundled build. ``MINITUNE_GEMM=mkl``,
  ``openblas`` or ``numpy`` (the reference) chooses; ``gemm_library()`` says which one runs.
- **Threads.** The rows are cut into blocks, and minitune's pool runs each block as a
  single-threaded GEMM: the same threads as every other fused op, no BLAS threads to wake
  (or to spin, threads.py) between ops. ``gb`` sums over the rows: each of n blocks
  (n = ``num_threads()``) computes gb's sums over its own rows, right after its GEMM has read
  those rows of gy, and the n results are added at the end. ``gw`` is cut by its OUT rows
  when OUT > IN and by its IN columns otherwise: each block one GEMM over all N rows, nothing
  to add afterwards.

supports: x, w (and b) float32 or float64 of one dtype, at "fp32" precision (amp's rounded
products run on the reference), and a GEMM library found; otherwise the reference runs.
saved: the reference's, (x, w, has_bias, precision).
"""
import ctypes
import os
import sys

import numpy as np

from ..ops import matmul as ref
from .threads import chunk_bounds, even_edges, num_threads, parallel_for, single_threaded_blas

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_MIN_ROWS = 64                  # rows per block at least (a block is one GEMM call)
_MAX_SMALL_KERNELS = 2048       # generated GEMM kernels kept at most (about 60 MB)


class _Gemm:
    """A BLAS library's sgemm and dgemm through ctypes: ``call(dtype, ...)``."""

    def __init__(self, name, handle, symbols, int_type, multithreaded, batch_symbols=None,
                 jit_symbols=None):
        self.name = name
        self.multithreaded = multithreaded         # OpenBLAS: hold it at one thread per call
        self.fns, self.batch_fns, self.jit_fns, self.small_kernels = {}, {}, {}, {}
        if jit_symbols:
            try:
                self._jit_setup(handle, jit_symbols, int_type)
            except AttributeError:                 # an MKL older than its JIT (2019)
                self.jit_fns = {}
        ptr = ctypes.c_void_p
        for i, dtype in enumerate((np.float32, np.float64)):
            real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
            fn = getattr(handle, symbols[i])
            fn.argtypes = ([ctypes.c_int] * 3 + [int_type] * 3
                           + [real, ptr, int_type, ptr, int_type, real, ptr, int_type])
            fn.restype = None
            self.fns[np.dtype(dtype)] = fn
            if batch_symbols:
                fn = getattr(handle, batch_symbols[i])
                fn.argtypes = ([ctypes.c_int] * 3 + [int_type] * 3
                               + [real, ptr, int_type, int_type, ptr, int_type, int_type,
                                  real, ptr, int_type, int_type, int_type])
                fn.restype = None
                self.batch_fns[np.dtype(dtype)] = fn

    def __call__(self, dtype, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
        """C (m, n) = op(A) op(B) + beta C, row-major; a, b, c are addresses."""
        self.fns[dtype](_ROW_MAJOR, _TRANS if trans_a else _NO_TRANS,
                        _TRANS if trans_b else _NO_TRANS, m, n, k, 1.0, a, lda, b, ldb,
                        beta, c, ldc)

    def batch(self, dtype, trans_a, trans_b, m, n, k, a, lda, stride_a, b, ldb, stride_b, c,
              ldc, stride_c, count):
        """C_i = op(A_i) op(B_i) for i < count, the i-th matrices ``stride_*`` elements apart;
        False when this library has no strided batch GEMM (the caller then loops itself)."""
        fn = self.batch_fns.get(dtype)
        if fn is None:
            return False
        fn(_ROW_MAJOR, _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS,
           m, n, k, 1.0, a, lda, stride_a, b, ldb, stride_b, 0.0, c, ldc, stride_c, count)
        return True

    def _jit_setup(self, handle, symbols, int_type):
        ptr = ctypes.c_void_p
        for i, dtype in enumerate((np.float32, np.float64)):
            real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
            create = getattr(handle, symbols[i])
            create.argtypes = ([ctypes.POINTER(ptr)] + [ctypes.c_int] * 3 + [int_type] * 3
                               + [real, int_type, int_type, real, int_type])
            create.restype = ctypes.c_int
            get = getattr(handle, symbols[2 + i])
            get.argtypes, get.restype = [ptr], ptr
            self.jit_fns[np.dtype(dtype)] = (create, get)

    def small(self, dtype, trans_a, trans_b, m, n, k, lda, ldb, ldc):
        """A GEMM kernel generated for these sizes and strides, C (m, n) = op(A) op(B) with
        beta = 0, row-major (MKL's JIT, for the attention's many small products: there is no
        call to decide anything, no packing of the operands). Returns an int64 array
        [kernel address, jitter address] for compiled code to call (``attention._call``), or None
        where this library generates none.

        Kernels are made once per key (60 us) and kept for the life of the process, about
        30 KB each: six per sequence length in use. Past ``_MAX_SMALL_KERNELS`` no new one is
        made (None: the caller's other path runs) -- none is ever freed, so none can vanish
        under a thread that is running it."""
        key = (np.dtype(dtype), trans_a, trans_b, m, n, k, lda, ldb, ldc)
        if key in self.small_kernels:
            return self.small_kernels[key]
        if len(self.small_kernels) >= _MAX_SMALL_KERNELS:
            return None
        fns = self.jit_fns.get(key[0])
        kernel = None
        if fns is not None:
            jitter = ctypes.c_void_p()
            status = fns[0](ctypes.byref(jitter), _ROW_MAJOR, _TRANS if trans_a else _NO_TRANS,
                            _TRANS if trans_b else _NO_TRANS, m, n, k, 1.0, lda, ldb, 0.0, ldc)
            # 0: generated; 1: not generated, the pointer runs MKL's ordinary GEMM; 2: error
            if status in (0, 1) and jitter.value:
                kernel = np.array([fns[1](jitter), jitter.value], np.int64)
        self.small_kernels[key] = kernel
        return kernel


def _mkl():
    """MKL from the ``mkl`` wheel (libmkl_rt), single-threaded; None when not installed."""
    try:
        from importlib import metadata
        files = metadata.distribution("mkl").files or []
        path = next(str(metadata.distribution("mkl").locate_file(f)) for f in files
                    if os.path.basename(str(f)).startswith("libmkl_rt.so"))
        handle = ctypes.CDLL(path)
        handle.MKL_Set_Threading_Layer(1)            # MKL_THREADING_SEQUENTIAL: the pool splits
        return _Gemm("mkl", handle, ("cblas_sgemm", "cblas_dgemm"), ctypes.c_int, False,
                     ("cblas_sgemm_batch_strided", "cblas_dgemm_batch_strided"),
                     ("mkl_cblas_jit_create_sgemm", "mkl_cblas_jit_create_dgemm",
                      "mkl_jit_get_sgemm_ptr", "mkl_jit_get_dgemm_ptr"))
    except (ImportError, StopIteration, OSError, AttributeError, metadata.PackageNotFoundError):
        return None


def _openblas():
    """numpy's bundled OpenBLAS (64-bit integers, symbols prefixed ``scipy_``); None when
    numpy uses another BLAS."""
    from .threads import _blas
    for lib in _blas().select(internal_api="openblas").lib_controllers:
        try:
            handle = ctypes.CDLL(lib.filepath)
            return _Gemm("openblas", handle, ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"),
                         ctypes.c_int64, True)
        except (OSError, AttributeError):
            continue
    return None


def _intel_cpu():
    """True on an Intel CPU (Linux's /proc/cpuinfo). MKL was measured faster than OpenBLAS on
    Intel's AVX-512 cores only; elsewhere OpenBLAS's kernels for the CPU are kept."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("vendor_id") and "GenuineIntel" in line for line in f)
    except OSError:
        return False


def _find_gemm():
    """MINITUNE_GEMM: "mkl", "openblas", "numpy" (the reference), or unset: MKL where it is
    installed and the CPU is Intel's, else numpy's OpenBLAS."""
    choice = os.environ.get("MINITUNE_GEMM", "").lower()
    if choice == "numpy":
        return None
    if choice == "mkl" or (choice != "openblas" and _intel_cpu()):
        gemm = _mkl()
        if gemm is not None:
            return gemm
    return _openblas()


GEMM = _find_gemm()


def gemm_library():
    """Which library runs the Linear products: "mkl", "openblas", or "numpy" (the reference)."""
    return GEMM.name if GEMM is not None else "numpy"


def supports(x, w, b=None):
    return (GEMM is not None and x.dtype == w.dtype and x.dtype in (np.float32, np.float64)
            and (b is None or b.dtype == x.dtype) and x.size > 0)


def _run(kernel, bounds):
    """parallel_for over the row blocks ``bounds``, with OpenBLAS held at one thread per call
    meanwhile."""
    n = bounds[-1][1]
    if GEMM.multithreaded:
        with single_threaded_blas():
            return parallel_for(kernel, n, bounds=bounds)
    return parallel_for(kernel, n, bounds=bounds)


def linear_forward(x, w, b=None, precision="fp32"):
    """As ops.matmul.linear_forward: x (..., IN) -> y (..., OUT), saved."""
    if precision != "fp32":
        return ref.linear_forward(x, w, b, precision)
    OUT, IN = w.shape
    x2 = np.ascontiguousarray(x.reshape(-1, IN))                     # (N, IN)
    w = np.ascontiguousarray(w)
    N, dt = x2.shape[0], x2.dtype
    y = np.empty((N, OUT), dt)
    row = dt.itemsize

    def rows(c, lo, hi):                          # y[lo:hi] = b; y[lo:hi] += x[lo:hi] w^T
        if b is not None:
            y[lo:hi] = b
        GEMM(dt, False, True, hi - lo, OUT, IN, x2.ctypes.data + lo * IN * row, IN,
             w.ctypes.data, IN, 0.0 if b is None else 1.0, y.ctypes.data + lo * OUT * row, OUT)

    # One block per thread: every GEMM call packs all of w^T for its own use, and a call on
    # more rows packs it for more work (measured, the eval forward at 64 x 128: 3.6% faster
    # than four blocks per thread, which the pool's other ops use to even out a slow thread).
    _run(rows, chunk_bounds(N, _MIN_ROWS, per_thread=1))
    return y.reshape(x.shape[:-1] + (OUT,)), (x, w, b is not None, precision)


def linear_backward(gy, saved, needs=(True, True, True)):
    """As ops.matmul.linear_backward: (gx, gw, gb), None where ``needs`` says no."""
    x, w, has_bias, precision = saved
    if precision != "fp32":
        return ref.linear_backward(gy, saved, needs)
    OUT, IN = w.shape
    dt = w.dtype
    g2 = np.ascontiguousarray(gy.reshape(-1, OUT), dtype=dt)         # (N, OUT)
    x2 = np.ascontiguousarray(x.reshape(-1, IN))                     # (N, IN)
    N, row = g2.shape[0], dt.itemsize
    gx = np.empty((N, IN), dt) if needs[0] else None
    # Block j of n (n = num_threads()) computes gx for rows_j of the N rows, and gw for a
    # j-th of its outputs (OUT > IN: g[:, outs_j]^T x) or of its inputs (OUT <= IN:
    # g^T x[:, ins_j]) -- one GEMM over all N rows each, nothing to add afterwards; MKL runs
    # the first form faster for the wide layers, the second for the others (docs/cpu.md). gb:
    # the column sums of g[rows_j], added at the end. The cut is by the thread setting, not by
    # the threads active now: gw and gb to the last bit depend on the setting only, never on
    # how busy the machine is.
    blocks = max(1, min(num_threads(), N // _MIN_ROWS))
    edges = even_edges(N, blocks)
    by_outputs = OUT > IN
    cuts = even_edges(OUT if by_outputs else IN, blocks)
    gw = np.empty((OUT, IN), dt) if needs[1] else None
    partial_b = np.empty((blocks, OUT), dt) if has_bias and needs[2] else None

    def row_blocks(c, first, last):
        for j in range(first, last):
            lo, hi = edges[j], edges[j + 1]
            if gx is not None:                    # gx[lo:hi] = g[lo:hi] w
                GEMM(dt, False, False, hi - lo, IN, OUT, g2.ctypes.data + lo * OUT * row, OUT,
                     w.ctypes.data, IN, 0.0, gx.ctypes.data + lo * IN * row, IN)
            a, b = cuts[j], cuts[j + 1]
            if gw is not None and b > a:
                if by_outputs:                    # gw[a:b] = g[:, a:b]^T x
                    GEMM(dt, True, False, b - a, IN, N, g2.ctypes.data + a * row, OUT,
                         x2.ctypes.data, IN, 0.0, gw.ctypes.data + a * IN * row, IN)
                else:                             # gw[:, a:b] = g^T x[:, a:b]
                    GEMM(dt, True, False, OUT, b - a, N, g2.ctypes.data, OUT,
                         x2.ctypes.data + a * row, IN, 0.0, gw.ctypes.data + a * row, IN)
            if partial_b is not None:             # the bias's share, while g[lo:hi] is cached
                g2[lo:hi].sum(axis=0, out=partial_b[j])

    _run(row_blocks, [(j, j + 1) for j in range(blocks)])
    gb = None if partial_b is None else partial_b[0] if blocks == 1 else partial_b.sum(axis=0)
    return (None if gx is None else gx.reshape(x.shape)), gw, gb
