"""Fused attention (kernels/attention.cu): launchers, and the NumPy reference of its algorithm.

The op is ``minitune.ops.nn.attention_forward/backward`` (same arguments, same results; this
implementation keeps its own ``saved``). The kernel never materialises the (B, NH, T, T)
scores: forward keeps the output and two floats a row, backward recomputes the probabilities.
Dropout masks come from Philox (seed drawn from the op's numpy Generator ``rng``), so backward
regenerates them instead of storing them.

``tiled_forward`` / ``tiled_backward`` below are the kernels' algorithm written in NumPy --
key tiles, online softmax, the (m, L) row statistics, the two-sweep backward -- for a reader to
follow the CUDA against; tests/cuda checks them against plain attention, then the kernels
(run by the CPU emulator, or the GPU) against them.
"""
import numpy as np

from . import graph, runtime
from .philox import threshold_and_scale

FILE = "attention.cu"
TILE = 32                 # KT in attention.cu: keys (queries) per shared-memory tile
MAX_HEAD_SIZE = 128
OFFSET = np.uint32(0)     # Philox counter word 3; a fresh seed per call makes it free for now

# The register-blocked variants 5-7 (each row group owns R query rows or keys, so a float4 read
# from shared memory feeds 4 R FFMAs instead of 4; docs/kernels.md) serve head sizes above
# BLOCKED_MIN_HEAD_SIZE when USE_BLOCKED is set; HS <= 32 keeps variants 2-4 (already faster
# than PyTorch's there). Off: on an H200 they measured 3-18% slower than variants 2-4 at HS = 64
# (the kernels wait on global loads at low occupancy, not on shared memory; docs/kernels.md).
# `USE_BLOCKED = True` makes them the default; `forward(variant=...)` and
# `backward(variant=...)` choose either family explicitly.
USE_BLOCKED = False
BLOCKED_MIN_HEAD_SIZE = 32
BLOCKED_ROWS = {"forward": 4, "dq": 2, "dkdv": 2}     # R of attention.cu's entry points


def supports(q, k, v, mask_bias=None):
    """float32 q, k, v (B, NH, T, HS) with HS <= 128; a per-key mask (B or 1, 1, 1, T) or none."""
    if not (q.dtype == k.dtype == v.dtype == np.float32 and q.ndim == 4):
        return False
    B, NH, T, HS = q.shape
    if HS > MAX_HEAD_SIZE or T == 0 or B * NH == 0:
        return False
    return mask_bias is None or (mask_bias.dtype == np.float32 and mask_bias.ndim == 4 and
                                 mask_bias.shape[1:] == (1, 1, T) and mask_bias.shape[0] in (1, B))


def _split(head_size):
    """Threads per row: each holds 32 of the head's dims."""
    return 1 if head_size <= 32 else 2 if head_size <= 64 else 4


def _blocked_split(head_size):
    """Threads per row group in variants 5-7: each holds 16 of the head's dims."""
    return 4 if head_size <= 64 else 8


def _default_blocked(head_size):
    return USE_BLOCKED and head_size > BLOCKED_MIN_HEAD_SIZE


def _plan(kind, head_size, blocked):
    """(entry point, rows or keys a 128-thread block) of ``kind`` ("forward", "dq", "dkdv")."""
    name = {"forward": "attention_forward", "dq": "attention_backward_dq",
            "dkdv": "attention_backward_dkdv"}[kind]
    if blocked:
        split = _blocked_split(head_size)
        return f"{name}_b{split}", 128 // split * BLOCKED_ROWS[kind]
    split = _split(head_size)
    return f"{name}_s{split}", 128 // split


