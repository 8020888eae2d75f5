"""minitune.cpu.attention against the reference ops.nn.attention_forward / _backward."""
import numpy as np
import pytest

from minitune.cpu import attention as fused
from minitune.ops import nn as ref
from cpu_helpers import DTYPES, FusedDraws, assert_same, pool_threads  # noqa: F401


def bert_mask(rng, B, T, dtype, batch=True):
    """(B, 1, 1, T) additive padding mask; sequence 0 has every key masked."""
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = 0
    keep = np.arange(T)[None, :] < lengths[:, None]
    bias = ((1.0 - keep) * np.finfo(dtype).min).astype(dtype)[:, None, None, :]
    return bias if batch else bias[:1]


def heads(rng, B, NH, T, HS, dtype):
    """(B, NH, T, HS) as the model makes it: a transposed view of (B, T, NH, HS)."""
    return rng.standard_normal((B, T, NH, HS)).astype(dtype).transpose(0, 2, 1, 3)


def generated_kernels_available():
    from minitune.cpu import linear
    return linear.GEMM is not None and linear.GEMM.small(
        np.float32, False, True, 2, 2, 2, 2, 2, 2) is not None


@pytest.fixture(params=["generated kernels", "slices"])
def path(request, monkeypatch):
    """Each test runs both ways: per head with MKL's generated small GEMMs (where MKL is
    installed), and per slice of sequences with BLAS calls (every other BLAS)."""
    if request.param == "slices":
        monkeypatch.setattr(fused, "_small_kernels", lambda dtype, specs: None)
    elif not generated_kernels_available():
        pytest.skip("MKL (its JIT GEMM) is not installed: only the slices path runs here")
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 2, 7, 5), (9, 3, 33, 8), (5, 3, 12, 8)])
@pytest.mark.parametrize("mask", ["none", "batch", "shared"])
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_attention_matches_reference(dtype, shape, mask, p, pool_threads, path):
    """T = 12: each head's (T, T) probabilities are whole cache lines, copied with streaming
    stores (vecmath.stream_copy); the other T, with the plain copy."""
    rng = np.random.default_rng(sum(shape))
    B, NH, T, HS = shape
    q, k, v = (heads(rng, B, NH, T, HS, dtype) for _ in range(3))
    bias = None if mask == "none" else bert_mask(rng, B, T, dtype, batch=mask == "batch")
    scale = 1 / np.sqrt(HS)
    assert fused.supports(q, k, v, bias)
    out, saved = fused.attention_forward(q, k, v, bias, scale, p, np.random.default_rng(7))
    # the reference, given the fused path's dropout mask
    out_ref, saved_ref = ref.attention_forward(q, k, v, bias, scale, p, FusedDraws(7))
    assert_same(out, out_ref, dtype)
    gout = rng.standard_normal(out.shape).astype(dtype)
    for got, want in zip(fused.attention_backward(gout, saved),
                         ref.attention_backward(gout, saved_ref)):
        assert_same(got, want, dtype, scale=T)


@pytest.mark.parametrize("shape", [(0, 2, 3, 4), (2, 0, 3, 4)])
def test_empty_batches_give_empty_results(shape, pool_threads, path):
    q = np.zeros(shape, np.float32)
    out, saved = fused.attention_forward(q, q, q, None, 0.5, 0.1, np.random.default_rng(0))
    assert out.shape == shape
    assert all(g.shape == shape for g in fused.attention_backward(out, saved))


def test_other_masks_and_mixed_dtypes_are_left_to_the_reference():
    q = np.zeros((2, 3, 4, 5), np.float32)
    assert not fused.supports(q, q, q, np.zeros((2, 3, 4, 4), np.float32))    # per-head mask
    assert not fused.supports(q, q, q.astype(np.float64), None)
    assert not fused.supports(q, q, q, np.zeros((2, 1, 1, 4), np.float64))


