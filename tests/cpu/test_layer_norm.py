"""minitune.cpu.layer_norm against the reference ops.nn.layer_norm_forward / _backward."""
import numpy as np
import pytest

from minitune.cpu import layer_norm as fused
from minitune.ops import nn as ref
from cpu_helpers import DTYPES, assert_same, pool_threads  # noqa: F401


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 7, 37), (131, 385)])
@pytest.mark.parametrize("with_residual", [True, False])
def test_layer_norm_matches_reference(dtype, shape, with_residual, pool_threads):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 4 + 3).astype(dtype)   # a mean far from 0
    res = rng.standard_normal(shape).astype(dtype) if with_residual else None
    w = rng.standard_normal(shape[-1]).astype(dtype)
    b = rng.standard_normal(shape[-1]).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    y, saved = fused.layer_norm_forward(x, w, b, 1e-12, res)
    y_ref, saved_ref = ref.layer_norm_forward(x, w, b, 1e-12, res)
    assert_same(y, y_ref, dtype)
    assert_same(saved[1], saved_ref[1], dtype)                # rstd (..., 1)
    for got, want in zip(fused.layer_norm_backward(gy, saved),
                         ref.layer_norm_backward(gy, saved_ref)):
        assert_same(got, want, dtype, scale=np.sqrt(x.size))


def test_layer_norm_of_a_constant_row_is_its_bias():
    x = np.full((2, 9), 5.0, np.float32)
    w, b = np.ones(9, np.float32), np.arange(9, dtype=np.float32)
    y, _ = fused.layer_norm_forward(x, w, b, 1e-5)
    np.testing.assert_array_equal(y, np.broadcast_to(b, y.shape))
