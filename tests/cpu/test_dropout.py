"""minitune.cpu.dropout against the reference ops.nn.dropout_forward / _backward."""
import numpy as np
import pytest

from minitune.cpu import dropout as fused
from minitune.ops import nn as ref
from cpu_helpers import DTYPES, pool_threads  # noqa: F401


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (3, 5), (5, 7, 1001)])
def test_dropout_is_the_reference_exactly(dtype, shape, pool_threads):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    y, saved = fused.dropout_forward(x, 0.3, np.random.default_rng(5))
    y_ref, saved_ref = ref.dropout_forward(x, 0.3, np.random.default_rng(5))
    np.testing.assert_array_equal(y, y_ref)
    assert y.dtype == dtype
    gy = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(fused.dropout_backward(gy, saved),
                                  ref.dropout_backward(gy, saved_ref))
