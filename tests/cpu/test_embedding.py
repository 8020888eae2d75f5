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


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_backward_over_many_chunks_of_the_vocabulary(dtype, pool_threads):
    """A vocabulary of several chunks (the pool cuts it into row ranges, each zeroed and given
    the runs of its ids): ids on both sides of every cut, repeated, and a chunk with none."""
    V = 9 * fused._GRAIN + 7
    rng = np.random.default_rng(3)
    edges = np.arange(fused._GRAIN, V, fused._GRAIN // 2)      # every possible cut, and more
    ids = np.concatenate([edges - 1, edges, edges, rng.integers(0, V // 2, 500), [V - 1]])
    ids = rng.permutation(ids).reshape(1, -1)
    weight = rng.standard_normal((V, 5)).astype(dtype)
    _, saved = fused.embedding_forward(ids, weight)
    _, saved_ref = ref.embedding_forward(ids, weight)
    gy = rng.standard_normal(ids.shape + (5,)).astype(dtype)
    got = fused.embedding_backward(gy, saved)
    assert_same(got, ref.embedding_backward(gy, saved_ref), dtype)
    untouched = np.setdiff1d(np.arange(V), ids)
    assert untouched.size and not got[untouched].any()       # zeros where no id is


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("id_dtype", [np.int64, np.int32, np.uint16])
def test_embedding_forward_over_many_chunks_is_the_lookup(dtype, id_dtype, pool_threads):
    """Enough ids for several chunks of the pool, given as a non-contiguous view: each row is
    the table's row, bit for bit."""
    rng = np.random.default_rng(4)
    weight = rng.standard_normal((3000, 7)).astype(dtype)
    ids = rng.integers(0, 3000, size=(9, 2 * 640)).astype(id_dtype)[:, ::2]   # (9, 640) view
    y, (saved_ids, V) = fused.embedding_forward(ids, weight)
    np.testing.assert_array_equal(y, weight[ids])
    assert y.shape == (9, 640, 7) and V == 3000 and saved_ids is ids


@pytest.mark.parametrize("bad", [-1, 3000])
def test_embedding_forward_refuses_ids_outside_the_table(bad):
    """The compiled copy checks no bounds, so the wrapper does: a clear error, no stray read."""
    ids = np.zeros(2000, np.int64)
    ids[1234] = bad
    with pytest.raises(IndexError, match=r"\[0, 3000\)"):
        fused.embedding_forward(ids, np.ones((3000, 4), np.float32))
