"""minitune.cpu.linear against the reference ops.matmul.linear_forward / linear_backward, with
every GEMM library this machine has (MKL when the wheel is installed, numpy's OpenBLAS)."""
import numpy as np
import pytest

from minitune.cpu import linear as fused
from minitune.ops import matmul as ref
from cpu_helpers import DTYPES, assert_same, pool_threads  # noqa: F401

LIBRARIES = {name: gemm for name, gemm in (("mkl", fused._mkl()), ("openblas", fused._openblas()))
             if gemm is not None}


@pytest.fixture(params=sorted(LIBRARIES) or [None])
def library(request, monkeypatch):
    if request.param is None:
        pytest.skip("no GEMM library reachable through ctypes: the reference runs")
    monkeypatch.setattr(fused, "GEMM", LIBRARIES[request.param])
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead, IN, OUT", [((1,), 3, 5), ((67,), 37, 41), ((3, 131), 33, 70),
                                           ((2, 300), 64, 96), ((3, 131), 70, 33),
                                           ((2, 300), 96, 64), ((5, 70), 7, 3), ((5, 70), 1, 1),
                                           ((5, 70), 1, 4)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_reference(dtype, lead, IN, OUT, with_bias, pool_threads, library):
    rng = np.random.default_rng(IN * OUT)
    x = rng.standard_normal(lead + (IN,)).astype(dtype)
    w = rng.standard_normal((OUT, IN)).astype(dtype)
    b = rng.standard_normal(OUT).astype(dtype) if with_bias else None
    gy = rng.standard_normal(lead + (OUT,)).astype(dtype)
    assert fused.supports(x, w, b)
    y, saved = fused.linear_forward(x, w, b)
    y_ref, saved_ref = ref.linear_forward(x, w, b)
    assert_same(y, y_ref, dtype, scale=np.sqrt(IN))
    for needs in [(True, True, with_bias), (False, True, False), (True, False, False)]:
        got = fused.linear_backward(gy, saved, needs)
        want = ref.linear_backward(gy, saved_ref, needs)
        for g, g_ref, n in zip(got, want, (np.prod(lead), np.prod(lead), np.prod(lead))):
            assert_same(g, g_ref, dtype, scale=np.sqrt(n * OUT))


def test_linear_reads_strided_inputs(library):
    """A transposed (non-contiguous) input and gradient give the reference's values."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3, 16)).astype(np.float32).transpose(1, 0, 2)   # (3, 40, 16)
    w = rng.standard_normal((24, 16)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    gy = rng.standard_normal((40, 3, 24)).astype(np.float32).transpose(1, 0, 2)
    y, saved = fused.linear_forward(x, w, b)
    y_ref, saved_ref = ref.linear_forward(x, w, b)
    assert_same(y, y_ref, np.float32, scale=4)
    for g, g_ref in zip(fused.linear_backward(gy, saved), ref.linear_backward(gy, saved_ref)):
        assert_same(g, g_ref, np.float32, scale=12)


@pytest.mark.parametrize("OUT", [40, 56])          # gw cut by inputs; by outputs
def test_weight_gradient_does_not_depend_on_the_load(library, monkeypatch, OUT):
    """gw and gb are cut into blocks, one per thread of the setting: when a busy machine
    leaves fewer threads active, the blocks are the same, and so are gw and gb to the last
    bit."""
    from minitune.cpu import threads
    rng = np.random.default_rng(2)
    x = rng.standard_normal((700, 48)).astype(np.float32)
    w = rng.standard_normal((OUT, 48)).astype(np.float32)
    gy = rng.standard_normal((700, OUT)).astype(np.float32)
    before = threads.num_threads()
    threads.set_adaptive(False)
    threads.set_num_threads(2)
    try:
        _, saved = fused.linear_forward(x, w, rng.standard_normal(OUT).astype(np.float32))
        both = fused.linear_backward(gy, saved)
        assert all(g is not None for g in both)
        monkeypatch.setattr(threads, "active_threads", lambda: 1)
        one = fused.linear_backward(gy, saved)
    finally:
        threads.set_adaptive(True)
        threads.set_num_threads(before)
    for a, b in zip(both, one):
        assert (a is None and b is None) or np.array_equal(a, b)


def test_unsupported_inputs_fall_back():
    x32, w64 = np.ones((2, 3), np.float32), np.ones((4, 3), np.float64)
    assert not fused.supports(x32, w64)
    assert not fused.supports(x32, w64.astype(np.float32), np.ones(4, np.float64))
    assert not fused.supports(np.ones((2, 3), np.int64), np.ones((4, 3), np.int64))


def test_rounded_precision_runs_the_reference():
    """amp's bf16/tf32 products are the reference's (operands rounded), bit for bit."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    w = rng.standard_normal((6, 8)).astype(np.float32)
    y, saved = fused.linear_forward(x, w, None, "bf16")
    y_ref, _ = ref.linear_forward(x, w, None, "bf16")
    np.testing.assert_array_equal(y, y_ref)
    for g, g_ref in zip(fused.linear_backward(y, saved), ref.linear_backward(y, saved)):
        assert (g is None and g_ref is None) or np.array_equal(g, g_ref)


def test_gemm_library_names_what_runs():
    assert fused.gemm_library() in ("mkl", "openblas", "numpy")
    assert (fused.GEMM is None) == (fused.gemm_library() == "numpy")


@pytest.mark.parametrize("choice, intel, want", [("numpy", True, "numpy"),
                                                 ("openblas", True, "openblas"),
                                                 ("", False, "openblas"),
                                                 ("", True, "mkl"), ("mkl", False, "mkl")])
def test_gemm_choice(choice, intel, want, monkeypatch):
    """MINITUNE_GEMM chooses; unset, MKL runs on Intel CPUs where it is installed."""
    monkeypatch.setenv("MINITUNE_GEMM", choice)
    monkeypatch.setattr(fused, "_intel_cpu", lambda: intel)
    if want == "mkl" and fused._mkl() is None:
        want = "openblas"                        # the wheel is not installed: OpenBLAS instead
    if want == "openblas" and fused._openblas() is None:
        want = "numpy"
    gemm = fused._find_gemm()
    assert (gemm.name if gemm is not None else "numpy") == want
