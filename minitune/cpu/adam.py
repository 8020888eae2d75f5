"""Fused Adam / AdamW update for numpy arrays (reference: ``adam_update`` in optim/adam.py).

The reference makes about fourteen passes over memory per parameter (one per in-place ufunc);
here one compiled loop reads w, g, m, v once and writes w, m, v once, on all cores. The
parameters of a call (one of the optimizer's groups: MiniLM's 105 arrays, from 11.7 M elements
down to 2, make two) are cut into pieces of at most ``_PIECE`` elements, and the pool's threads
take the pieces in turn, all of them in one parallel op: one hand-off between the threads per
group, where each large parameter had one of its own (39 a step; at 32 x 128 and two threads
AdamW.step went from 18.4 to 14.3 ms, ``bench_bert.py --ab adam_one_op``). The arithmetic is
the reference's, operation for operation, in
the parameter's dtype (each hyper-parameter rounded to it first, as NumPy does with a Python
float) and without fast-math, so the result is bit-for-bit the reference's (tests/cpu).
"""
import math

import numpy as np

from ..optim.adam import adam_update
from .threads import parallel_for
from .vecmath import kernel

_PIECE = 1 << 18             # elements of one parameter per piece at most (1 MB in float32)
ONE_OP = True                # False: one parallel op per parameter (``bench_bert.py --ab``)


@kernel(fastmath=False)
def _update(c, lo, hi, w, g, m, v, decay, l2, c1, b2, c2, sqrt_bc2, eps, step_size):
    # The chunk is sliced first and indexed from 0: with ``range(lo, hi)`` an index could be
    # negative as far as numba knows, and the wrap-around check it adds to every access kept
    # the loop scalar (measured: 32 ms instead of 11 ms for 11 M float32 on one thread).
    w, g, m, v = w[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
    for i in range(w.size):
        wi = w[i] * decay                   # AdamW: w * (1 - lr wd)   (decay = 1 otherwise)
        gi = g[i] + l2 * wi                 # Adam:  g + wd w          (l2 = 0 otherwise)
        mi = m[i] + (gi - m[i]) * c1        # m += (1 - b1) (g - m)
        vi = v[i] * b2 + gi * gi * c2       # v = b2 v + (1 - b2) g^2
        denom = np.sqrt(vi) / sqrt_bc2 + eps
        w[i] = wi - mi / denom * step_size
        m[i] = mi
        v[i] = vi


def supports(w):
    return w.dtype in (np.float32, np.float64)


def adam_step(ws, gs, ms, vs, ts, lr, betas, eps, weight_decay, decoupled, work):
    """As optim.adam.adam_update (same arguments), in place."""
    b1, b2 = betas
    pieces = []                 # (lo, hi, (w, g, m, v) flat, the parameter's constants)
    spans = []                  # each parameter's pieces: pieces[first:last]
    for w, g, m, v, t in zip(ws, gs, ms, vs, ts):
        if not all(a.flags.c_contiguous and a.dtype == w.dtype for a in (w, g, m, v)):
            adam_update([w], [g], [m], [v], [t], lr, betas, eps, weight_decay, decoupled, work)
            continue
        f = w.dtype.type
        decay = f(1 - lr * weight_decay) if decoupled and weight_decay != 0 else f(1.0)
        l2 = f(weight_decay) if not decoupled and weight_decay != 0 else f(0.0)
        step_size = lr / (1 - b1 ** t)
        flat = tuple(a.reshape(-1) for a in (w, g, m, v))
        constants = (decay, l2, f(1 - b1), f(b2), f(1 - b2), f(math.sqrt(1 - b2 ** t)), f(eps),
                     f(step_size))
        first = len(pieces)
        pieces += [(lo, min(lo + _PIECE, w.size), flat, constants)
                   for lo in range(0, w.size, _PIECE)]
        spans.append((first, len(pieces)))

    def run(c, first, last):
        for lo, hi, flat, constants in pieces[first:last]:
            _update(c, lo, hi, *flat, *constants)

    # One piece per chunk, so that a thread slowed down by another process takes fewer.
    if ONE_OP:
        parallel_for(run, len(pieces), bounds=[(i, i + 1) for i in range(len(pieces))])
        return
    for first, last in spans:        # as before 2026-12-01, for comparisons: one parallel op
        if first < last:             # per parameter, in chunks of at least 64 K elements
            _, _, flat, constants = pieces[first]
            parallel_for(_update, flat[0].size, *flat, *constants, grain=1 << 16)
