"""Fused attention for numpy arrays: the reference's algorithm (ops/nn.py), one batch slice at
a time, on all cores.

    scores = q k^T * scale + mask_bias     (B, NH, T, T)
    probs  = softmax(scores)               over the keys
    out    = dropout(probs) v              (B, NH, T, HS)

The reference runs each step over the whole (B, NH, T, T) tensor: at B 32, T 128 that is 25 MB
per pass, far more than the caches, and every pass goes to memory. Here the batch is cut into
slices of a few sequences; a pool thread takes a slice and does every step for it -- the two
products (BLAS, on one thread: the pool is the parallelism) and, between them, one compiled
pass per row that scales, masks, shifts, exponentiates, normalises and drops out -- while the
slice's scores are still in its cache. The backward does the same with its four products and
the row pass

    gD = gout v^T;  gprobs = gD * keep * keep_scale
    gscores = probs * (gprobs - sum(gprobs * probs)) * scale
    gv = D^T gout,  gq = gscores k,  gk = gscores^T q,     D = probs * keep * keep_scale

The dropout mask is the fused dropout's (cpu/dropout.py): ``rng`` gives one seed, and the keep
flag of probability (b, h, i, j) is that of its flat index in (B, NH, T, T) (``row_draws``),
computed by the row pass that applies it -- in parallel, never stored: the backward's row pass
computes it again. (The reference draws the whole mask from ``rng`` on one thread: 6 ms per
layer at B 32 x T 128, and a (B, NH, T, T) boolean array kept for the backward.)

With MKL installed the work is cut finer: one head at a time, inside one compiled function per
chunk of sequences, each product run by a GEMM kernel MKL generated for exactly its sizes and
strides (``linear.GEMM.small``; docs/cpu.md). While a head's row pass runs, it prefetches the
rows of the next head's q, k, v and out (backward: q, k, v, gout, gq, gk, gv), whose rows are
too far apart for the CPU to foresee (vecmath.py, "Prefetching"). Otherwise each slice's
products are BLAS calls.

Layout: out, and gq, gk, gv in the backward, are (B, NH, T, HS) *views* of (B, T, NH, HS)
arrays -- the products write each head straight into its columns of the (B, T, H) layout the
next Linear reads. The model's merge of the heads, ``out.transpose(0, 2, 1, 3).reshape(B, T,
H)``, is then a view, and so are the gradients' way back through the split of the heads: no
(B, T, H) copy in either direction (the reference returns contiguous (B, NH, T, HS) arrays;
values are the same).

supports: q, k, v float32 or float64 of one dtype, and a mask_bias that is None or BERT's
(B, 1, 1, T) / (1, 1, 1, T) additive mask; anything else runs on the reference.
saved: (q, k, v, probs, seed, threshold, keep_scale, scale): threshold 0 means no dropout;
under ``no_grad`` probs is None (nothing will run the backward).
"""
import math

import numpy as np
from llvmlite import ir
from numba import literal_unroll, types
from numba.extending import intrinsic

from ..autograd import is_grad_enabled
from ..ops.nn import dropout_threshold
from . import linear
from .dropout import draw_seed, kept, mask_scratch, row_draws
from .threads import parallel_for, single_threaded_blas
from .vecmath import (LINE, aligned_empty, exp32, inline_kernel, kernel, maximum, prefetch_rows,
                      store_fence, stream_copy, streamable)


@kernel
def _softmax_dropout_rows(s, mask, row0, rows_per_batch, scale, seed, threshold, keep_scale,
                          dropped, ahead, ahead_bytes):
    """Rows of s (R, T): s = softmax(s * scale + mask) in place; with threshold > 0 also
    dropped = s * keep * keep_scale.

    Row r of s is row row0 + r of all B * NH * T rows: it belongs to sequence (row0 + r) //
    rows_per_batch (mask (Bm, T): Bm = 1, shared, or one row per sequence), and its keep flags
    are those of elements (row0 + r) * T ... of the whole tensor. Each row also prefetches row
    r of the matrices in ``ahead`` (the next head's: ``_aim_next_head``), ``ahead_bytes`` of each.
    """
    R, T = s.shape
    f = s.dtype.type
    arg = np.empty(T, s.dtype)
    words, draws = mask_scratch(T)
    shared_mask = mask.shape[0] == 1
    for r in range(R):
        if r < T:
            prefetch_rows(ahead, r, ahead_bytes)
        m = 0 if shared_mask else (row0 + r) // rows_per_batch     # an index, not a row view:
        shift = f(-np.inf)                                          # no new array per row
        for j in range(T):                                          # scale, mask, and the max
            a = s[r, j] * scale + mask[m, j]                        # (row_max's loop)
            arg[j] = a
            shift = maximum(shift, a)
        total = f(0.0)
        if s.itemsize == 4:                                         # exp, shifted by the max
            for j in range(T):
                arg[j] = exp32(arg[j] - shift)
                total += arg[j]
        else:                                                       # float64: exact
            for j in range(T):
                arg[j] = math.exp(arg[j] - shift)
                total += arg[j]
        inv = f(1.0) / total
        if threshold:
            skip = row_draws(seed, (row0 + r) * T, T, words)
            for j in range(T):                                      # normalise and drop out
                p = arg[j] * inv                                    # in one pass
                s[r, j] = p
                dropped[r, j] = p * keep_scale if kept(draws, skip + j, threshold) else f(0.0)
        else:
            for j in range(T):
                s[r, j] = arg[j] * inv


