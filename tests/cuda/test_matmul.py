"""minitune's GEMM kernels (kernels/matmul.cu; tensor cores: kernels/matmul_tc.cu) and their
launcher (minitune/cuda/matmul.py).

Without a GPU: the NumPy reference of the tiling against plain products; the tile/split plan;
every SIMT variant (1-4), layout (NN, NT, TN), tile, epilogue (bias, bias + GELU), split-K and
batching in the CPU emulator against float64 products, on odd shapes (scalar loads) and
multiples of 4 (float4 loads), in both thread orders; a planted missing barrier; the ops'
kernel implementations (linear, linear + GELU, matmul, forward and backward) against their
references; bf16/tf32 through the launcher (rounded operands on the fp32 kernel); the
tensor-core kernels' indexing through the emulator's WMMA stand-in.
On a GPU (marker gpu): every kernel against float64 products and cuBLAS at BERT shapes
(M = B T = 4096; K, N in 384 ... 3072) and odd shapes; the tensor-core kernels against the
float64 product of rounded operands.

Tolerances: float32 accumulation over K terms, compared with float64: max |C - C64| <=
1e-5 * sqrt(K / 64 + 1) * max|C64| + 1e-6. Where a rounded product follows another op (the
GELU backward before the gradient GEMMs), float32-level differences in its input can move an
operand across a rounding boundary: there 1e-5 becomes the format's unit (2^-8 bf16, 2^-11
tf32).
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minitune import amp, backend
from minitune.cuda import emulator
from minitune.cuda import matmul as mm
from minitune.ops import matmul as ref_mm
from minitune.ops import nn as ref_nn
from kernel_helpers import both_schedules, f64

pytestmark = pytest.mark.emulator

LAYOUTS = [(False, False), (False, True), (True, False)]          # NN, NT, TN


def operands(seed, M, N, K, ta, tb, batch=None):
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)
    a = rng.normal(size=lead + ((K, M) if ta else (M, K))).astype(np.float32)
    b = rng.normal(size=lead + ((N, K) if tb else (K, N))).astype(np.float32)
    return a, b


def product64(a, b, ta, tb):
    a, b = f64(a, b)
    return (a.swapaxes(-1, -2) if ta else a) @ (b.swapaxes(-1, -2) if tb else b)


def check(got, want, K, what="", rtol=1e-5):
    got, want = f64(got, want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    bound = rtol * math.sqrt(K / 64 + 1) * max(float(np.abs(want).max()), 1.0) + 1e-6
    err = float(np.abs(got - want).max())
    assert err <= bound, f"{what}: max error {err:.3g} > {bound:.3g}"


def gelu64(u):
    return u * 0.5 * (1.0 + np.vectorize(math.erf)(u / math.sqrt(2.0)))


# --------------------------------------------------------------------------- NumPy reference

@given(m=st.integers(1, 40), n=st.integers(1, 40), k=st.integers(1, 60),
       tile=st.sampled_from([(4, 4), (8, 16), (16, 8)]), bk=st.sampled_from([1, 3, 8]),
       splits=st.integers(1, 4), epilogue=st.sampled_from(["none", "bias", "gelu"]),
       seed=st.integers(0, 100))
def test_the_tiled_reference_is_a_matrix_product(m, n, k, tile, bk, splits, epilogue, seed):
    a, b = operands(seed, m, n, k, False, False)
    bias = np.random.default_rng(seed + 1).normal(size=n).astype(np.float32)
    out = mm.tiled_gemm(a, b, *tile, bk, splits, bias, epilogue)
    want = product64(a, b, False, False)
    if epilogue == "gelu":
        out, pre = out
        check(pre, want, k, "P")
        check(out, gelu64(want + bias), k, "gelu")
    else:
        check(out, want + (bias if epilogue == "bias" else 0.0), k, epilogue)


@pytest.mark.parametrize("M,N,K,batch,epilogue,want", [
    (4096, 3072, 768, 1, "bias", (128, 128, 1)),      # BERT-base FFN up: 768 tiles of 128
    (4096, 384, 384, 1, "bias", (64, 64, 1)),         # MiniLM Q: 96 tiles of 128, 384 of 64
    (384, 384, 4096, 1, "none", (64, 64, 8)),         # gW of a MiniLM projection: 36 tiles
    (384, 384, 4096, 1, "bias", (64, 64, 1)),         # an epilogue cannot follow a split
    (384, 384, 300, 1, "none", (64, 64, 1)),          # too little K to split
    (128, 128, 32, 384, "none", (128, 128, 1)),       # a batch fills the GPU by itself
])
def test_plan_fills_the_gpu(M, N, K, batch, epilogue, want):
    assert mm.plan(M, N, K, batch, 132, epilogue) == want


def test_plan_never_makes_slices_smaller_than_the_minimum():
    for K in (256, 511, 2048, 100_000):
        BM, BN, splits = mm.plan(64, 64, K, 1, 132)
        assert 1 <= splits <= mm.MAX_SPLITS and (splits == 1 or K // splits >= mm.MIN_K_PER_SPLIT)


# --------------------------------------------------------------------------- the kernels

ODD = (37, 29, 19)              # scalar loads; not a multiple of any tile, K crosses 3 steps
FOURS = (68, 36, 20)            # float4 loads and stores


@pytest.mark.parametrize("variant,shape", [(v, s) for v in (1, 2, 3, 4)
                                           for s in (ODD, FOURS, (1, 1, 1))
                                           if v != 3 or s == FOURS])    # 3: float4 loads only
@pytest.mark.parametrize("ta,tb", LAYOUTS)
def test_each_variant_and_layout_computes_the_product(emulated, variant, ta, tb, shape):
    M, N, K = shape
    a, b = operands(variant, M, N, K, ta, tb)
    check(mm.gemm(a, b, ta, tb, variant=variant), product64(a, b, ta, tb), K,
          f"variant {variant}")


@pytest.mark.parametrize("tile", mm.TILES)
@pytest.mark.parametrize("ta,tb", LAYOUTS)
@pytest.mark.parametrize("shape", [ODD, FOURS, (130, 70, 9)])
def test_variant_4_tiles_in_both_thread_orders(emulated, tile, ta, tb, shape):
    """A race between the threads of a block (a missing barrier) would make the two orders
    give different bits."""
    M, N, K = shape
    a, b = operands(4, M, N, K, ta, tb)
    got = both_schedules(lambda: (mm.gemm(a, b, ta, tb, tile=tile),))[0]
    check(got, product64(a, b, ta, tb), K, f"tile {tile}")


@pytest.mark.parametrize("shape", [(40, 24, 700), (33, 17, 515)])
@pytest.mark.parametrize("splits", [2, 3])
def test_split_k_adds_the_slices_in_order(emulated, shape, splits):
    """gW = gy^T x (TN) with K = rows split in slices: the same numbers as without a split."""
    M, N, K = shape
    a, b = operands(7, M, N, K, True, False)
    got = mm.gemm(a, b, ta=True, tile=(64, 64), splits=splits)
    check(got, product64(a, b, True, False), K, f"{splits} slices")
    check(mm.tiled_gemm(np.ascontiguousarray(a.T), b, 64, 64, 8, splits), product64(a, b, True,
                                                                                   False), K)


@pytest.mark.parametrize("epilogue", ["bias", "gelu"])
@pytest.mark.parametrize("tile", mm.TILES)
@pytest.mark.parametrize("shape", [ODD, FOURS])
def test_epilogues(emulated, epilogue, tile, shape):
    M, N, K = shape
    a, b = operands(5, M, N, K, False, True)
    bias = np.random.default_rng(6).normal(size=N).astype(np.float32)
    out = mm.gemm(a, b, tb=True, bias=bias, epilogue=epilogue, tile=tile)
    want = product64(a, b, False, True)
    if epilogue == "bias":
        check(out, want + bias, K, "bias")
    else:
        y, pre = out
        check(pre, want, K, "P (the product GELU's backward reads)")
        check(y, gelu64(want + bias), K, "gelu(product + bias)")


@pytest.mark.parametrize("ta,tb", LAYOUTS)
def test_batches_and_a_shared_operand(emulated, ta, tb):
    M, N, K, Z = 21, 13, 11, 3
    a, b = operands(8, M, N, K, ta, tb, batch=Z)
    check(mm.gemm(a, b, ta, tb), product64(a, b, ta, tb), K, "both stacked")
    check(mm.gemm(a, b[0], ta, tb), product64(a, b[:1], ta, tb), K, "b shared")
    check(mm.gemm(a[0], b, ta, tb), product64(a[:1], b, ta, tb), K, "a shared")


def test_strided_operands_are_read_in_place_or_copied(emulated):
    big = np.random.default_rng(9).normal(size=(30, 50)).astype(np.float32)
    a, b = big[:17, 3:20], big[5:22, :9]                    # row strides 50: read in place
    check(mm.gemm(a, b), product64(a, b, False, False), 17)
    check(mm.gemm(big.T[:9], big[:30, :5]), product64(big.T[:9], big[:30, :5], False, False), 30)


def test_a_planted_missing_barrier_is_caught(emulated, monkeypatch):
    """Without the barrier after the compute loop, a fast thread stages the next K step while
    others still read the current one: the emulator's result goes wrong."""
    text = emulator.load_source("matmul.cu")
    marker = ("        __syncthreads();\n    }\n#pragma unroll\n"
              "    for (int i = 0; i < 8; ++i) {\n        int m = m0 + wm")
    assert marker in text
    broken = emulator.load("matmul.cu", text=text.replace(marker, marker.replace(
        "__syncthreads();", "//", 1), 1))
    monkeypatch.setitem(emulator._libraries, ("matmul.cu", None), broken)
    a, b = operands(3, 40, 40, 40, False, False)
    with pytest.raises(AssertionError):
        check(mm.gemm(a, b, tile=(64, 64)), product64(a, b, False, False), 40)


