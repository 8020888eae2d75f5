"""Matrix products on minitune's own GEMM kernels: kernels/matmul.cu (float32, CUDA cores) and
kernels/matmul_tc.cu (TF32 and BF16 tensor cores).

``gemm`` is the one launcher; the ops' functions below have the references' signatures
(``ops/matmul.py``: ``linear_forward/backward``, ``matmul_forward/backward``; ``ops/nn.py``:
``linear_gelu_forward/backward``) and keep their own ``saved``:

    Linear forward    y = x W^T (+ b)       gemm(x, W, tb=True, bias=b)        NT, bias fused
    Linear backward   gx = gy W             gemm(gy, W)                        NN
                      gW = gy^T x           gemm(gy, x, ta=True)               TN, split over K
    linear + GELU     y = gelu(x W^T + b)   gemm(..., epilogue="gelu") also writes x W^T, which
                      GELU's backward kernel (cuda/gelu.py) reads instead of a stored u

``plan`` picks the tile (128 x 128 or 64 x 64) and the K split per shape so that the grid has
at least two blocks per SM; ``tiled_gemm`` is the kernels' algorithm in NumPy (tiles, K steps,
split-K partials added in order, the epilogue) for a reader to follow the CUDA against.

Precision (``amp``): "fp32" runs variant 4 of matmul.cu; "tf32"/"bf16" run matmul_tc.cu where
the device has tensor cores (compute capability 8.0 or later), else the operands are rounded
(``amp.round_to``) and the fp32 kernel runs: the same numbers up to the order of summation.
The CPU emulator runs matmul_tc.cu through a WMMA stand-in when asked (``tensor_cores=True``).
"""
import math

import numpy as np

from .. import amp
from . import gelu as cuda_gelu
from . import runtime
from .layer_norm import sum_partials

FILE = "matmul.cu"
TC_FILE = "matmul_tc.cu"
TILES = ((128, 128), (64, 64))      # variant 4's block tiles, largest first
BK = 8                              # variant 4's K step
BLOCKS_PER_SM = 2                   # a plan wants at least this many blocks per SM
MIN_K_PER_SPLIT = 256               # split-K never gives a slice fewer K than this
MAX_SPLITS = 16
EPILOGUES = ("none", "bias", "gelu")


def supports_linear(x, w, b=None, *rest):
    return (x.dtype == w.dtype == np.float32 and w.ndim == 2 and x.ndim >= 1 and
            x.size > 0 and w.size > 0 and (b is None or b.dtype == np.float32))


def supports_matmul(a, b, *rest):
    """float32, both at least 2-D, batch dims equal or one operand a plain matrix."""
    return (a.dtype == b.dtype == np.float32 and a.ndim >= 2 and b.ndim >= 2 and
            a.size > 0 and b.size > 0 and
            (a.shape[:-2] == b.shape[:-2] or a.ndim == 2 or b.ndim == 2))


# --------------------------------------------------------------------------- the launcher

