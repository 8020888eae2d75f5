"""minitune.cpu.gelu against the reference ops.nn.gelu_forward / gelu_backward, and its
linear + GELU against ops.nn.linear_gelu_forward / linear_gelu_backward."""
import numpy as np
import pytest

from minitune import dispatch, no_grad
from minitune.cpu import gelu as fused
from minitune.ops import nn as ref
from cpu_helpers import DTYPES, assert_same, pool_threads  # noqa: F401


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (3, 5), (2, 7, 37), (67, 1541)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_gelu_matches_reference(dtype, shape, with_bias, pool_threads):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 3).astype(dtype)        # both tails of Phi
    bias = rng.standard_normal(shape[-1]).astype(dtype) if with_bias else None
    gy = rng.standard_normal(shape).astype(dtype)
    y, saved = fused.gelu_forward(x, bias)
    y_ref, saved_ref = ref.gelu_forward(x, bias)
    assert_same(y, y_ref, dtype)
    gx, gb = fused.gelu_backward(gy, saved)
    gx_ref, gb_ref = ref.gelu_backward(gy, saved_ref)
    assert_same(gx, gx_ref, dtype)
    assert_same(gb, gb_ref, dtype, scale=np.sqrt(x.size))


def test_gelu_keeps_only_its_input_for_backward():
    x = np.ones((4, 6), np.float32)
    _, saved = fused.gelu_forward(x, np.zeros(6, np.float32))
    assert saved[0] is x                                      # no (N, I) copies kept
    assert sum(a.size for a in saved if isinstance(a, np.ndarray)) == x.size + 6


def test_gelu_extreme_values():
    x = np.array([[-1e4, -40.0, -9.5, -0.0, 1e-30, 9.5, 40.0, 1e4, np.nan]], np.float32)
    y, saved = fused.gelu_forward(x)
    np.testing.assert_array_equal(y[0, :2], [0.0, 0.0])
    np.testing.assert_array_equal(y[0, 6:8], x[0, 6:8])
    assert np.isnan(y[0, 8])
    gx, _ = fused.gelu_backward(np.ones_like(x), saved)
    np.testing.assert_array_equal(gx[0, [0, 1, 6, 7]], [0.0, 0.0, 1.0, 1.0])


def test_float32_error_against_exact_gelu():
    """The float32 kernel against the float64 GELU (library erf) on a grid of [-10, 10] and on
    normal draws: max |error| in y and in dy/du at the level gelu.py documents. A coarser exp or
    erfc approximation (one polynomial term fewer, a wrong constant) fails this."""
    grid = np.arange(-10.0, 10.0, 1e-4)
    draws = np.random.default_rng(0).standard_normal(200_000) * 4
    x = np.concatenate([grid, draws]).astype(np.float32).reshape(-1, 1000)
    u = x.astype(np.float64)
    cdf = 0.5 * (1.0 + ref.erf(u / np.sqrt(2.0)))
    y, saved = fused.gelu_forward(x)
    gx, _ = fused.gelu_backward(np.ones_like(x), saved)
    assert np.max(np.abs(y - u * cdf)) < 4.3e-7
    assert np.max(np.abs(gx - (cdf + u * np.exp(-0.5 * u * u) / np.sqrt(2.0 * np.pi)))) < 3.2e-7


def test_gelu_infinities_as_the_reference():
    x = np.array([[np.inf, -np.inf, 13.3, -13.3]], np.float32)   # exp(-u^2/2) underflows to 0
    with np.errstate(invalid="ignore"):
        y_ref, saved_ref = ref.gelu_forward(x)
        gx_ref, _ = ref.gelu_backward(np.ones_like(x), saved_ref)
    y, saved = fused.gelu_forward(x)
    gx, _ = fused.gelu_backward(np.ones_like(x), saved)
    np.testing.assert_array_equal(y, y_ref)                      # inf, NaN (-inf * 0), 13.3, -0
    np.testing.assert_array_equal(gx[0, :3], gx_ref[0, :3])      # NaN (inf * 0) twice, 1