@pytest.mark.parametrize("precision", ["bf16", "tf32"])
@pytest.mark.parametrize("ta,tb", LAYOUTS)
@pytest.mark.parametrize("shape", [(37, 29, 19), (20, 36, 40)])
def test_tensor_core_kernel_in_the_emulator(emulated, precision, ta, tb, shape):
    """matmul_tc.cu through the emulator's WMMA stand-in (emu/mma.h): which tile each fragment
    is loaded from, row- or column-major, the rounding on staging, the epilogue's indexing --
    against the float64 product of operands rounded by amp.round_to. (Not the tensor cores'
    arithmetic: that is tested on a GPU.)"""
    M, N, K = shape
    a, b = operands(14, M, N, K, ta, tb)
    want = product64(amp.round_to(a, precision), amp.round_to(b, precision), ta, tb)
    got = both_schedules(lambda: (mm.gemm(a, b, ta, tb, precision=precision,
                                          tensor_cores=True),))[0]
    check(got, want, K, precision)


@pytest.mark.parametrize("precision", ["bf16", "tf32"])
@pytest.mark.parametrize("shape,splits", [((40, 24, 700), 3), ((33, 17, 515), 2)])
def test_tensor_core_split_k_in_the_emulator(emulated, precision, shape, splits):
    """gW = gy^T x (TN) on matmul_tc.cu in K-slices: each slice's offsets and its K bound
    (a partial last slice), then the partials' sum -- against the rounded float64 product."""
    M, N, K = shape
    a, b = operands(17, M, N, K, True, False)
    want = product64(amp.round_to(a, precision), amp.round_to(b, precision), True, False)
    check(mm.gemm(a, b, ta=True, precision=precision, tensor_cores=True, splits=splits), want,
          K, f"{precision}, {splits} slices")


