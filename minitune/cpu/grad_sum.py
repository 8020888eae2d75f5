"""The sum of two gradients of one tensor, on all cores (reference: ``a + b``,
``dispatch.GRAD_SUM``).

When a tensor feeds two ops, the autograd engine adds the two gradients that come back for it
(autograd.py ``run_backward``). In BERT that is the residual stream: each layer's input goes to
the attention's q/k/v Linear and to the LayerNorm's residual, the attention block's output to
the FFN and to the second LayerNorm -- twelve sums of (B, T, H) per training step of MiniLM.
numpy adds on one thread; here the pool's threads each add a chunk (numpy's add releases the
GIL). Same values, to the bit: an elementwise add has one result.

supports: a and b C-contiguous, of one shape and dtype (float32 or float64), at least
``_MIN_SIZE`` elements (below, handing work to the pool costs more than it saves).
"""
import numpy as np

from .threads import parallel_for

_MIN_SIZE = 1 << 16
_GRAIN = 1 << 15


def supports(a, b):
    return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
            and a.dtype == b.dtype and a.dtype in (np.float32, np.float64)
            and a.size >= _MIN_SIZE and a.flags.c_contiguous and b.flags.c_contiguous)


def _add_chunk(c, lo, hi, a, b, out):
    np.add(a[lo:hi], b[lo:hi], out=out[lo:hi])


def grad_sum_forward(a, b):
    """a + b, a new array: a, b (...) of one shape."""
    out = np.empty_like(a)
    parallel_for(_add_chunk, a.size, a.reshape(-1), b.reshape(-1), out.reshape(-1),
                 grain=_GRAIN)
    return out