@kernel
def _softmax_dropout_backward_rows(g, probs, row0, seed, threshold, keep_scale, scale,
                                   dropped, ahead, ahead_bytes):
    """Rows of g (R, T) = gout v^T, turned in place into gscores; with threshold > 0,
    dropped = probs * keep * keep_scale (rows numbered as in the forward); prefetching as the
    forward's row pass."""
    R, T = g.shape
    f = g.dtype.type
    words, draws = mask_scratch(T)
    for r in range(R):
        if r < T:
            prefetch_rows(ahead, r, ahead_bytes)
        if threshold:
            skip = row_draws(seed, (row0 + r) * T, T, words)
            for j in range(T):
                keep = kept(draws, skip + j, threshold)
                g[r, j] = g[r, j] * keep_scale if keep else f(0.0)
                dropped[r, j] = probs[r, j] * keep_scale if keep else f(0.0)
        dot = f(0.0)
        for j in range(T):
            dot += g[r, j] * probs[r, j]
        for j in range(T):
            g[r, j] = (g[r, j] - dot) * probs[r, j] * scale


@intrinsic
def _call(typingctx, kernel, a, b, c):
    """kernel = [address, jitter] from ``GEMM.small``: calls it on the matrices at addresses
    a, b, c -- C = op(A) op(B) with the sizes and strides it was generated for. (A compiled
    function cannot call a C function whose address is known only at run time; this emits
    that call: cast the address to a function pointer, call it.)"""
    sig = types.void(kernel, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        fields = context.make_array(signature.args[0])(context, builder, args[0])
        address, jitter = (builder.load(builder.gep(fields.data, [ir.Constant(ir.IntType(64), i)]))
                           for i in (0, 1))
        void_p = ir.IntType(8).as_pointer()
        fn_type = ir.FunctionType(ir.VoidType(), [void_p] * 4)
        fn = builder.inttoptr(address, fn_type.as_pointer())
        builder.call(fn, [builder.inttoptr(x, void_p) for x in (jitter, *args[1:])])
        return context.get_dummy_value()

    return sig, codegen


@inline_kernel
def _next_head(b, h, hi, NH):
    """The head after (sequence b, head h) in a chunk of sequences ending before hi: (b, h + 1),
    else (b + 1, 0); (-1, -1) after the chunk's last head."""
    nb, nh = (b, h + 1) if h + 1 < NH else (b + 1, 0)
    return (nb, nh) if nb < hi else (-1, -1)


@inline_kernel
def _aim_next_head(ahead, b, h, hi, NH, count, m0, m1, m2, m3, m4, m5, m6):
    """For the head after (b, h) in the chunk (``_next_head``): ahead[i] = (address, row stride
    in bytes) of its (T, HS) matrix in m_i, for the first ``count`` of m0..m6 (each (B, NH, T,
    HS); unused ones may repeat). The row pass prefetches these rows: they are 1.5-4.5 KB
    apart, misses the CPU's own prefetchers cannot foresee (vecmath.py, "Prefetching").
    Returns how many rows of ``ahead`` are set: 0 after the chunk's last head."""
    nb, nh = _next_head(b, h, hi, NH)
    if nb < 0:
        return 0
    i = 0
    for m in literal_unroll((m0, m1, m2, m3, m4, m5, m6)):   # arrays of different layouts
        if i < count:
            ahead[i, 0] = m[nb, nh].ctypes.data
            ahead[i, 1] = m.strides[2]
        i += 1
    return count


@kernel
def _forward_heads(c, lo, hi, q, k, v, out, probs, stream, prefetch, mask, scale, seed,
                   threshold, keep_scale, qk, pv):
    """Sequences lo..hi-1, head by head: s = q k^T (kernel qk), the softmax row pass, out = s v
    (kernel pv), s a (T, T) scratch array that stays in the L2 cache (64 KB at T = 128 in
    float32, 1 MiB at T = 512). probs (B, NH, T, T) then gets a copy of each head's
    probabilities for the backward (none under no_grad: probs has no rows), with streaming
    stores where ``stream`` (vecmath.stream_copy: nothing reads them before the backward).

    The product could write into probs[b, h] directly, saving the copy; measured, that is
    slower (the attention's forward over a training step at 32 x 128, six alternations of the
    two versions: 56.0-59.0 ms against 53.4-56.1 with the copy; at T = 512 as fast or faster,
    docs/cpu.md). probs[b, h] is in no cache, and the small GEMM kernel waits on each line it
    stores to there. An ordinary copy reads each line of probs into the cache before writing
    it, evicting q, k and v's; streamed, the attention's forward in a training step at
    32 x 128, two threads: 55.3 -> 47.2 ms (``bench_bert.py --ab stream``, docs/cpu.md)."""
    B, NH, T, HS = q.shape
    s = np.empty((T, T), q.dtype)
    dropped = np.empty((T, T), q.dtype)
    ahead = np.empty((7, 2), np.int64)
    for b in range(lo, hi):
        for h in range(NH):
            _call(qk, q[b, h].ctypes.data, k[b, h].ctypes.data, s.ctypes.data)
            n = _aim_next_head(ahead, b, h, hi, NH, 4 if prefetch else 0,
                               q, k, v, out, out, out, out)
            _softmax_dropout_rows(s, mask, (b * NH + h) * T, NH * T, scale, seed, threshold,
                                  keep_scale, dropped, ahead[:n], HS * q.itemsize)
            if stream:                          # kept for the backward, past the caches
                stream_copy(probs[b, h], s)
            elif probs.shape[0]:
                probs[b, h][:, :] = s
            _call(pv, (dropped if threshold else s).ctypes.data, v[b, h].ctypes.data,
                  out[b, h].ctypes.data)
    if stream:
        store_fence()


@kernel
def _backward_heads(c, lo, hi, gout, q, k, v, probs, gq, gk, gv, prefetch, seed, threshold,
                    keep_scale, scale, gd, dv, dq, dk):
    """The backward for sequences lo..hi-1, head by head, with the kernels gd (gout v^T), dv
    (D^T gout), dq (g k) and dk (g^T q); g and D in (T, T) scratch arrays."""
    B, NH, T, HS = q.shape
    g = np.empty((T, T), q.dtype)
    dropped = np.empty((T, T), q.dtype)
    ahead = np.empty((7, 2), np.int64)
    for b in range(lo, hi):
        for h in range(NH):
            p = probs[b, h]
            _call(gd, gout[b, h].ctypes.data, v[b, h].ctypes.data, g.ctypes.data)
            n = _aim_next_head(ahead, b, h, hi, NH, 7 if prefetch else 0,
                               q, k, v, gout, gq, gk, gv)
            _softmax_dropout_backward_rows(g, p, (b * NH + h) * T, seed, threshold, keep_scale,
                                           scale, dropped, ahead[:n], HS * q.itemsize)
            _call(dv, (dropped if threshold else p).ctypes.data, gout[b, h].ctypes.data,
                  gv[b, h].ctypes.data)
            _call(dq, g.ctypes.data, k[b, h].ctypes.data, gq[b, h].ctypes.data)
            _call(dk, g.ctypes.data, q[b, h].ctypes.data, gk[b, h].ctypes.data)


# Switches for comparisons (``benchmarks/bench_bert.py --ab``); both change no result.
PREFETCH = True       # the heads' row passes prefetch the next head's rows
STREAM = True         # the probabilities are copied out with streaming stores
_NO_AHEAD = np.empty((0, 2), np.int64)     # the slices path: nothing to prefetch


def _ld(a):
    """The row stride, in elements, of each (T, HS) head matrix of a (B, NH, T, HS) view, when
    its rows are contiguous (what a generated kernel needs); else None."""
    size = a.itemsize
    ok = a.strides[3] == size and a.strides[2] % size == 0 and a.strides[2] >= a.shape[3] * size
    return a.strides[2] // size if ok else None


def _small_kernels(dtype, specs):
    """GEMM.small for each (trans_a, trans_b, m, n, k, lda, ldb, ldc); None unless all exist."""
    gemm = linear.GEMM
    if gemm is None or any(None in spec for spec in specs):
        return None
    kernels = [gemm.small(dtype, *spec) for spec in specs]
    return None if any(kern is None for kern in kernels) else kernels


def supports(q, k, v, mask_bias=None):
    if not (q.dtype == k.dtype == v.dtype and q.dtype in (np.float32, np.float64)):
        return False
    if mask_bias is None:
        return True
    B, NH, T, _ = q.shape
    return (mask_bias.dtype == q.dtype and mask_bias.ndim == 4
            and mask_bias.shape[1:] == (1, 1, T) and mask_bias.shape[0] in (1, B))


def _grain(B, NH, T):
    """Sequences per slice: about 1.5 MB of scores (cache-sized), at least one."""
    return max(1, (1 << 18) // max(NH * T * T, 1) + 1) if B > 1 else 1


def _scores(q, k, s):
    """s (b, NH, T, T) = q k^T for a slice's sequences: q, k (b, NH, T, HS) views (also the
    backward's gout v^T).

    numpy's matmul makes one BLAS call per (sequence, head); where the GEMM library has a
    strided batch GEMM (MKL's), all NH heads of a sequence are one call instead: each head's
    q and k are (T, HS) matrices a fixed number of elements apart. Measured on one thread,
    q k^T for 2 sequences of 128 tokens, 12 heads of 32: 333 us as numpy's calls, 249 us as
    MKL's batch."""
    b, NH, T, HS = q.shape
    size = q.itemsize
    gemm = linear.GEMM
    if (gemm is None or not s.flags.c_contiguous or q.strides[3] != size
            or k.strides[3] != size or min(q.strides[:3] + k.strides[:3]) < HS * size):
        np.matmul(q, k.swapaxes(-1, -2), out=s)
        return
    for i in range(b):
        if not gemm.batch(q.dtype, False, True, T, T, HS,
                          q.ctypes.data + i * q.strides[0], q.strides[2] // size,
                          q.strides[1] // size,
                          k.ctypes.data + i * k.strides[0], k.strides[2] // size,
                          k.strides[1] // size,
                          s.ctypes.data + i * s.strides[0], T, T * T, NH):
            np.matmul(q, k.swapaxes(-1, -2), out=s)
            return


def _slices(work, B, grain):
    """work(lo, hi) for every slice [lo, hi) of ``grain`` sequences, on the pool.

    The pool hands each thread chunks of several slices (fewer chunks than slices: with one
    thread, a single chunk of the whole batch); a chunk still runs its slices one at a time,
    so that each slice's scores stay in the cache between its passes."""
    def chunk(c, first, last):
        for lo in range(first, last, grain):
            work(lo, min(lo + grain, last))

    parallel_for(chunk, B, grain=grain)


def _heads_of_tokens(B, NH, T, HS, dtype):
    """An empty (B, NH, T, HS) array laid out as (B, T, NH, HS): its transpose(0, 2, 1, 3) is
    contiguous, so merging the heads into (B, T, H) needs no copy."""
    return np.empty((B, T, NH, HS), dtype).transpose(0, 2, 1, 3)


def _same_view(a, b):
    """a and b are the same elements of the same memory (shape, strides and address)."""
    return (a.shape == b.shape and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def _gradients_like(q, k, v):
    """Empty gq, gk, gv for the backward, each (B, NH, T, HS).

    When q, k and v are the query, key and value columns of one (B*T, 3H) array -- the output
    of the stacked q/k/v Linear (ops/matmul.py ``StackedLinear``), split into heads by views
    -- gq, gk and gv are made the same views of one new array of that shape: the Linear's
    backward then finds its (B*T, 3H) gradient already joined, instead of copying three
    (B, T, H) arrays into one. Otherwise each is a (B, NH, T, HS) view of its own
    (B, T, NH, HS) array."""
    B, NH, T, HS = q.shape
    base = q.base
    if (base is not None and k.base is base and v.base is base and base.dtype == q.dtype
            and base.flags.c_contiguous and base.size == 3 * q.size):
        stacked = base.reshape(B, T, 3, NH, HS)            # token, which of q/k/v, head, column
        if all(_same_view(a, stacked[:, :, i].transpose(0, 2, 1, 3))
               for i, a in enumerate((q, k, v))):
            joined = np.empty_like(stacked)
            return tuple(joined[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    return tuple(_heads_of_tokens(B, NH, T, HS, q.dtype) for _ in range(3))


def attention_forward(q, k, v, mask_bias, scale, dropout_p, rng):
    """As ops.nn.attention_forward: q, k, v (B, NH, T, HS) -> out (B, NH, T, HS), saved."""
    B, NH, T, HS = q.shape
    dt = q.dtype
    mask = (np.zeros((1, T), dt) if mask_bias is None
            else np.ascontiguousarray(mask_bias.reshape(mask_bias.shape[0], T)))
    seed, threshold, keep_scale = np.uint64(0), 0, 1.0
    if dropout_p > 0.0:
        threshold, keep_scale = dropout_threshold(dropout_p)
        seed = draw_seed(rng)
    keep_scale = dt.type(keep_scale)
    # Under no_grad no backward will read the probabilities: each slice then computes in a
    # scratch array of its own, which stays in the cache, and the (B, NH, T, T) array (50 MB at
    # B 64, T 128) is never allocated or written to memory.
    probs = aligned_empty((B, NH, T, T), dt) if is_grad_enabled() else None
    out = _heads_of_tokens(B, NH, T, HS, dt)
    kernels = _small_kernels(dt, [(False, True, T, T, HS, _ld(q), _ld(k), T),
                                  (False, False, T, HS, T, T, _ld(v), _ld(out))])
    if kernels is not None:
        stream = (STREAM and probs is not None and streamable(probs)
                  and T * T * dt.itemsize % LINE == 0)             # whole lines, each head
        parallel_for(_forward_heads, B, q, k, v, out,
                     probs if probs is not None else np.empty((0, NH, T, T), dt), stream,
                     PREFETCH, mask, dt.type(scale), seed, threshold, keep_scale, *kernels)
        return out, (q, k, v, probs, seed, threshold, keep_scale, scale)

    def slice_(lo, hi):
        s = probs[lo:hi] if probs is not None else np.empty((hi - lo, NH, T, T), dt)
        _scores(q[lo:hi], k[lo:hi], s)
        dropped = np.empty_like(s) if threshold else s
        _softmax_dropout_rows(s.reshape(-1, T), mask, lo * NH * T, NH * T, dt.type(scale),
                              seed, threshold, keep_scale, dropped.reshape(-1, T), _NO_AHEAD, 0)
        np.matmul(dropped, v[lo:hi], out=out[lo:hi])

    with single_threaded_blas():
        _slices(slice_, B, _grain(B, NH, T))
    return out, (q, k, v, probs, seed, threshold, keep_scale, scale)


def attention_backward(gout, saved):
    """As ops.nn.attention_backward: returns (gq, gk, gv), each (B, NH, T, HS)."""
    q, k, v, probs, seed, threshold, keep_scale, scale = saved
    B, NH, T, HS = q.shape
    dt = q.dtype
    gout = np.asarray(gout, dt)
    gq, gk, gv = _gradients_like(q, k, v)
    if _ld(gout) is None:                          # rows not contiguous: copy them once
        tokens = _heads_of_tokens(B, NH, T, HS, dt)
        tokens[...] = gout
        gout = tokens
    kernels = _small_kernels(dt, [(False, True, T, T, HS, _ld(gout), _ld(v), T),
                                  (True, False, T, HS, T, T, _ld(gout), _ld(gv)),
                                  (False, False, T, HS, T, T, _ld(k), _ld(gq)),
                                  (True, False, T, HS, T, T, _ld(q), _ld(gk))])
    if kernels is not None:
        parallel_for(_backward_heads, B, gout, q, k, v, probs, gq, gk, gv, PREFETCH, seed,
                     threshold, keep_scale, dt.type(scale), *kernels)
        return gq, gk, gv

    def slice_(lo, hi):
        g = np.empty((hi - lo, NH, T, T), dt)
        _scores(gout[lo:hi], v[lo:hi], g)                               # gD = gout v^T
        p = probs[lo:hi]
        dropped = np.empty_like(p) if threshold else p
        _softmax_dropout_backward_rows(g.reshape(-1, T), p.reshape(-1, T), lo * NH * T, seed,
                                       threshold, keep_scale, dt.type(scale),
                                       dropped.reshape(-1, T), _NO_AHEAD, 0)
        np.matmul(dropped.swapaxes(-1, -2), gout[lo:hi], out=gv[lo:hi])
        np.matmul(g, k[lo:hi], out=gq[lo:hi])
        np.matmul(g.swapaxes(-1, -2), q[lo:hi], out=gk[lo:hi])

    with single_threaded_blas():
        _slices(slice_, B, _grain(B, NH, T))
    return gq, gk, gv