def test_tensor_core_plan_splits_only_what_underfills_the_gpu():
    assert mm.plan_tc(4096, 768, 768, 1, 132) == 1            # 192 tiles: measured slower split
    assert mm.plan_tc(4096, 384, 3072, 1, 132) == 1           # 96 tiles: more than half the SMs
    assert mm.plan_tc(4096, 3072, 768, 1, 132) == 1           # 768 tiles: enough
    assert mm.plan_tc(768, 768, 4096, 1, 132) == 8            # 36 tiles -> 8 slices of 512
    assert mm.plan_tc(384, 384, 4096, 1, 132) == 16           # 9 tiles -> 16 slices of 256
    assert mm.plan_tc(384, 384, 300, 1, 132) == 1             # K too short to split
    assert mm.plan_tc(384, 384, 4096, 2, 132) == 1            # a batch: never
    assert mm.plan_tc(384, 384, 4096, 1, 132, "bias") == 1    # an epilogue: never


@pytest.mark.parametrize("precision", ["bf16", "tf32"])
def test_tensor_core_epilogues_in_the_emulator(emulated, precision):
    M, N, K = 40, 36, 24
    a, b = operands(15, M, N, K, False, True)
    bias = np.random.default_rng(16).normal(size=N).astype(np.float32)
    want = product64(amp.round_to(a, precision), amp.round_to(b, precision), False, True)
    check(mm.gemm(a, b, tb=True, bias=bias, precision=precision, tensor_cores=True),
          want + bias, K, "bias")
    y, pre = mm.gemm(a, b, tb=True, bias=bias, epilogue="gelu", precision=precision,
                     tensor_cores=True)
    check(pre, want, K, "P")
    check(y, gelu64(want + bias), K, "gelu")


