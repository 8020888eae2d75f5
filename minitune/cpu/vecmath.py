"""What every fused CPU kernel shares: the ``kernel`` decorator and a vectorised exp.

Kernels are plain Python loops over rows, compiled by numba (``nogil``: the pool's threads run
them at the same time; ``cache``: compiled once per machine, then loaded from __pycache__).
numba is used because a fused op is one loop doing what NumPy needs a pass over memory for at
every step (GELU is ~15 passes in NumPy): compiled, the loop keeps each row in cache.

**exp.** numba's ``math.exp`` is a scalar libm call (~2 ns per element), which stops the loop
from being vectorised; the softmax, GELU and cross-entropy loops need exp on every element.
``exp_row`` computes it the way vector math libraries do (Cephes ``expf``):

    exp(x) = 2^n * exp(r),  n = round(x / ln 2),  r = x - n ln 2  in [-ln2/2, ln2/2]
    exp(r) ~ 1 + r + r^2 (c5 + c4 r + ... + c0 r^5)      (relative error < 2e-7)
    2^n    is built from bits: the float32 with exponent field n + 127 and mantissa 0.

Building 2^n needs the float's bits: ``float32_from_bits`` is a numba intrinsic that
reinterprets an int32 as a float32 (one LLVM ``bitcast``, in a register), so the whole exp --
``exp32``, one element -- is straight-line arithmetic and a loop over a row of it is
vectorised. (Before the intrinsic, the bits went through an int32 view of the output row, in
a loop of their own: two loops. Rows of 128, one thread: the attention's row pass went from
1.02 to 0.77 ns per element with the same bits.) float64 rows use ``math.exp``, exact to
rounding, so the float64 path stays as exact as the NumPy reference.

**Short rows.** Attention calls exp on rows of T = 128 keys, millions of times a step, so what
a call costs besides its loops counts: a numba function that takes a row slices the caller's
array, and each new array view is reference-counted (atomic operations) -- about 100 cycles
per call, as much as the loops themselves on 128 elements. So these helpers are inlined into
the kernels that call them (``inline="always"``), and a float32 row's sum is kept in float32
(a float64 sum costs a conversion per element). Measured, exp on rows of 128: 1.06 ns per
element as a called function, 0.38 ns inlined (one thread).

**Streaming stores.** An array a kernel writes now and nothing reads until much later (the
attention's probabilities, kept for the backward) is best written past the caches: an ordinary
store first reads the line it writes into the cache (to modify it there), and each line so
fetched evicts one the kernel still needs. ``stream_copy`` copies with *non-temporal* stores,
a cache line at a time: the line goes to memory, with no read before and nothing evicted.
``streamable`` says which arrays it can write (whole lines: a 64-byte-aligned start and a
multiple of 64 bytes); ``aligned_empty`` allocates such arrays; ``store_fence`` makes the lines
visible to other threads in order (a kernel calls it once, after its last streaming store).

**Prefetching.** The other way round: data a kernel will read soon but whose addresses the
CPU cannot guess. Its prefetchers follow a stream of lines within a 4 KB page, or a small
stride; the rows of one attention head's (T, HS) q are 128 bytes each, 1,536 or 4,608 bytes
apart, and every one is a miss that the kernel waits on. ``prefetch_rows`` asks for such rows
ahead of time (``prefetch``: LLVM's ``llvm.prefetch``, x86 ``prefetcht0``, a hint that never
faults), a few lines at a time, spread over the work that comes before their use.
"""
import math
import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# IEEE-safe fast-math: reassociation lets the compiler vectorise sums (row means, dot
# products) and contract a*b+c into one FMA; NaN and inf keep their meaning (no nnan/ninf).
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4        # ln 2 = HI + LO, HI exact in 9 bits
_EXP_LO = -87.33                                      # below: exp underflows float32, return 0
_EXP_HI = 88.72                                       # above: clamped (overflow to ~3.4e38)
LINE = 64                                             # bytes in a cache line (x86, most ARM)


def kernel(fn=None, *, fastmath=FASTMATH):
    """Compile ``fn`` as a fused CPU kernel (nopython, GIL released, cached on disk).

    ``error_model="numpy"``: a float division by zero gives inf/NaN as in NumPy, rather than
    Python's ZeroDivisionError, whose check in every iteration stops the loop from being
    vectorised (measured: 0.9 ns instead of 0.3 ns per element for ``1 / (1 + p a)``).
    """
    if fn is None:
        return lambda f: kernel(f, fastmath=fastmath)
    return njit(nogil=True, cache=True, fastmath=fastmath, error_model="numpy")(fn)


def inline_kernel(fn):
    """A helper of the kernels, compiled into each kernel that calls it (no call, no new array
    views per call: see "Short rows" above)."""
    return njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy",
                inline="always")(fn)


@inline_kernel
def exp_row(x, out, shift=0.0):
    """out[j] = exp(x[j] - shift) for 1-D contiguous rows x, out of one float dtype; out is not
    x (in place it measured slower, and summed in another order: the compiler's alias check
    picks a scalar loop). Returns sum(out), accumulated as the row is written (softmax needs
    it): in float64 for float64 rows, in float32 for float32 rows."""
    if x.itemsize == 8:                                # float64: the exact library exp
        total = 0.0
        for j in range(x.size):
            out[j] = math.exp(x[j] - shift)
            total += out[j]
        return total
    c = np.float32(shift)
    total = np.float32(0.0)
    for j in range(x.size):
        e = exp32(x[j] - c)
        out[j] = e
        total += e
    return total