def _strides(a):
    """Element strides of the first three axes (the last must be contiguous)."""
    return [np.int32(s // a.itemsize) for s in a.strides[:3]]


def _shared_layout(xp, q, k, v):
    """q, k, v with one stride triple and a contiguous last axis (copies only when needed)."""
    arrays = [a if a.strides[-1] == a.itemsize else xp.ascontiguousarray(a) for a in (q, k, v)]
    if len({a.strides for a in arrays}) > 1:
        arrays = [xp.ascontiguousarray(a) for a in arrays]
    return arrays


def _head_major(xp, B, NH, T, HS):
    """A (B, NH, T, HS) result stored as (B, T, NH, HS), and its element strides: merging the
    heads back into (B, T, H) is then a free reshape."""
    out = xp.empty((B, T, NH, HS), dtype=np.float32).transpose(0, 2, 1, 3)
    return out, _strides(out)


def _dropout(p, rng):
    """(seed, threshold, dscale, seed_ptr) for dropout probability p; the seed comes from
    ``rng`` (under CUDA graph capture: from a slot, ``graph.device_seed``)."""
    if p == 0.0:
        return np.uint64(0), np.uint32(0), np.float32(1.0), None
    threshold, scale = threshold_and_scale(p)
    seed, seed_ptr = graph.device_seed(rng)
    return seed, np.uint32(threshold), np.float32(scale), seed_ptr


def forward(q, k, v, mask_bias, scale, dropout_p, rng, variant=None):
    """The op's forward (``ops.nn.attention_forward``) on the kernels.

    variant: 1 the naive kernel, 2 the tiled one, 5 the register-blocked one; None picks 5 or 2
    by head size (``USE_BLOCKED``, ``BLOCKED_MIN_HEAD_SIZE``). Returns (out (B, NH, T, HS),
    saved)."""
    if variant not in (None, 1, 2, 5):
        raise ValueError(f"attention.forward: no variant {variant!r} (1, 2 or 5)")
    rt = runtime.for_array(q)
    xp = rt.xp
    B, NH, T, HS = q.shape
    q, k, v = _shared_layout(xp, q, k, v)
    bias, bias_sb = None, 0
    if mask_bias is not None:
        bias = xp.ascontiguousarray(mask_bias.reshape(mask_bias.shape[0], T))
        bias_sb = T if mask_bias.shape[0] == B > 1 else 0
    out, ostrides = _head_major(xp, B, NH, T, HS)
    m = xp.empty((B * NH, T), dtype=np.float32)
    L = xp.empty((B * NH, T), dtype=np.float32)
    seed, threshold, dscale, seed_ptr = _dropout(dropout_p, rng)
    args = (q, k, v, bias, out, m, L, np.int32(NH), np.int32(T), np.int32(HS), *_strides(q),
            *ostrides, np.int32(bias_sb), np.float32(scale), seed, OFFSET, threshold, dscale,
            seed_ptr)
    if variant == 1:
        rt.launch(FILE, "attention_forward_naive", ((T + 127) // 128, B * NH), 128, args)
    else:
        blocked = _default_blocked(HS) if variant is None else variant == 5
        kernel, rows = _plan("forward", HS, blocked)
        rt.launch(FILE, kernel, ((T + rows - 1) // rows, B * NH), 128, args)
    saved = (q, k, v, bias, bias_sb, out, m, L, scale, seed, threshold, dscale, seed_ptr)
    return out, saved


def backward(gout, saved, variant=None):
    """The op's backward: (gq, gk, gv), each (B, NH, T, HS).

    variant: 3 runs kernels 3 and 4, 6 the register-blocked 6 and 7; None picks by head size
    as ``forward`` does (either pair reads what either forward saved)."""
    if variant not in (None, 3, 6):
        raise ValueError(f"attention.backward: no variant {variant!r} (3 or 6)")
    q, k, v, bias, bias_sb, out, m, L, scale, seed, threshold, dscale, seed_ptr = saved
    rt = runtime.for_array(gout)
    xp = rt.xp
    B, NH, T, HS = q.shape
    if gout.strides[-1] != gout.itemsize:
        gout = xp.ascontiguousarray(gout)
    gq, ostrides = _head_major(xp, B, NH, T, HS)
    gk, _ = _head_major(xp, B, NH, T, HS)
    gv, _ = _head_major(xp, B, NH, T, HS)
    dvec = xp.empty((B * NH, T), dtype=np.float32)
    blocked = _default_blocked(HS) if variant is None else variant == 6
    shape = (np.int32(NH), np.int32(T), np.int32(HS), *_strides(q), *ostrides, *_strides(gout),
             np.int32(bias_sb), np.float32(scale), seed, OFFSET, threshold, dscale, seed_ptr)
    kernel, rows = _plan("dq", HS, blocked)
    rt.launch(FILE, kernel, ((T + rows - 1) // rows, B * NH), 128,
              (q, k, v, bias, out, gout, m, L, dvec, gq) + shape)
    kernel, rows = _plan("dkdv", HS, blocked)
    rt.launch(FILE, kernel, ((T + rows - 1) // rows, B * NH), 128,
              (q, k, v, bias, gout, m, L, dvec, gk, gv) + shape)
    return gq, gk, gv


# --------------------------------------------------------------------------- NumPy reference

def tiled_forward(q, k, v, bias, scale, keep=None, dscale=1.0, tile=TILE):
    """Variant 2 in NumPy: one pass over key tiles with an online softmax.

    Args:
        q, k, v: (B, NH, T, HS). bias: (B, T) additive per-key bias, or None.
        keep: (B, NH, T, T) dropout mask or None; dscale: the kept values' scale.
    Returns:
        (o (B, NH, T, HS), m (B, NH, T) row max, L (B, NH, T) log of the row sum of exp(s - m)).
    """
    B, NH, T, HS = q.shape
    m = np.full((B, NH, T), -np.inf, dtype=q.dtype)
    row_sum = np.zeros((B, NH, T), dtype=q.dtype)
    acc = np.zeros_like(q)
    for j0 in range(0, T, tile):
        j1 = min(j0 + tile, T)
        s = q @ k[:, :, j0:j1].swapaxes(-1, -2) * scale                   # (B, NH, T, tile)
        if bias is not None:
            s = s + bias[:, None, None, j0:j1]
        m_new = np.maximum(m, s.max(axis=-1))
        with np.errstate(invalid="ignore"):                     # -inf - -inf: masked below
            alpha = np.where(m == -np.inf, 0.0, np.exp(m - m_new)).astype(q.dtype)
        p = np.exp(s - m_new[..., None])
        row_sum = row_sum * alpha + p.sum(axis=-1)      # the softmax sums every p ...
        if keep is not None:
            p = p * keep[..., j0:j1]                    # ... the output only the kept ones
        acc = acc * alpha[..., None] + p @ v[:, :, j0:j1]
        m = m_new
    return acc * (dscale / row_sum)[..., None], m, np.log(row_sum)


def tiled_backward(q, k, v, bias, o, gout, m, L, scale, keep=None, dscale=1.0, tile=TILE):
    """Variants 3 and 4 in NumPy: p recomputed from (m, L) tile by tile; D_i = do_i . o_i.

    Returns (gq, gk, gv), each (B, NH, T, HS).
    """
    T = q.shape[2]
    D = (gout * o).sum(axis=-1)                                              # (B, NH, T)
    z = np.full((1, 1, T, T), dscale, q.dtype) if keep is None else keep * q.dtype.type(dscale)

    def block(i0, i1, j0, j1):
        """p, z and gs for queries i0:i1 and keys j0:j1."""
        s = q[:, :, i0:i1] @ k[:, :, j0:j1].swapaxes(-1, -2) * scale
        if bias is not None:
            s = s + bias[:, None, None, j0:j1]
        p = np.exp(s - m[:, :, i0:i1, None] - L[:, :, i0:i1, None])
        zb = z[..., i0:i1, j0:j1]
        gp = gout[:, :, i0:i1] @ v[:, :, j0:j1].swapaxes(-1, -2) * zb
        return p, zb, p * (gp - D[:, :, i0:i1, None])

    gq = np.zeros_like(q)
    for j0 in range(0, T, tile):                       # variant 3: query rows, key tiles
        _, _, gs = block(0, T, j0, min(j0 + tile, T))
        gq += gs @ k[:, :, j0:j0 + tile]
    gk, gv = np.zeros_like(k), np.zeros_like(v)
    for i0 in range(0, T, tile):                       # variant 4: key rows, query tiles
        i1 = min(i0 + tile, T)
        p, zb, gs = block(i0, i1, 0, T)
        gv += (p * zb).swapaxes(-1, -2) @ gout[:, :, i0:i1]
        gk += gs.swapaxes(-1, -2) @ q[:, :, i0:i1]
    return gq * scale, gk * scale, gv
