"""Dropout with a counter-based mask (kernels/dropout.cu).

Same arguments and results as ``minitune.ops.nn.dropout_forward/backward``, but the mask is
never stored or drawn on the host: forward draws one 64-bit seed from the op's numpy Generator
``rng``, and backward re-runs the same kernel on gy with that seed. ``saved`` is (seed,
threshold, scale, seed_ptr): seed_ptr is None, or the device slot a captured step reads its
seed from (``graph.device_seed``). NumPy reference of the mask: ``philox.flat_keep_mask``.
"""
import numpy as np

from . import graph, runtime
from .philox import threshold_and_scale

FILE = "dropout.cu"
OFFSET = np.uint32(0)


def supports(x, *rest):
    return x.dtype == np.float32 and x.size > 0


def _apply(x, seed, threshold, scale, seed_ptr):
    rt = runtime.for_array(x)
    x = rt.xp.ascontiguousarray(x)
    y = rt.xp.empty_like(x)
    aligned = rt.pointer(x) % 16 == 0 and rt.pointer(y) % 16 == 0
    groups = (x.size + 7) // 8
    rt.launch(FILE, "dropout_apply", min((groups + 255) // 256, 65535 * 4), 256,
              (x, y, np.int64(x.size), seed, OFFSET, threshold, scale, np.int32(aligned),
               seed_ptr))
    return y


def forward(x, p, rng):
    threshold, scale = threshold_and_scale(p)
    seed, seed_ptr = graph.device_seed(rng)       # from rng; under capture, from a slot
    saved = (seed, np.uint32(threshold), np.float32(scale), seed_ptr)
    return _apply(x, *saved), saved


def backward(gy, saved):
    return _apply(gy, *saved)