@intrinsic
def maximum(typingctx, a, b):
    """The larger of two floats of one type, NaN if either is NaN (IEEE 754-2019 maximum, as
    numpy's ``max``): LLVM's ``llvm.maximum``, one vector instruction and a fix-up for NaN.

    Why not Python's ``max``: a running ``m = max(m, x[j])`` is a chain of compares that keeps
    the first of two unordered values, and the compiler may not reorder such a chain, so it
    stays scalar -- even written as 16 running maxima, one per vector lane (the assembly:
    ``vmaxss``, one element at a time). A loop over ``maximum`` is a reduction the compiler
    knows how to split into vector lanes."""
    if not (isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, signature, args):
        t = args[0].type
        fn = builder.module.declare_intrinsic("llvm.maximum", [t], fnty=ir.FunctionType(t, [t, t]))
        return builder.call(fn, args)

    return a(a, b), codegen


@inline_kernel
def row_max(x):
    """max(x) of a 1-D row, NaN if it holds one; -inf if it is empty. One vectorised loop
    (``maximum``)."""
    m = x.dtype.type(-np.inf)
    for j in range(x.size):
        m = maximum(m, x[j])
    return m


@intrinsic
def float32_from_bits(typingctx, i):
    """The float32 whose bits are the int32 i (C's ``*(float *)&i``): one instruction, no memory,
    so a loop that builds 2^n from its bits stays one vectorised loop."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@inline_kernel
def exp32(x):
    """exp(x) of one float32 (Cephes expf, above); exp_row's element."""
    f = np.float32
    v = min(max(x, f(_EXP_LO)), f(_EXP_HI))
    n = np.floor(v * f(_LOG2E) + f(0.5))
    r = v - n * f(_LN2_HI) - n * f(_LN2_LO)
    p = f(1.9875691500e-4)
    p = p * r + f(1.3981999507e-3)
    p = p * r + f(8.3334519073e-3)
    p = p * r + f(4.1665795894e-2)
    p = p * r + f(1.6666665459e-1)
    p = p * r + f(5.0000001201e-1)
    e = (p * r * r + r + f(1.0)) * float32_from_bits((np.int32(n) + 127) << 23)
    # underflow -> 0; NaN (both tests false) -> NaN
    return e if x >= f(_EXP_LO) else (f(0.0) if x < f(_EXP_LO) else x)


@intrinsic
def _store_line_nontemporal(typingctx, dst, src):
    """Copy the LINE bytes at address src to the LINE-aligned address dst with a non-temporal
    store (LLVM's ``!nontemporal`` hint: x86's ``vmovntdq``; where a CPU has no such store, an
    ordinary one)."""
    def codegen(context, builder, signature, args):
        line = ir.VectorType(ir.IntType(32), LINE // 4)
        value = builder.load(builder.inttoptr(args[1], line.as_pointer()), align=4)
        store = builder.store(value, builder.inttoptr(args[0], line.as_pointer()), align=LINE)
        store.set_metadata("nontemporal",
                           builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.void(types.intp, types.intp), codegen


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def store_fence(typingctx):
    """Order the streaming stores before it before every store after it, for every thread:
    x86's ``sfence`` (the fence its manuals name for non-temporal stores); elsewhere LLVM's
    sequentially consistent fence (on ARM, ``dmb ish``)."""
    def codegen(context, builder, signature, args):
        if _X86:
            fn = builder.module.declare_intrinsic("llvm.x86.sse.sfence",
                                                  fnty=ir.FunctionType(ir.VoidType(), []))
            builder.call(fn, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@inline_kernel
def stream_copy(dst, src):
    """dst[...] = src with non-temporal stores: dst, src C-contiguous, of one size and dtype,
    dst ``streamable``. The caller calls ``store_fence`` after its last one."""
    d, s = dst.ctypes.data, src.ctypes.data
    for offset in range(0, dst.nbytes, LINE):
        _store_line_nontemporal(d + offset, s + offset)


def streamable(a):
    """True if ``stream_copy`` can write into ``a``: C-contiguous, its data starting on a cache
    line and made of whole lines."""
    return a.flags.c_contiguous and a.ctypes.data % LINE == 0 and a.nbytes % LINE == 0


def aligned_empty(shape, dtype):
    """np.empty(shape, dtype), its data starting on a cache line (np.empty's start is only
    16-byte aligned)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + LINE, np.uint8)
    start = -raw.ctypes.data % LINE
    return raw[start:start + nbytes].view(dtype).reshape(shape)


@intrinsic
def prefetch(typingctx, address):
    """Ask for the cache line at ``address`` to be brought into the caches (LLVM's
    ``llvm.prefetch``: read, keep in all levels). A hint: it never faults."""
    def codegen(context, builder, signature, args):
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", [byte_ptr], ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]))
        builder.call(fn, [builder.inttoptr(args[0], byte_ptr), ir.Constant(i32, 0),
                          ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(types.intp), codegen


@inline_kernel
def prefetch_rows(ahead, r, nbytes):
    """Prefetch row r of each matrix in ``ahead``, an (M, 2) int64 array of (address, row stride
    in bytes): the cache lines of its first ``nbytes`` bytes. M = 0: nothing."""
    for i in range(ahead.shape[0]):
        start = ahead[i, 0] + r * ahead[i, 1]
        for line in range(start // LINE, (start + nbytes - 1) // LINE + 1):
            prefetch(line * LINE)
