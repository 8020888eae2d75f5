"""Residual + LayerNorm (kernels/layer_norm.cu) and the deterministic column sum (reduce.cuh).

Same arguments and results as ``minitune.ops.nn.layer_norm_forward/backward``; this
implementation's ``saved`` is (u, mean, rstd, w): u = x + residual, written only when there is
a residual. The kernel's row algorithm is the reference's (two passes: mean, then the variance
of the deviations); what differs is where the numbers live (registers, one read and one write
per element) and how gw, gb are summed over rows -- ``partial_column_sums`` below, in NumPy.
"""
import numpy as np

from . import runtime

FILE = "layer_norm.cu"
MAX_COLUMNS_PER_THREAD = 8            # MAXC in layer_norm.cu
PARTIAL_BLOCKS = 512                  # P: blocks of the backward (fixed: same bits on any GPU)


def supports(x, *rest):
    return x.dtype == np.float32 and x.ndim >= 1 and 0 < x.shape[-1] <= 8 * 256


def _block(H):
    return 128 if H <= 512 else 256


def _rows(a, H):
    """a as a contiguous (N, H) array (a copy only when it is not contiguous)."""
    return a.reshape(-1, H) if a.flags.c_contiguous else a.reshape(-1, H).copy()


def forward(x, w, b, eps, residual=None):
    rt = runtime.for_array(x)
    xp = rt.xp
    H = x.shape[-1]
    x2 = _rows(xp.ascontiguousarray(x), H)
    r2 = None if residual is None else _rows(xp.ascontiguousarray(residual), H)
    N = x2.shape[0]
    y = xp.empty_like(x2)
    u = x2 if residual is None else xp.empty_like(x2)
    mean = xp.empty(N, dtype=np.float32)
    rstd = xp.empty(N, dtype=np.float32)
    if N:
        rt.launch(FILE, "layer_norm_forward", min(N, 65535), _block(H),
                  (x2, r2, xp.ascontiguousarray(w), xp.ascontiguousarray(b), y,
                   None if residual is None else u, mean, rstd, np.int32(N), np.int32(H),
                   np.float32(eps)))
    return y.reshape(x.shape), (u, mean, rstd, w)


def backward(gy, saved):
    u, mean, rstd, w = saved
    rt = runtime.for_array(gy)
    xp = rt.xp
    N, H = u.shape
    gy2 = _rows(xp.ascontiguousarray(gy), H)
    gx = xp.empty_like(gy2)
    P = max(1, min(N, PARTIAL_BLOCKS))
    gw_part = xp.zeros((P, H), dtype=np.float32)
    gb_part = xp.zeros((P, H), dtype=np.float32)
    if N:
        rt.launch(FILE, "layer_norm_backward", P, _block(H),
                  (gy2, u, xp.ascontiguousarray(w), mean, rstd, gx, gw_part, gb_part,
                   np.int32(N), np.int32(H)))
    gw = sum_partials(rt, FILE, gw_part)
    gb = sum_partials(rt, FILE, gb_part)
    return gx.reshape(gy.shape), gw, gb


def sum_partials(rt, file, partials):
    """out[c] = sum_p partials[p, c], in order of p (reduce.cuh's sum_partials)."""
    P, C = partials.shape
    out = rt.xp.empty(C, dtype=np.float32)
    rt.launch(file, "sum_partials", (C + 255) // 256, 256,
              (partials, np.int32(P), np.int32(C), out))
    return out


def partial_column_sums(x, blocks):
    """NumPy reference of the deterministic column sum: block p adds rows p, p + blocks, ...
    in order (as the backward's blocks walk rows), then the partials are added in order of p."""
    partials = np.zeros((blocks, x.shape[1]), dtype=x.dtype)
    for p in range(blocks):
        for row in x[p::blocks]:
            partials[p] += row
    out = np.zeros(x.shape[1], dtype=x.dtype)
    for p in range(blocks):
        out += partials[p]
    return out