def test_outputs_are_laid_out_as_tokens_so_merging_heads_copies_nothing(path):
    rng = np.random.default_rng(3)
    B, NH, T, HS = 3, 4, 9, 5
    q, k, v = (heads(rng, B, NH, T, HS, np.float32) for _ in range(3))
    out, saved = fused.attention_forward(q, k, v, None, 0.5, 0.2, np.random.default_rng(0))
    grads = fused.attention_backward(out.copy(), saved)
    for a in (out, *grads):
        assert a.shape == (B, NH, T, HS)
        merged = a.transpose(0, 2, 1, 3)
        assert merged.flags.c_contiguous                     # (B, T, NH, HS) in memory
        assert np.shares_memory(merged.reshape(B, T, NH * HS), a)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_of_any_layout_is_taken(dtype, path, monkeypatch):
    """gout whose head rows are not contiguous (here: HS the slowest axis) is copied once
    into the token layout; the gradients are the reference's."""
    rng = np.random.default_rng(5)
    B, NH, T, HS = 2, 3, 6, 4
    q, k, v = (heads(rng, B, NH, T, HS, dtype) for _ in range(3))
    out, saved = fused.attention_forward(q, k, v, None, 0.5, 0.0, None)
    _, saved_ref = ref.attention_forward(q, k, v, None, 0.5, 0.0, None)
    gout = rng.standard_normal((HS, B, NH, T)).astype(dtype).transpose(1, 2, 3, 0)
    assert fused._ld(gout) is None
    made = []                              # what the backward asked for: kernels or None
    kernels = fused._small_kernels
    monkeypatch.setattr(fused, "_small_kernels",
                        lambda dtype, specs: made.append(kernels(dtype, specs)) or made[-1])
    for got, want in zip(fused.attention_backward(gout, saved),
                         ref.attention_backward(gout, saved_ref)):
        assert_same(got, want, dtype, scale=T)
    # the copy let the backward take the path chosen for this test
    assert (made[-1] is not None) == (path == "generated kernels")


def test_generated_kernels_are_made_once_per_shape_and_layout():
    if not generated_kernels_available():
        pytest.skip("MKL (its JIT GEMM) is not installed")
    from minitune.cpu import linear
    spec = (False, True, 5, 5, 3, 12, 12, 5)
    first = linear.GEMM.small(np.float32, *spec)
    assert linear.GEMM.small(np.float32, *spec) is first
    assert linear.GEMM.small(np.float64, *spec) is not first
    assert first.dtype == np.int64 and first.shape == (2,) and first.all()


def test_past_the_cap_no_kernel_is_made_and_the_slices_run(monkeypatch):
    if not generated_kernels_available():
        pytest.skip("MKL (its JIT GEMM) is not installed")
    from minitune.cpu import linear
    monkeypatch.setattr(linear.GEMM, "small_kernels", {})
    monkeypatch.setattr(linear, "_MAX_SMALL_KERNELS", 1)
    assert linear.GEMM.small(np.float32, False, True, 3, 3, 2, 2, 2, 3) is not None
    assert linear.GEMM.small(np.float32, False, True, 4, 4, 2, 2, 2, 4) is None
    rng = np.random.default_rng(2)
    q, k, v = (heads(rng, 2, 2, 5, 3, np.float32) for _ in range(3))
    out, _ = fused.attention_forward(q, k, v, None, 0.5, 0.0, None)
    want, _ = ref.attention_forward(q, k, v, None, 0.5, 0.0, None)
    assert_same(out, want, np.float32)
    assert len(linear.GEMM.small_kernels) == 1               # the one made; none past the cap


def test_under_no_grad_the_probabilities_are_not_kept(path):
    from minitune import no_grad
    rng = np.random.default_rng(4)
    q, k, v = (heads(rng, 4, 3, 11, 5, np.float32) for _ in range(3))
    with no_grad():
        out, saved = fused.attention_forward(q, k, v, None, 0.4, 0.0, None)
    want, _ = ref.attention_forward(q, k, v, None, 0.4, 0.0, None)
    assert saved[3] is None
    assert_same(out, want, np.float32)


@pytest.mark.parametrize("lo, hi, NH", [(0, 1, 1), (0, 3, 12), (5, 9, 4), (2, 3, 7)])
def test_the_next_head_is_the_following_one_and_none_after_the_chunk(lo, hi, NH):
    """What the row passes prefetch: each head's successor in the chunk's order, and nothing
    after the chunk's last head (its successor belongs to another thread's chunk, or lies past
    the end of the arrays)."""
    order = [(b, h) for b in range(lo, hi) for h in range(NH)]
    for here, after in zip(order, order[1:] + [(-1, -1)]):
        assert fused._next_head(*here, hi, NH) == after


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_prefetching_the_next_head_changes_no_bit(p, pool_threads, monkeypatch):
    """The heads' row passes prefetch the next head's rows (a hint): with it off, every output
    and gradient is the same to the bit."""
    if not generated_kernels_available():
        pytest.skip("MKL (its JIT GEMM) is not installed: the heads path does not run")
    rng = np.random.default_rng(5)
    B, NH, T, HS = 4, 3, 16, 8
    q, k, v = (heads(rng, B, NH, T, HS, np.float32) for _ in range(3))
    bias = bert_mask(rng, B, T, np.float32, batch=True)
    gout = rng.standard_normal((B, NH, T, HS)).astype(np.float32)
    results = []
    for on in (True, False):
        monkeypatch.setattr(fused, "PREFETCH", on)
        out, saved = fused.attention_forward(q, k, v, bias, 0.35, p, np.random.default_rng(7))
        results.append([out, *fused.attention_backward(gout, saved)])
    for with_prefetch, without in zip(*results):
        np.testing.assert_array_equal(with_prefetch, without)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["stacked q|k|v columns", "contiguous heads"])