# Linear + GELU: the forward keeps GELU's slope over the product, the backward uses it.

def _linear_gelu_case(dtype, lead, IN, I, with_bias, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(lead + (IN,)).astype(dtype)
    w = (rng.standard_normal((I, IN)) * 2 / np.sqrt(IN)).astype(dtype)   # u over both tails
    b = rng.standard_normal(I).astype(dtype) if with_bias else None
    gy = rng.standard_normal(lead + (I,)).astype(dtype)
    return x, w, b, gy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead, IN, I", [((1,), 3, 1), ((5,), 7, 13), ((2, 33), 16, 37),
                                         ((67,), 24, 1541)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_gelu_matches_the_plain_numpy_reference(dtype, lead, IN, I, with_bias,
                                                        pool_threads):
    x, w, b, gy = _linear_gelu_case(dtype, lead, IN, I, with_bias)
    y, saved = fused.linear_gelu_forward(x, w, b)
    with dispatch.use_fused(False):                  # every op on its NumPy reference
        y_ref, saved_ref = ref.linear_gelu_forward(x, w, b)
        grads_ref = ref.linear_gelu_backward(gy, saved_ref)
    assert saved[2] is fused._FROM_SLOPE                 # the slope path ran
    assert_same(y, y_ref, dtype)
    n = np.prod(lead)                       # gx sums I terms; gw and gb, n rows each
    for got, want, scale in zip(fused.linear_gelu_backward(gy, saved), grads_ref,
                                (np.sqrt(I), np.sqrt(n), np.sqrt(n))):
        assert_same(got, want, dtype, scale=scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_gelu_gives_the_bits_of_the_fused_linear_and_gelu(dtype, pool_threads):
    """Keeping the slope changes where dy/du is computed, not how: the same bits as the fused
    Linear followed by the fused GELU, which recomputes it in the backward."""
    x, w, b, gy = _linear_gelu_case(dtype, (3, 41), 24, 517, True, seed=1)
    y, saved = fused.linear_gelu_forward(x, w, b)
    y2, saved2 = ref.linear_gelu_forward(x, w, b)        # dispatches to cpu linear and gelu
    assert saved2[2] is not fused._FROM_SLOPE
    np.testing.assert_array_equal(y, y2)
    grads2 = ref.linear_gelu_backward(gy, saved2)
    for got, want in zip(fused.linear_gelu_backward(gy, saved), grads2):
        np.testing.assert_array_equal(got, want)


def test_linear_gelu_leaves_its_inputs_alone_and_can_run_its_backward_twice():
    x, w, b, gy = _linear_gelu_case(np.float32, (9,), 8, 33, True, seed=2)
    copies = [a.copy() for a in (x, w, b, gy)]
    y, saved = fused.linear_gelu_forward(x, w, b)
    first = fused.linear_gelu_backward(gy, saved)
    second = fused.linear_gelu_backward(gy, saved)          # as backward(retain_graph=True)
    for a, c in zip((x, w, b, gy), copies):
        np.testing.assert_array_equal(a, c)
    for g1, g2 in zip(first, second):
        np.testing.assert_array_equal(g1, g2)


def test_linear_gelu_keeps_no_slope_under_no_grad():
    x, w, b, _ = _linear_gelu_case(np.float32, (4,), 8, 16, True)
    with_grad, _ = fused.linear_gelu_forward(x, w, b)
    with no_grad():
        y, saved = fused.linear_gelu_forward(x, w, b)
    assert saved[2] is not fused._FROM_SLOPE
    np.testing.assert_array_equal(y, with_grad)


def test_the_model_runs_linear_gelu_on_the_slope_path():
    """BertIntermediate's F.linear(..., activation="gelu") dispatches to this op."""
    assert dispatch.implementation("linear_gelu", ref.LINEAR_GELU_REFERENCE,
                                   np.ones((2, 3), np.float32)).forward is fused.linear_gelu_forward