def plan(M, N, K, batch, sm_count, epilogue="none"):
    """(BM, BN, splits) for variant 4: the largest tile whose grid has BLOCKS_PER_SM blocks per
    SM; if even 64 x 64 tiles do not, and there is one matrix and no epilogue, K is split into
    slices of at least MIN_K_PER_SPLIT (multiples of BK) until it does."""
    want = BLOCKS_PER_SM * sm_count
    for BM, BN in TILES:
        blocks = -(-M // BM) * -(-N // BN) * batch
        if blocks >= want:
            return BM, BN, 1
    splits = 1
    if batch == 1 and epilogue == "none":
        splits = max(1, min(-(-want // blocks), K // MIN_K_PER_SPLIT, MAX_SPLITS))
    return BM, BN, splits


def _operand(xp, a):
    """(array, leading dim, batch stride, rows, cols) of a 2-D or 3-D operand whose last axis
    is contiguous (copied when it is not); rows x cols is the stored matrix."""
    if a.strides[-1] != a.itemsize or (a.ndim == 3 and a.strides[0] % a.itemsize):
        a = xp.ascontiguousarray(a)
    ld = a.strides[-2] // a.itemsize if a.shape[-2] > 1 else a.shape[-1]
    stride = a.strides[0] // a.itemsize if a.ndim == 3 and a.shape[0] > 1 else 0
    return a, ld, stride, a.shape[-2], a.shape[-1]


def _vectorisable(rt, M, N, K, arrays, numbers):
    """float4 loads and stores are safe: every size, leading dim and stride a multiple of 4
    and every array 16-byte aligned."""
    return (all(n % 4 == 0 for n in (M, N, K) + tuple(numbers)) and
            all(a is None or rt.pointer(a) % 16 == 0 for a in arrays))


def gemm(a, b, ta=False, tb=False, bias=None, epilogue=None, precision="fp32", variant=4,
         tile=None, splits=None, tensor_cores=None):
    """op(a) @ op(b) (+ bias) (-> GELU) on the GEMM kernels.

    Args:
        a: (M, K), or (K, M) with ``ta``; or a stack (Z, ., .) of such matrices.
        b: (K, N), or (N, K) with ``tb``; or a stack. One 2-D operand is shared by the stack.
        bias: (N,) float32 for the "bias" and "gelu" epilogues (NT layout only).
        epilogue: None/"none", "bias" or "gelu" (default: "bias" when a bias is given).
        precision: "fp32", "tf32" or "bf16" (see the module docstring).
        variant: 1-4 (matmul.cu's header); 1-3 are for study and benchmarks (no epilogue).
        tile, splits: override ``plan`` (variant 4): (BM, BN) in TILES, splits >= 1; for
            "tf32"/"bf16" on tensor cores, ``splits`` overrides ``plan_tc``.
        tensor_cores: run "tf32"/"bf16" on matmul_tc.cu (True) or as rounded operands on the
            fp32 kernel (False); default: what the device has. The tests set True in the
            emulator, whose WMMA stand-in (emu/mma.h) runs matmul_tc.cu's indexing.

    Returns:
        C (M, N) or (Z, M, N) float32; with "gelu" the pair (C, P), P = op(a) @ op(b).
    """
    rt = runtime.for_array(a)
    xp = rt.xp
    epilogue = epilogue or ("bias" if bias is not None else "none")
    if precision != "fp32" and not (rt.tensor_cores if tensor_cores is None else tensor_cores):
        a, b = amp.round_to(a, precision), amp.round_to(b, precision)
        precision = "fp32"
    a, lda, sa, ra, ca = _operand(xp, a)
    b, ldb, sb, rb, cb = _operand(xp, b)
    M, K = (ca, ra) if ta else (ra, ca)
    Kb, N = (cb, rb) if tb else (rb, cb)
    if K != Kb:
        raise ValueError(f"gemm: inner sizes differ: op(a) is {M}x{K}, op(b) is {Kb}x{N}")
    Z = max(a.shape[0] if a.ndim == 3 else 1, b.shape[0] if b.ndim == 3 else 1)
    layout = ("t" if ta else "n") + ("t" if tb else "n")
    if epilogue != "none" and layout != "nt":
        raise ValueError(f"gemm: the {epilogue} epilogue exists for the NT layout only")
    out_shape = (Z, M, N) if a.ndim == 3 or b.ndim == 3 else (M, N)
    C = xp.empty(out_shape, dtype=np.float32)
    Pre = xp.empty(out_shape, dtype=np.float32) if epilogue == "gelu" else None
    bias = None if bias is None else xp.ascontiguousarray(bias, dtype=np.float32)
    if precision != "fp32":
        S = plan_tc(M, N, K, Z, rt.sm_count, epilogue) if splits is None else splits
        C = _launch_tc(rt, layout, epilogue, precision, a, b, C, bias, Pre, M, N, K, lda, ldb,
                       sa, sb, Z, S)
        return (C, Pre) if epilogue == "gelu" else C
    if variant != 4:
        _launch_study(rt, variant, layout, epilogue, a, b, C, M, N, K, lda, ldb, sa, sb, Z)
        return C
    BM, BN, S = plan(M, N, K, Z, rt.sm_count, epilogue)
    if tile is not None:
        BM, BN = tile
    if splits is not None:
        S = splits
    if S > 1 and (Z > 1 or epilogue != "none"):
        raise ValueError("gemm: split-K needs one matrix and no epilogue")
    k_chunk = -(-K // S)
    k_chunk = -(-k_chunk // BK) * BK                  # slices start on a K step
    S = -(-K // k_chunk)
    target = C if S == 1 else xp.empty((S, M, N), dtype=np.float32)
    if S > 1:                      # slice z reads A and B from their z-th K-slice
        sa = k_chunk * (lda if ta else 1)
        sb = k_chunk * (1 if tb else ldb)
    vec = _vectorisable(rt, M, N, K, (a, b, target, bias, Pre),
                        (lda, ldb, N, sa, sb, k_chunk if S > 1 else 0))
    name = f"gemm4_{layout}_{BM}x{BN}_{epilogue}_{'vec' if vec else 'scalar'}"
    threads = (BM // 64) * (BN // 32) * 32
    rt.launch(FILE, name, (-(-N // BN), -(-M // BM), Z * S), threads,
              (a, b, target, bias, Pre, np.int32(M), np.int32(N), np.int32(K), np.int32(lda),
               np.int32(ldb), np.int32(N), np.int64(sa), np.int64(sb), np.int64(M * N),
               np.int32(k_chunk if S > 1 else 0)))
    if S > 1:
        C = sum_partials(rt, FILE, target.reshape(S, M * N)).reshape(out_shape)
    return (C, Pre) if epilogue == "gelu" else C


def _launch_study(rt, variant, layout, epilogue, a, b, C, M, N, K, lda, ldb, sa, sb, Z):
    """Variants 1-3 (matmul.cu's header), kept runnable for the tests and benchmarks."""
    if epilogue != "none":
        raise ValueError(f"gemm: variant {variant} has no epilogue")
    args = (a, b, C, None, None, np.int32(M), np.int32(N), np.int32(K), np.int32(lda),
            np.int32(ldb), np.int32(N), np.int64(sa), np.int64(sb), np.int64(M * N),
            np.int32(0))
    if variant == 1:
        rt.launch(FILE, f"gemm1_{layout}", (-(-N // 16), -(-M // 16), Z), (16, 16), args)
    elif variant == 2:
        rt.launch(FILE, f"gemm2_{layout}", (-(-N // 64), -(-M // 64), Z), 256, args)
    elif variant == 3:
        if not _vectorisable(rt, M, N, K, (a, b, C), (lda, ldb, sa, sb)):
            raise ValueError("gemm: variant 3 needs sizes, leading dims and strides that are "
                             "multiples of 4 and 16-byte aligned arrays")
        rt.launch(FILE, f"gemm3_{layout}_vec", (-(-N // 128), -(-M // 128), Z), 256, args)
    else:
        raise ValueError(f"gemm: no variant {variant} (1-4)")


TC_TILE = (128, 128)                # matmul_tc.cu's block tile; 8 warps
TC_BK = 32                          # its K step: split-K slices start on a multiple of it


def plan_tc(M, N, K, batch, sm_count, epilogue="none"):
    """K-slices for matmul_tc.cu: none unless its 128 x 128 tiles fill at most half the SMs
    (and there is one matrix and no epilogue); then as many slices of at least
    MIN_K_PER_SPLIT as bring the grid to BLOCKS_PER_SM blocks per SM.

    Measured on an H200 (bench_gemm, 2026-11-30): the weight gradient gW = gy^T x of a
    384 x 384 layer has 9 tiles for 132 SMs; 16 slices made it 6x faster (bf16 0.265 -> 0.044
    ms), and 768 x 768 x 4096 (36 tiles, 8 slices) 2-2.5x. At 96-192 tiles two or three
    slices were as often slower as faster (bf16 4096 x 768 x 768, 192 tiles: 0.064 -> 0.090
    ms), hence the half-the-SMs rule."""
    blocks = -(-M // TC_TILE[0]) * -(-N // TC_TILE[1]) * batch
    if 2 * blocks > sm_count or batch > 1 or epilogue != "none":
        return 1
    want = BLOCKS_PER_SM * sm_count
    return max(1, min(-(-want // blocks), K // MIN_K_PER_SPLIT, MAX_SPLITS))


def _launch_tc(rt, layout, epilogue, precision, a, b, C, bias, Pre, M, N, K, lda, ldb, sa, sb,
               Z, S=1):
    """The tensor-core kernel of ``precision`` (matmul_tc.cu), vectorised loads when allowed;
    with S > 1 K-slices (one matrix, no epilogue: as variant 4's split-K), slice z of the grid
    writes partial product z and ``sum_partials`` adds them in order. Returns C."""
    if S > 1 and (Z > 1 or epilogue != "none"):
        raise ValueError("gemm: split-K needs one matrix and no epilogue")
    k_chunk = -(-K // S)
    k_chunk = -(-k_chunk // TC_BK) * TC_BK           # slices start on a K step
    S = -(-K // k_chunk)
    target = C if S == 1 else rt.xp.empty((S, M, N), dtype=np.float32)
    if S > 1:                      # slice z reads A and B from their z-th K-slice
        sa = k_chunk * (lda if layout[0] == "t" else 1)
        sb = k_chunk * (1 if layout[1] == "t" else ldb)
    vec = _vectorisable(rt, M, N, K, (a, b, target, bias, Pre), (lda, ldb, sa, sb))
    name = f"gemm_{precision}_{layout}_{epilogue}_{'vec' if vec else 'scalar'}"
    BM, BN = TC_TILE
    rt.launch(TC_FILE, name, (-(-N // BN), -(-M // BM), Z * S), 256,
              (a, b, target, bias, Pre, np.int32(M), np.int32(N), np.int32(K), np.int32(lda),
               np.int32(ldb), np.int32(N), np.int64(sa), np.int64(sb), np.int64(M * N),
               np.int32(k_chunk if S > 1 else 0)))
    if S > 1:
        C = sum_partials(rt, FILE, target.reshape(S, M * N)).reshape(C.shape)
    return C


# --------------------------------------------------------------------------- the ops

def linear_forward(x, w, b=None, precision="fp32"):
    """``ops.matmul.linear_forward`` on the kernels: one NT GEMM with the bias fused."""
    x2 = x.reshape(-1, x.shape[-1])
    y = gemm(x2, w, tb=True, bias=b, precision=precision)
    return y.reshape(x.shape[:-1] + (w.shape[0],)), (x2, w, b is not None, precision, x.shape)


def linear_backward(gy, saved, needs=(True, True, True)):
    x2, w, has_bias, precision, x_shape = saved
    g2 = gy.reshape(-1, gy.shape[-1])
    gx = gemm(g2, w, precision=precision).reshape(x_shape) if needs[0] else None
    gw = gemm(g2, x2, ta=True, precision=precision) if needs[1] else None
    gb = g2.sum(axis=0) if has_bias and needs[2] else None
    return gx, gw, gb


def linear_gelu_forward(x, w, b, precision="fp32"):
    """``ops.nn.linear_gelu_forward`` on the kernels: the GEMM's epilogue adds the bias and
    applies GELU, and also writes x W^T -- what the GELU kernel's backward reads."""
    x2 = x.reshape(-1, x.shape[-1])
    y, pre = gemm(x2, w, tb=True, bias=b, epilogue="gelu", precision=precision)
    I = w.shape[0]
    b = runtime.for_array(b).xp.ascontiguousarray(b, dtype=np.float32)
    saved = (x2, w, precision, x.shape, (pre, b, I))           # gelu.backward's saved
    return y.reshape(x.shape[:-1] + (I,)), saved


def linear_gelu_backward(gy, saved, needs=(True, True, True)):
    x2, w, precision, x_shape, gelu_saved = saved
    gu, gb = cuda_gelu.backward(gy.reshape(-1, gy.shape[-1]), gelu_saved)
    gx = gemm(gu, w, precision=precision).reshape(x_shape) if needs[0] else None
    gw = gemm(gu, x2, ta=True, precision=precision) if needs[1] else None
    return gx, gw, gb if needs[2] else None


def _stack(a):
    """a (..., R, C) as (Z, R, C), or a plain matrix as it is."""
    return a if a.ndim == 2 else a.reshape((-1,) + a.shape[-2:])


def matmul_forward(a, b, precision="fp32"):
    """``ops.matmul.matmul_forward`` on the kernels (equal batch dims, or one plain matrix)."""
    batch = a.shape[:-2] if a.ndim > b.ndim else b.shape[:-2]
    y = gemm(_stack(a), _stack(b), precision=precision)
    return y.reshape(batch + y.shape[-2:]), (a, b, precision)


def matmul_backward(gy, saved, needs=(True, True)):
    """ga = gy b^T (NT), gb = a^T gy (TN); an operand shared by the whole stack gets the sum
    over the stack (a plain b: one TN GEMM over the stacked rows)."""
    a, b, precision = saved
    g = _stack(gy)
    ga = gb = None
    if needs[0]:
        ga = gemm(g, _stack(b), tb=True, precision=precision)
        ga = ga.sum(axis=0) if a.ndim == 2 and ga.ndim == 3 else ga.reshape(a.shape)
    if needs[1]:
        if b.ndim == 2 and a.ndim > 2:                # sum_z a_z^T g_z = (stacked a)^T (stacked g)
            gb = gemm(a.reshape(-1, a.shape[-1]), gy.reshape(-1, gy.shape[-1]), ta=True,
                      precision=precision)
        else:
            gb = gemm(_stack(a), g, ta=True, precision=precision).reshape(b.shape)
    return ga, gb


# --------------------------------------------------------------------------- NumPy reference

def tiled_gemm(a, b, BM, BN, BK, splits=1, bias=None, epilogue="none"):
    """Variant 4's algorithm in NumPy, for plain matrices a (M, K) and b (K, N).

    Block (i, j) computes the BM x BN tile C[i*BM:, j*BN:] as a sum over K steps of BK: each
    step multiplies the staged A tile (BM x BK) by the B tile (BK x BN) into a float32
    accumulator (zero-filled past the matrix edges). With ``splits`` > 1 each K-slice of
    ceil(K / splits) (rounded up to BK) gets its own partial C; the partials are then added
    in slice order. The epilogue adds the bias / applies GELU to the finished sum.

    Returns C, or (C, P) for "gelu" (P is the product before bias and GELU).
    """
    M, K = a.shape
    N = b.shape[1]
    k_chunk = -(-(-(-K // splits)) // BK) * BK
    partials = []
    for k_lo in range(0, K, k_chunk):
        C = np.zeros((M, N), dtype=np.float32)
        for i0 in range(0, M, BM):
            for j0 in range(0, N, BN):
                acc = np.zeros((BM, BN), dtype=np.float32)
                for k0 in range(k_lo, min(k_lo + k_chunk, K), BK):
                    As = np.zeros((BM, BK), dtype=np.float32)      # staged tiles, 0-padded
                    Bs = np.zeros((BK, BN), dtype=np.float32)
                    blk_a = a[i0:i0 + BM, k0:min(k0 + BK, k_lo + k_chunk)]
                    blk_b = b[k0:min(k0 + BK, k_lo + k_chunk), j0:j0 + BN]
                    As[:blk_a.shape[0], :blk_a.shape[1]] = blk_a
                    Bs[:blk_b.shape[0], :blk_b.shape[1]] = blk_b
                    acc += As @ Bs
                C[i0:i0 + BM, j0:j0 + BN] = acc[:min(BM, M - i0), :min(BN, N - j0)]
        partials.append(C)
    C = partials[0]
    for partial in partials[1:]:                       # sum_partials: in slice order
        C = C + partial
    if epilogue == "none":
        return C
    if epilogue == "bias":
        return C + bias
    u = (C + bias).astype(np.float64)
    return (u * 0.5 * (1.0 + _erf(u / math.sqrt(2.0)))).astype(np.float32), C


_erf = np.vectorize(math.erf)