@pytest.mark.parametrize("gemm", ["library", "numpy"])
def test_scores_match_matmul(dtype, layout, gemm, monkeypatch):
    """q k^T per (sequence, head), as one strided batch GEMM per sequence where the library
    has one, equals numpy's matmul, for the layouts the model hands over."""
    from minitune.cpu import linear
    if gemm == "numpy":
        monkeypatch.setattr(linear, "GEMM", None)
    B, NH, T, HS = 3, 5, 17, 7
    rng = np.random.default_rng(3)
    if layout == "contiguous heads":
        q, k = (rng.standard_normal((B, NH, T, HS)).astype(dtype) for _ in range(2))
    else:                    # views of one (B, T, 3H) product, as BertSelfAttention makes them
        y = rng.standard_normal((B, T, 3 * NH * HS)).astype(dtype)
        q, k = (y[..., i * NH * HS:(i + 1) * NH * HS].reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
                for i in range(2))
    s = np.empty((B, NH, T, T), dtype)
    fused._scores(q, k, s)
    assert_same(s, np.matmul(q, k.swapaxes(-1, -2)), dtype, scale=HS)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_of_stacked_qkv_come_joined_and_equal(dtype, path):
    """q, k, v split from one (B*T, 3H) array (the stacked q/k/v Linear's output): the
    backward writes gq, gk, gv into one array of that layout, which StackedLinear's backward
    then reads without a copy; the values are those of separate arrays."""
    from minitune.ops import matmul
    B, NH, T, HS = 2, 3, 5, 4
    H = NH * HS
    rng = np.random.default_rng(0)
    y = rng.standard_normal((B * T, 3 * H)).astype(dtype).reshape(B, T, 3 * H)
    q, k, v = (y[..., i * H:(i + 1) * H].reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
               for i in range(3))
    out, saved = fused.attention_forward(q, k, v, None, 0.5, 0.0, None)
    gout = rng.standard_normal(out.shape).astype(dtype)
    grads = fused.attention_backward(gout, saved)
    merged = [g.transpose(0, 2, 1, 3).reshape(B, T, H) for g in grads]   # the heads' way back
    joined = matmul._joined(merged, [0, H, 2 * H, 3 * H])
    assert joined is not None
    separate = fused.attention_backward(gout, (q.copy(), k.copy(), v.copy()) + saved[3:])
    for g, want in zip(grads, separate):
        np.testing.assert_array_equal(g, want)
    np.testing.assert_array_equal(joined, np.concatenate(merged, axis=-1))


def test_gradients_of_one_array_used_thrice_stay_separate(path):
    """q, k and v the same view (a base of 3x its size, but not q|k|v side by side): the
    gradients must not share memory."""
    B, NH, T, HS = 2, 2, 3, 4
    base = np.random.default_rng(1).standard_normal((B * T, 3 * NH * HS))
    q = base.reshape(B, T, 3 * NH * HS)[..., :NH * HS].reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
    gq, gk, gv = fused._gradients_like(q, q, q)
    assert not np.shares_memory(gq, gk) and not np.shares_memory(gk, gv)
    out, saved = fused.attention_forward(q, q, q, None, 0.5, 0.0, None)
    gout = np.ones_like(out)
    got = fused.attention_backward(gout, saved)
    want = fused.attention_backward(gout, (q.copy(), q.copy(), q.copy()) + saved[3:])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_an_mkl_without_its_jit_keeps_its_gemm():
    """A library that lacks the JIT symbols still gives its ordinary GEMM; small() is None."""
    from minitune.cpu import linear

    from types import SimpleNamespace

    def sgemm(*args):
        pass

    def dgemm(*args):
        pass

    library = SimpleNamespace(cblas_sgemm=sgemm, cblas_dgemm=dgemm)     # no JIT symbols
    gemm = linear._Gemm("old", library, ("cblas_sgemm", "cblas_dgemm"), int, False,
                        jit_symbols=("mkl_cblas_jit_create_sgemm", "mkl_cblas_jit_create_dgemm",
                                     "mkl_jit_get_sgemm_ptr", "mkl_jit_get_dgemm_ptr"))
    assert gemm.fns and gemm.small(np.float32, False, True, 4, 4, 2, 2, 2, 4) is None
