"""bias + exact GELU (kernels/gelu.cu).

Same arguments and results as ``minitune.ops.nn.gelu_forward/backward``; ``saved`` is
(x, bias, I): u = x + bias and Phi(u) are recomputed in backward instead of stored. The bias
gradient is summed per chunk of rows, then over chunks in order (``layer_norm.
partial_column_sums`` is the NumPy picture; here chunks are contiguous row ranges).
"""
import numpy as np

from . import runtime
from .layer_norm import sum_partials

FILE = "gelu.cu"
ROW_CHUNKS = 64                       # P in gelu.cu's backward


def supports(x, *rest):
    return x.dtype == np.float32 and x.ndim >= 1 and x.size > 0


def forward(x, bias=None):
    rt = runtime.for_array(x)
    xp = rt.xp
    x = xp.ascontiguousarray(x)
    width = x.shape[-1]                                   # I
    y = xp.empty_like(x)
    b = None if bias is None else xp.ascontiguousarray(bias, dtype=np.float32)
    N = x.size // width
    rt.launch(FILE, "gelu_forward", ((width + 255) // 256, min(N, 1024)), 256,
              (x, b, y, np.int32(N), np.int32(width)))
    return y, (x, b, width)


def backward(gy, saved):
    x, b, width = saved
    rt = runtime.for_array(gy)
    xp = rt.xp
    gy = xp.ascontiguousarray(gy)
    N = x.size // width
    gx = xp.empty_like(x)
    P = max(1, min(N, ROW_CHUNKS))
    part = None if b is None else xp.empty((P, width), dtype=np.float32)
    rt.launch(FILE, "gelu_backward", ((width + 255) // 256, P), 256,
              (gy, x, b, gx, part, np.int32(N), np.int32(width)))
    return gx, None if b is None else sum_partials(rt, FILE, part)
