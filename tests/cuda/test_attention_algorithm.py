"""The NumPy algorithm of kernels/attention.cu (tiled online softmax, (m, L) row statistics,
two-sweep backward) against plain softmax attention, shapes drawn by hypothesis, float64."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from minitune.cuda import attention as A
from minitune.ops import nn as ref
from minitune.testing import assert_close
from kernel_helpers import attention_draws, f64
from kernel_helpers import attention_inputs as inputs


@given(B=st.integers(1, 2), NH=st.integers(1, 2), T=st.integers(1, 11), HS=st.integers(1, 6),
       p=st.sampled_from([0.0, 0.4]), masked=st.booleans(), tile=st.sampled_from([1, 3, 4]),
       seed=st.integers(0, 2**16))
def test_tiled_algorithm_equals_plain_attention(B, NH, T, HS, p, masked, tile, seed):
    """Online softmax over key tiles and the two-sweep backward (float64) against softmax
    attention, on small tiles so that every case crosses several of them."""
    q, k, v, bias, gout = f64(*inputs(seed, B, NH, T, HS, masked, all_masked_row=masked))
    draws = attention_draws(seed, B, NH, T) if p else None
    threshold, dscale = (int(round(p * 65536)), 65536 / (65536 - round(p * 65536))) if p \
        else (0, 1.0)
    keep = draws.draws >= threshold if p else None
    scale = 1 / np.sqrt(HS)
    expected, saved = ref.attention_forward(q, k, v, bias, scale, p, draws)
    bias_rows = None if bias is None else bias[:, 0, 0, :]
    out, m, L = A.tiled_forward(q, k, v, bias_rows, scale, keep, dscale, tile=tile)
    assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grads = A.tiled_backward(q, k, v, bias_rows, out, gout, m, L, scale, keep, dscale, tile=tile)
    for got, want in zip(grads, ref.attention_backward(gout, saved)):
        assert_close(got, want, rtol=1e-10, atol=1e-12)
