"""Fused attention (kernels/attention.cu): the kernels (CPU emulator; GPU when present) against
the reference op, dropout masks included. (Its NumPy algorithm against plain attention, under
hypothesis: test_attention_algorithm.py -- kept apart so that this file needs no hypothesis on
the GPU machine.)

Tolerances, float32 kernels against the float64 reference: rtol 2e-5, atol 2e-6 x max|ref|
(sums of up to T products of O(1) values, each rounded in float32: errors seen ~1e-6).
"""
import numpy as np
import pytest
from minitune import cuda
from minitune.cuda import attention as A
from minitune.cuda import emulator
from minitune.ops import nn as ref
from minitune.testing import assert_close
from kernel_helpers import attention_draws, attention_inputs as inputs, both_schedules, f64, gpu

RTOL, ATOL = 2e-5, 2e-6


def close(actual, expected, what):
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    assert_close(actual, expected, rtol=RTOL, atol=ATOL * max(scale, 1.0), msg=what)


def test_fully_masked_rows_keep_their_uniform_probabilities():
    """Why the kernels keep (m, L) and not m + L: with m = -3.4e38 the sum loses L = log T."""
    q, k, v, bias, gout = inputs(0, 1, 1, 7, 4, all_masked_row=True)
    out, m, L = A.tiled_forward(q, k, v, bias[:, 0, 0, :], 0.5)
    assert m[0, 0, 0] < -1e38 and abs(L[0, 0, 0] - np.log(7)) < 1e-6
    assert np.float32(m[0, 0, 0] + L[0, 0, 0]) == m[0, 0, 0]          # log T is lost in the sum
    assert_close(out[0, 0], np.broadcast_to(v[0, 0].mean(axis=0), (7, 4)), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- the kernels

TILED, BLOCKED = (2, 3), (5, 6)    # (forward, backward) variants: 2-4, and the blocked 5-7
CASES = [  # (B, NH, T, HS), dropout p, masked -- odd T, tails of tiles, SPLIT 1, 2 and 4
    ((2, 3, 13, 8), 0.0, True),
    ((1, 2, 33, 32), 0.1, True),
    ((2, 2, 37, 40), 0.3, True),
    ((1, 1, 45, 70), 0.2, False),
    ((2, 1, 5, 3), 0.0, False),
    ((1, 1, 1, 1), 0.0, True),
]
# Variants 5-7: SPLIT 4 (HS <= 64) blocks hold 128 queries (forward) or 64 queries or keys
# (backward), SPLIT 8 blocks half that: T = 130 and T = 70 give several blocks, the last one
# partial, and several key tiles; T = 1 the smallest; HS 33 and 100 a padded last float4.
BLOCKED_CASES = [
    ((2, 1, 130, 48), 0.1, True),
    ((2, 2, 37, 33), 0.3, True),
    ((1, 1, 70, 64), 0.2, False),
    ((2, 1, 70, 100), 0.2, True),
    ((1, 1, 1, 40), 0.0, True),
]


def run_kernels(q, k, v, bias, gout, p, variant=2, backward_variant=None):
    out, saved = A.forward(q, k, v, bias, 1 / np.sqrt(q.shape[-1]), p, np.random.default_rng(7),
                           variant=variant)
    return (out, saved[6], saved[7]) + A.backward(gout, saved, variant=backward_variant)


@pytest.mark.emulator
@pytest.mark.parametrize("shape,p,masked,variants",
                         [pytest.param(*c, TILED, id=f"tiled-{c}") for c in CASES] +
                         [pytest.param(*c, BLOCKED, id=f"blocked-{c}") for c in BLOCKED_CASES])
def test_kernels_match_the_reference_op(emulated, shape, p, masked, variants):
    q, k, v, bias, gout = inputs(1, *shape, masked=masked, all_masked_row=masked)
    out, m, L, gq, gk, gv = both_schedules(lambda: run_kernels(q, k, v, bias, gout, p,
                                                               *variants))
    draws = attention_draws(7, *shape[:3]) if p else None
    expected, saved = ref.attention_forward(*f64(q, k, v, bias), 1 / np.sqrt(shape[-1]), p, draws)
    close(out, expected, "out")
    for got, want, name in zip((gq, gk, gv), ref.attention_backward(f64(gout)[0], saved), "qkv"):
        close(got, want, f"g{name}")
    # the saved row statistics: m + L is the logsumexp of each (unmasked) row's scores
    scores = np.einsum("bhid,bhjd->bhij", *f64(q, k)) / np.sqrt(shape[-1])
    if bias is not None:
        scores = scores + f64(bias)[0]
    lse = np.log(np.exp(scores - scores.max(-1, keepdims=True)).sum(-1)) + scores.max(-1)
    rows = slice(1, None) if masked else slice(None)      # row 0 of a masked batch: all masked
    assert_close((m + L).reshape(lse.shape)[rows], lse[rows], rtol=1e-5, atol=1e-5)


@pytest.mark.emulator
@pytest.mark.parametrize("shape,p", [((2, 2, 13, 8), 0.0), ((1, 2, 21, 40), 0.25)])
def test_naive_forward_matches_the_tiled_one(emulated, shape, p):
    q, k, v, bias, gout = inputs(2, *shape)
    naive = run_kernels(q, k, v, bias, gout, p, variant=1)
    tiled = run_kernels(q, k, v, bias, gout, p, variant=2)
    for a, b in zip(naive[:3], tiled[:3]):
        close(a, b, "naive vs tiled")


@pytest.mark.emulator
@pytest.mark.parametrize("HS,variants", [(8, TILED), (40, BLOCKED)], ids=["tiled", "blocked"])
def test_head_split_views_are_read_in_place_and_results_merge_for_free(emulated, HS, variants):
    """q, k, v as the model passes them -- (B, T, NH, HS) transposed -- need no copy, and the
    results are laid out (B, T, NH, HS), so merging heads is a reshape without a copy; the
    backward reads a gout of the same layout through its own strides."""
    rng = np.random.default_rng(3)
    B, T, NH = 2, 9, 3
    q, k, v, gout = (rng.normal(size=(B, T, NH, HS)).astype(np.float32).transpose(0, 2, 1, 3)
                     for _ in range(4))
    out, saved = A.forward(q, k, v, None, 0.3, 0.0, None, variant=variants[0])
    assert saved[0] is q                                            # not copied
    assert out.transpose(0, 2, 1, 3).flags.c_contiguous
    expected, ref_saved = ref.attention_forward(*f64(q, k, v), None, 0.3, 0.0, None)
    close(out, expected, "out")
    grads = A.backward(gout, saved, variant=variants[1])
    for got, want, name in zip(grads, ref.attention_backward(f64(gout)[0], ref_saved), "qkv"):
        close(got, want, f"g{name}")


@pytest.mark.emulator
@pytest.mark.parametrize("shape", [(2, 2, 37, 48), (2, 1, 45, 100)])
def test_blocked_variants_drop_what_the_tiled_ones_drop(emulated, shape):
    """Variants 5-7 against 2-4, dropout on and one mask row broadcast over the batch: the
    same Philox keep rule, so the outputs agree to rounding (a mask differing in one element
    would move an output by ~1/T)."""
    q, k, v, bias, gout = inputs(5, *shape, all_masked_row=False)
    bias = bias[:1]                                                  # (1, 1, 1, T): broadcast
    tiled = run_kernels(q, k, v, bias, gout, 0.4, *TILED)
    blocked = run_kernels(q, k, v, bias, gout, 0.4, *BLOCKED)
    for a, b, name in zip(blocked, tiled, ("out", "m", "L", "gq", "gk", "gv")):
        close(a, b, f"blocked vs tiled {name}")


@pytest.mark.emulator
def test_default_dispatch_and_the_blocked_switch(emulated, monkeypatch):
    """The default stays on variants 2-4; USE_BLOCKED moves HS > BLOCKED_MIN_HEAD_SIZE (only)
    to 5-7, forward and backward."""
    launched = []
    launch = emulator.Library.launch
    monkeypatch.setattr(emulator.Library, "launch",
                        lambda self, kernel, *a, **kw: (launched.append(kernel),
                                                        launch(self, kernel, *a, **kw)))

    def kernels(HS):
        launched.clear()
        q, k, v, bias, gout = inputs(6, 1, 1, 3, HS)
        run_kernels(q, k, v, bias, gout, 0.0, None)
        return launched[:]

    assert not A.USE_BLOCKED
    assert kernels(48) == ["attention_forward_s2", "attention_backward_dq_s2",
                           "attention_backward_dkdv_s2"]
    monkeypatch.setattr(A, "USE_BLOCKED", True)
    assert kernels(48) == ["attention_forward_b4", "attention_backward_dq_b4",
                           "attention_backward_dkdv_b4"]
    assert kernels(100) == ["attention_forward_b8", "attention_backward_dq_b8",
                            "attention_backward_dkdv_b8"]
    assert kernels(32) == ["attention_forward_s1", "attention_backward_dq_s1",
                           "attention_backward_dkdv_s1"]
    with pytest.raises(ValueError, match="variant 4"):
        A.forward(*inputs(6, 1, 1, 3, 8)[:4], 1.0, 0.0, None, variant=4)


def test_supports_and_registration():
    q = np.zeros((2, 3, 5, 64), np.float32)
    assert cuda.KERNELS["attention"].supports(q, q, q, np.zeros((2, 1, 1, 5), np.float32))
    assert cuda.KERNELS["attention"].supports(q, q, q, None)
    assert not A.supports(q.astype(np.float64), q, q)                       # dtype
    assert not A.supports(np.zeros((1, 1, 5, 129), np.float32), *[np.zeros((1, 1, 5, 129),
                                                                            np.float32)] * 2)
    assert not A.supports(q, q, q, np.zeros((2, 1, 5, 5), np.float32))     # not a key mask


# --------------------------------------------------------------------------- on the GPU

GPU_CASES = [((32, 12, 128, 32), 0.1), ((4, 12, 512, 64), 0.1), ((3, 5, 77, 48), 0.0),
             ((2, 2, 200, 100), 0.2)]


@pytest.mark.gpu
@pytest.mark.parametrize("variants", [TILED, BLOCKED], ids=["tiled", "blocked"])
@pytest.mark.parametrize("shape,p", GPU_CASES)
def test_gpu_kernels_match_the_reference_and_the_cupy_path(shape, p, variants):
    """Kernel (cupy) vs the reference op on cupy arrays (the unfused CuPy path) vs the float64
    CPU reference, forward and backward, BERT shapes and odd ones, dropout masks identical;
    variants 2-4 and the register-blocked 5-7."""
    q, k, v, bias, gout = inputs(4, *shape)
    scale = 1 / np.sqrt(shape[-1])
    out, m, L, gq, gk, gv = run_kernels(*gpu(q, k, v, bias, gout), p, *variants)
    draws = attention_draws(7, *shape[:3]) if p else None
    expected, saved = ref.attention_forward(*f64(q, k, v, bias), scale, p, draws)
    expected_grads = ref.attention_backward(f64(gout)[0], saved)
    cupy_out, cupy_saved = ref.attention_forward(*gpu(q, k, v, bias), scale, p, draws)
    cupy_grads = ref.attention_backward(gpu(gout)[0], cupy_saved)
    close(f64(out)[0], expected, "kernel out")
    close(f64(cupy_out)[0], expected, "cupy out")
    for got, cp, want, name in zip((gq, gk, gv), cupy_grads, expected_grads, "qkv"):
        close(f64(got)[0], want, f"kernel g{name}")
        close(f64(cp)[0], want, f"cupy g{name}")


@pytest.mark.gpu
@pytest.mark.parametrize("HS,variant", [(16, 2), (16, 5), (64, 5), (100, 5)])
def test_gpu_dropout_keep_rate_determinism_and_backward_mask(HS, variant):
    """Keep rate within 5 sigma of 1 - p; the same seed gives the same output; backward sees
    the forward's mask (checked above against the reference fed the same Philox draws)."""
    B, NH, T, p = 8, 4, 128, 0.1
    q = np.zeros((B, NH, T, HS), np.float32)
    v = np.ones((B, NH, T, HS), np.float32)
    qg, vg = gpu(q, v)
    # q = 0: uniform p = 1/T; v = 1: out = (kept count) * dscale / T
    out1, _ = A.forward(qg, qg, vg, None, 1.0, p, np.random.default_rng(11), variant=variant)
    out2, _ = A.forward(qg, qg, vg, None, 1.0, p, np.random.default_rng(11), variant=variant)
    assert np.array_equal(f64(out1)[0], f64(out2)[0])
    kept = f64(out1)[0][..., 0] * T / (65536 / (65536 - round(p * 65536)))
    rate = kept.sum() / (B * NH * T * T)
    sigma = np.sqrt(p * (1 - p) / (B * NH * T * T))
    assert abs(rate - (1 - p)) < 5 * sigma, (rate, sigma)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(4, 12, 512, 64), (3, 5, 77, 48), (2, 2, 200, 100)])
def test_gpu_blocked_variants_agree_with_the_tiled_ones(shape):
    """Variants 5-7 against 2-4 on the GPU, dropout on: the same masks, outputs equal to
    rounding, and two runs of the blocked backward bit-identical (no atomics)."""
    q, k, v, bias, gout = gpu(*inputs(8, *shape))
    tiled = run_kernels(q, k, v, bias, gout, 0.1, *TILED)
    blocked = run_kernels(q, k, v, bias, gout, 0.1, *BLOCKED)
    again = run_kernels(q, k, v, bias, gout, 0.1, *BLOCKED)
    for a, b, c, name in zip(blocked, tiled, again, ("out", "m", "L", "gq", "gk", "gv")):
        close(f64(a)[0], f64(b)[0], f"blocked vs tiled {name}")
        assert np.array_equal(f64(a)[0], f64(c)[0]), f"blocked {name} not deterministic"