def test_bad_arguments_are_refused(emulated):
    a, b = operands(0, 4, 4, 4, False, False)
    with pytest.raises(ValueError, match="inner sizes differ"):
        mm.gemm(a, b[:3])
    with pytest.raises(ValueError, match="NT layout only"):
        mm.gemm(a, b, bias=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="split-K"):
        mm.gemm(a, b, tb=True, bias=np.zeros(4, np.float32), splits=2)
    with pytest.raises(ValueError, match="variant 3"):
        mm.gemm(operands(0, 5, 5, 5, False, False)[0], operands(0, 5, 5, 5, False, False)[1],
                variant=3)


# --------------------------------------------------------------------------- the ops

UNIT = {"fp32": 1e-5, "bf16": 2.0 ** -8, "tf32": 2.0 ** -11}


def grads_close(got, want, K, rtol=1e-5):
    for g, w, name in zip(got, want, ("first", "second", "third")):
        if w is None:
            assert g is None, name
        else:
            check(g, w, K, name, rtol)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "tf32"])
@pytest.mark.parametrize("lead", [(3, 5), (7,)])
def test_linear_ops_match_their_references(emulated, precision, lead):
    rng = np.random.default_rng(11)
    IN, OUT = 19, 23
    x = rng.normal(size=lead + (IN,)).astype(np.float32)
    w = rng.normal(size=(OUT, IN)).astype(np.float32)
    b = rng.normal(size=OUT).astype(np.float32)
    gy = rng.normal(size=lead + (OUT,)).astype(np.float32)
    n = int(np.prod(lead))
    for bias in (b, None):
        y, saved = mm.linear_forward(x, w, bias, precision)
        want_y, want_saved = ref_mm.linear_forward(x, w, bias, precision)
        check(y, want_y, IN, f"linear {precision}")
        grads_close(mm.linear_backward(gy, saved), ref_mm.linear_backward(gy, want_saved),
                    max(n, OUT))
    y, saved = mm.linear_gelu_forward(x, w, b, precision)
    want_y, want_saved = ref_nn.linear_gelu_forward(x, w, b, precision)
    check(y, want_y, IN, f"linear + gelu {precision}")
    grads_close(mm.linear_gelu_backward(gy, saved), ref_nn.linear_gelu_backward(gy, want_saved),
                max(n, OUT), UNIT[precision])
    gx, gw, gb = mm.linear_gelu_backward(gy, saved, (False, True, False))
    assert gx is None and gb is None and gw is not None


@pytest.mark.parametrize("sa,sb", [((2, 3), (2, 3)), ((4,), ()), ((), (4,))])
def test_matmul_op_matches_its_reference(emulated, sa, sb):
    rng = np.random.default_rng(12)
    M, K, N = 5, 7, 6
    a = rng.normal(size=sa + (M, K)).astype(np.float32)
    b = rng.normal(size=sb + (K, N)).astype(np.float32)
    assert mm.supports_matmul(a, b)
    y, saved = mm.matmul_forward(a, b)
    want, want_saved = ref_mm.matmul_forward(a, b)
    check(y, want, K)
    gy = rng.normal(size=want.shape).astype(np.float32)
    grads_close(mm.matmul_backward(gy, saved), ref_mm.matmul_backward(gy, want_saved), 24)


def test_matmul_kernel_declines_general_broadcasting():
    a = np.zeros((2, 1, 3, 4), np.float32)
    assert not mm.supports_matmul(a, np.zeros((1, 5, 4, 2), np.float32))
    assert not mm.supports_matmul(a.astype(np.float64), np.zeros((4, 2)))


def test_reduced_precision_rounds_the_operands(emulated):
    """Without tensor cores the launcher rounds the operands and runs the fp32 kernel: the
    result is the exact product of the rounded operands up to float32 accumulation, and far
    from the fp32 product (so the rounding did happen)."""
    a, b = operands(13, 33, 17, 40, False, True)
    exact = product64(a, b, False, True)
    for precision, step in (("bf16", 2.0 ** -8), ("tf32", 2.0 ** -11)):
        got = mm.gemm(a, b, tb=True, precision=precision)
        rounded = product64(amp.round_to(a, precision), amp.round_to(b, precision), False, True)
        check(got, rounded, 40, precision)
        assert np.abs(f64(got)[0] - exact).max() > 0.1 * step * np.abs(exact).max()


