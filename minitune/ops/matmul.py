"""Matrix products: ``matmul`` (batched, broadcasting batch dims), ``linear`` (x @ W.T + b) and
``stacked_linear`` (several Linears of one input as one product).

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
            y = _add_bias(y, b)
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


class StackedLinear(Function):
    """y_i = x @ W_i^T + b_i for several Linear layers that read the same x, as ONE product.

    BERT's query, key and value projections all read the layer's input. With their weights
    stacked into one (OUT_1 + ... + OUT_n, IN) matrix they are one (N, IN) @ (IN, 3H) GEMM
    instead of three (N, IN) @ (IN, H) ones: x is read once and the wider product runs
    closer to the BLAS peak (docs/performance.md). The values are those of n ``linear`` calls.

    Shapes: x (..., IN); weights W_i (OUT_i, IN) and biases b_i (OUT_i,), given as
    ``forward(x, W_1, ..., W_n, b_1, ..., b_n)`` -> n outputs (..., OUT_i), each a view of
    its columns in one (..., OUT_1 + ... + OUT_n) array.
    """

    def forward(self, x, *params):
        n = len(params) // 2
        ws, bs = params[:n], params[n:]
        if (len(params) != 2 * n or n == 0
                or any(w.ndim != 2 or w.shape[1] != x.shape[-1] for w in ws)
                or any(b.shape != (w.shape[0],) for w, b in zip(ws, bs))):
            raise ValueError(f"stacked linear: input {x.shape}, weights "
                             f"{[w.shape for w in ws]}, biases {[b.shape for b in bs]}: need "
                             f"input (..., IN), weights (OUT_i, IN), one bias (OUT_i,) each")
        xp = get_array_module(x)
        w, b = xp.concatenate(ws), xp.concatenate(bs)        # (OUT, IN), (OUT,)
        self.x, self.w = x, w
        y = x.reshape(-1, x.shape[-1]) @ w.T                 # (N, IN) @ (IN, OUT)
        y = _add_bias(y, b).reshape(x.shape[:-1] + (w.shape[0],))
        self.edges = np.cumsum([0] + [wi.shape[0] for wi in ws]).tolist()
        return tuple(y[..., lo:hi] for lo, hi in zip(self.edges[:-1], self.edges[1:]))

    def backward(self, *gys):
        # g = [gy_1 | ... | gy_n]  (N, OUT);  gx = g @ W;  gW = g^T @ x and gb = sum(g),
        # cut back into the n weights' rows
        x, w = self.x, self.w
        xp = get_array_module(x)
        g = xp.concatenate([gy.reshape(-1, gy.shape[-1]) for gy in gys], axis=1)
        gx = (g @ w).reshape(x.shape)
        gw = g.T @ x.reshape(-1, x.shape[-1])
        gb = g.sum(axis=0)
        cuts = list(zip(self.edges[:-1], self.edges[1:]))
        return (gx, *(gw[lo:hi] for lo, hi in cuts), *(gb[lo:hi] for lo, hi in cuts))


def _add_bias(y, b):
    """y + b, in place when the dtype allows it (no second (N, OUT) array)."""
    if np.result_type(y.dtype, b.dtype) == y.dtype:
        y += b
        return y
    return y + b                                  # e.g. a float64 bias promotes, as numpy


def matmul(a, b):
    """Batched matrix product ``a @ b``: (..., M, K) @ (..., K, N) -> (..., M, N)."""
    return MatMul().apply(a, b)


def stacked_linear(x, weights, biases):
    """``[x @ w.T + b for w, b in zip(weights, biases)]`` as one matrix product (StackedLinear).

    x (..., IN), weights [(OUT_i, IN)], biases [(OUT_i,)] -> list of (..., OUT_i).
    """
    if len(weights) != len(biases):
        raise ValueError(f"stacked linear: {len(weights)} weights but {len(biases)} biases")
    return list(StackedLinear().apply(x, *weights, *biases))


def linear(x, weight, bias=None):
    """``x @ weight.T + bias``: x (..., IN), weight (OUT, IN), bias (OUT,) -> (..., OUT)."""
    if bias is None:
        return Linear().apply(x, weight)
    return Linear().apply(x, weight, bias)
