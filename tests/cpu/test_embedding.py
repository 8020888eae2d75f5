"""minitune.cpu.embedding against the reference ops.nn.embedding_backward."""
import numpy as np
import pytest

from minitune.cpu import embedding as fused
from minitune.ops import nn as ref
from cpu_helpers import DTYPES, assert_same, pool_threads  # noqa: F401


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ids_shape, V", [((1,), 1), ((3, 5), 4), ((7, 33), 1001), ((0, 3), 5)])
def test_embedding_backward_matches_reference(dtype, ids_shape, V, pool_threads):
    rng = np.random.default_rng(V)
    ids = rng.integers(0, V, size=ids_shape)                   # many repeats
    weight = rng.standard_normal((V, 13)).astype(dtype)
    y, saved = fused.embedding_forward(ids, weight)
    y_ref, saved_ref = ref.embedding_forward(ids, weight)
    np.testing.assert_array_equal(y, y_ref)
    gy = rng.standard_normal(ids_shape + (13,)).astype(dtype)
    assert_same(fused.embedding_backward(gy, saved), ref.embedding_backward(gy, saved_ref),
                dtype)
