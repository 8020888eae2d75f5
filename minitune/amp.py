"""Mixed precision: the number format of the matrix products' operands.

    with amp.autocast("bf16"):            # Linear layers multiply bfloat16-rounded operands
        loss = model(ids, mask, labels=labels).loss
        loss.backward()

Precisions (``minitune train --precision``):

    fp32   float32 operands on CUDA cores (the default; numerically the plain model)
    tf32   operands rounded to TF32 (10 mantissa bits), products on tensor cores
    bf16   operands rounded to bfloat16 (7 mantissa bits), products on tensor cores

Only the operands of the matrix products (``Linear`` and ``matmul``, forward and backward) are
rounded. Products are accumulated in float32, and everything else stays float32: the weights
(the optimizer updates float32 "master" weights, so no small update is lost to rounding),
the activations between layers, LayerNorm's and softmax's statistics, attention, the loss and
the gradients. bfloat16 keeps float32's 8 exponent bits, so no gradient underflows as it can
in float16: no loss scaling is needed (docs/finetuning.md).

On the GPU the tensor-core kernels (kernels/matmul_tc.cu) round as they load. On the CPU,
``round_to`` does the same rounding in NumPy and the product runs in float32: the same numbers
up to the order of summation, which is how the tests check the bookkeeping without a GPU (and
slower than fp32 there). float64 inputs are never rounded (gradient checks stay exact).
"""
import contextlib

import numpy as np

from .backend import get_array_module

PRECISIONS = ("fp32", "bf16", "tf32")

# float32 bits: sign (1) | exponent (8) | mantissa (23). bfloat16 keeps the top 16 bits, TF32
# the top 19. Rounding adds half of the dropped part's range, then masks it off.
_KEEP = {"bf16": np.uint32(0xFFFF0000), "tf32": np.uint32(0xFFFFE000)}


class _State:
    precision = "fp32"


def current():
    """The precision matrix products use now: "fp32" outside any ``autocast`` block."""
    return _State.precision


@contextlib.contextmanager
def autocast(precision="bf16"):
    """Inside the block, matrix products of float32 arrays use ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    previous = _State.precision
    _State.precision = precision
    try:
        yield
    finally:
        _State.precision = previous


def round_to(x, precision):
    """float32 array ``x`` rounded to ``precision``'s format, returned as float32 (a new array).

    bf16: round to nearest, ties to even (as ``__float2bfloat16``); tf32: round to nearest,
    ties away from zero (as ``cvt.rna.tf32.f32``, which ``wmma::__float_to_tf32`` uses).
    Infinities and NaNs stay what they are; values past bfloat16's largest round to infinity.
    Other dtypes and "fp32" come back unchanged (not copied).
    """
    if precision == "fp32" or x.dtype != np.float32:
        return x
    xp = get_array_module(x)
    bits = xp.ascontiguousarray(x).view(np.uint32)
    special = (bits & np.uint32(0x7F800000)) == np.uint32(0x7F800000)      # inf and NaN
    if precision == "bf16":
        lsb = (bits >> np.uint32(16)) & np.uint32(1)
        rounded = (bits + (np.uint32(0x7FFF) + lsb)) & _KEEP["bf16"]
    elif precision == "tf32":
        rounded = (bits + np.uint32(0x1000)) & _KEEP["tf32"]
    else:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return xp.where(special, bits, rounded).view(np.float32).reshape(x.shape)