# --------------------------------------------------------------------------- on a GPU

BERT_SHAPES = [(4096, n, k) for k in (384, 768, 1536, 3072) for n in (384, 768, 1536, 3072)
               if (k, n) in {(384, 384), (384, 1536), (1536, 384), (768, 768), (768, 3072),
                             (3072, 768)}]


def gpu_operands(seed, M, N, K, ta, tb):
    return [backend.to_device(x, "gpu") for x in operands(seed, M, N, K, ta, tb)]


@pytest.mark.gpu
@pytest.mark.parametrize("ta,tb", LAYOUTS)
@pytest.mark.parametrize("shape", BERT_SHAPES[:4] + [ODD, FOURS, (4097, 385, 383), (1, 1, 1)])
def test_gpu_kernels_match_float64_and_cublas(ta, tb, shape):
    """Variant 4 (the plan's tile and split) and variants 1-3 at BERT and odd shapes, each
    within float32 accumulation error of float64 and as close to it as cuBLAS (TF32 off)."""
    cupy = backend.get_array_module(backend.to_device(np.zeros(1), "gpu"))
    M, N, K = shape
    a, b = gpu_operands(1, M, N, K, ta, tb)
    want = product64(a, b, ta, tb)
    cublas = (a.T if ta else a) @ (b.T if tb else b)
    err_cublas = float(np.abs(f64(cublas)[0] - want).max())
    for variant in (4, 1, 2, 3):
        if variant == 3 and any(d % 4 for d in shape):
            continue
        got = mm.gemm(a, b, ta, tb, variant=variant)
        check(got, want, K, f"variant {variant}")
        err = float(np.abs(f64(got)[0] - want).max())
        assert err <= 8 * err_cublas + 1e-6 * float(np.abs(want).max()), (variant, err,
                                                                          err_cublas)
    cupy.cuda.get_current_stream().synchronize()


# Tensor cores accumulate in float32 but not exactly as IEEE adds do (partial sums are aligned
# with fewer bits): 10x the SIMT tolerance -- still 40x below one bf16 rounding step (2^-8),
# so an operand rounded otherwise than documented (truncated, say) fails.
TENSOR_CORE_RTOL = 1e-4


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "tf32"])
@pytest.mark.parametrize("ta,tb", LAYOUTS)
@pytest.mark.parametrize("shape", [(4096, 768, 768), (768, 768, 4096), ODD, FOURS, (130, 257, 70)])
def test_gpu_tensor_core_kernels_round_as_documented(precision, ta, tb, shape):
    M, N, K = shape
    a, b = gpu_operands(2, M, N, K, ta, tb)
    want = product64(amp.round_to(a, precision), amp.round_to(b, precision), ta, tb)
    got = mm.gemm(a, b, ta, tb, precision=precision)
    check(got, want, K, precision, rtol=TENSOR_CORE_RTOL)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16", "tf32"])
@pytest.mark.parametrize("epilogue", ["bias", "gelu"])
def test_gpu_epilogues(precision, epilogue):
    M, N, K = 4096, 1536, 384
    a, b = gpu_operands(3, M, N, K, False, True)
    bias = backend.to_device(np.random.default_rng(4).normal(size=N).astype(np.float32), "gpu")
    out = mm.gemm(a, b, tb=True, bias=bias, epilogue=epilogue, precision=precision)
    want = product64(amp.round_to(a, precision), amp.round_to(b, precision), False, True)
    rtol = 1e-5 if precision == "fp32" else TENSOR_CORE_RTOL
    if epilogue == "bias":
        check(out, want + f64(bias)[0], K, rtol=rtol)
    else:
        check(out[1], want, K, "P", rtol)
        check(out[0], gelu64(want + f64(bias)[0]), K, "gelu", rtol)


@pytest.mark.gpu
def test_gpu_split_k_weight_gradient():
    M, N, K = 384, 384, 4096                          # gW of a MiniLM projection
    a, b = gpu_operands(5, M, N, K, True, False)
    assert mm.plan(M, N, K, 1, mm.runtime.for_array(a).sm_count)[2] > 1
    check(mm.gemm(a, b, ta=True), product64(a, b, True, False), K, "split-K")
