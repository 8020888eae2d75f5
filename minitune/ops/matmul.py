"""Matrix products: ``matmul`` (batched, broadcasting batch dims) and ``linear`` (x @ W.T + b).

For y = a @ b with a (..., M, K) and b (..., K, N):
    ga = gy @ b^T   (..., M, K)        gb = a^T @ gy   (..., K, N)
summed over any batch dims that were broadcast.
"""
import numpy as np

from ..autograd import Function, sum_to
from ..backend import get_array_module


def _batched(a, b):
    """``a @ b`` for stacks of matrices, with both operands made contiguous first.

    numpy hands each matrix of a stack to BLAS separately. With transposed views (k^T in
    attention, b^T in backward) multi-threaded OpenBLAS was measured to stall on these small
    products (6 s instead of 70 ms for one layer's attention on a busy 2-core machine); a
    contiguous copy of a (B, NH, T, HS) operand costs about a millisecond.
    """
    if a.ndim > 2:
        a = get_array_module(a).ascontiguousarray(a)
    if b.ndim > 2:
        b = get_array_module(b).ascontiguousarray(b)
    return a @ b


class MatMul(Function):
    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not compatible "
                             f"(need (..., M, K) @ (..., K, N), both at least 2-D)")
        self.a, self.b = a, b
        try:
            return _batched(a, b)
        except ValueError:
            raise ValueError(f"matmul: batch dims of {a.shape} and {b.shape} "
                             f"do not broadcast") from None

    def backward(self, gy):
        # ga = gy @ b^T, gb = a^T @ gy (then undo batch broadcasting)
        a, b = self.a, self.b
        ga = gb = None
        if self.inputs[0].requires_grad:
            ga = sum_to(_batched(gy, b.swapaxes(-1, -2)), a.shape)
        if self.inputs[1].requires_grad:
            gb = sum_to(_batched(a.swapaxes(-1, -2), gy), b.shape)
        return ga, gb


class Linear(Function):
    """y = x @ W^T + b, the layer of every projection in BERT.

    Shapes: x (..., IN), W (OUT, IN) as stored by PyTorch/Hugging Face, b (OUT,) -> y (..., OUT).
    The leading dims are flattened so each product is a single 2-D GEMM.
    """

    def forward(self, x, w, b=None):
        if x.shape[-1] != w.shape[1] or (b is not None and b.shape != (w.shape[0],)):
            bshape = None if b is None else b.shape
            raise ValueError(f"linear: input {x.shape}, weight {w.shape}, bias {bshape}: need "
                             f"input (..., IN), weight (OUT, IN), bias (OUT,)")
        self.x, self.w = x, w
        y = x.reshape(-1, x.shape[-1]) @ w.T                 # (N, IN) @ (IN, OUT)
        if b is not None:
            if np.result_type(y.dtype, b.dtype) == y.dtype:
                y += b                                   # in place: no second (N, OUT) array
            else:
                y = y + b                                # e.g. a float64 bias promotes, as numpy
        return y.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(self, gy):
        # gx = gy @ W;  gW = gy^T @ x (summed over all leading positions);  gb = sum(gy)
        x, w = self.x, self.w
        g2 = gy.reshape(-1, gy.shape[-1])                    # (N, OUT)
        gx = (g2 @ w).reshape(x.shape) if self.inputs[0].requires_grad else None
        gw = g2.T @ x.reshape(-1, x.shape[-1]) if self.inputs[1].requires_grad else None
        if len(self.inputs) == 2:
            return gx, gw
        gb = g2.sum(axis=0) if self.inputs[2].requires_grad else None
        return gx, gw, gb


def matmul(a, b):
    """Batched matrix product ``a @ b``: (..., M, K) @ (..., K, N) -> (..., M, N)."""
    return MatMul().apply(a, b)


def linear(x, weight, bias=None):
    """``x @ weight.T + bias``: x (..., IN), weight (OUT, IN), bias (OUT,) -> (..., OUT)."""
    if bias is None:
        return Linear().apply(x, weight)
    return Linear().apply(x, weight, bias)
