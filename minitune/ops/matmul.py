"""Matrix products: ``matmul`` (batched, broadcasting batch dims), ``linear`` (x @ W.T + b) and
``stacked_linear`` (several Linears of one input as one product).

For y = a @ b with a (..., M, K) and b (..., K, N):
    ga = gy @ b^T   (..., M, K)        gb = a^T @ gy   (..., K, N)
summed over any batch dims that were broadcast.

``matmul`` and ``linear`` are fused ops in the sense of ``minitune.dispatch``: the functions
below are their references (plain ``xp``), and on cupy arrays minitune's own GEMM kernels
(``minitune/cuda/matmul.py``) run them instead (``stacked_linear`` runs through ``linear``'s
implementation). Both honour ``amp.autocast``: under "bf16" or
"tf32" the operands of every product, forward and backward, are rounded to that format
(``amp.round_to``) and the products accumulate in float32.
"""
import numpy as np

from .. import amp, dispatch
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


def _product(a, b, precision):
    """``a @ b`` with both operands rounded to ``precision`` (amp.round_to)."""
    return _batched(amp.round_to(a, precision), amp.round_to(b, precision))


# --------------------------------------------------------------------------- references

def matmul_forward(a, b, precision="fp32"):
    """a (..., M, K) @ b (..., K, N) -> (..., M, N), batch dims broadcast. saved: (a, b,
    precision)."""
    return _product(a, b, precision), (a, b, precision)


def matmul_backward(gy, saved, needs=(True, True)):
    """(ga, gb), each None where ``needs`` says no: ga = gy b^T, gb = a^T gy, summed over the
    batch dims that were broadcast."""
    a, b, precision = saved
    ga = sum_to(_product(gy, b.swapaxes(-1, -2), precision), a.shape) if needs[0] else None
    gb = sum_to(_product(a.swapaxes(-1, -2), gy, precision), b.shape) if needs[1] else None
    return ga, gb


def linear_forward(x, w, b=None, precision="fp32"):
    """y = x @ w^T + b: x (..., IN), w (OUT, IN), b (OUT,) or None -> (..., OUT).

    The leading dims are flattened so the product is one 2-D GEMM. saved: (x, w, whether
    there is a bias, precision)."""
    y = _product(x.reshape(-1, x.shape[-1]), w.T, precision)         # (N, IN) @ (IN, OUT)
    if b is not None:
        if np.result_type(y.dtype, b.dtype) == y.dtype:
            y += b                                   # in place: no second (N, OUT) array
        else:
            y = y + b                                # e.g. a float64 bias promotes, as numpy
    return y.reshape(x.shape[:-1] + (w.shape[0],)), (x, w, b is not None, precision)


def linear_backward(gy, saved, needs=(True, True, True)):
    """(gx, gw, gb): gx = gy @ w; gw = gy^T @ x (summed over all leading positions);
    gb = sum(gy) over them (None without a bias, or where ``needs`` says no)."""
    x, w, has_bias, precision = saved
    g2 = gy.reshape(-1, gy.shape[-1])                                # (N, OUT)
    gx = _product(g2, w, precision).reshape(x.shape) if needs[0] else None
    gw = _product(g2.T, x.reshape(-1, x.shape[-1]), precision) if needs[1] else None
    gb = g2.sum(axis=0) if has_bias and needs[2] else None
    return gx, gw, gb


MATMUL_REFERENCE = dispatch.Implementation("matmul", forward=matmul_forward,
                                           backward=matmul_backward)
LINEAR_REFERENCE = dispatch.Implementation("linear", forward=linear_forward,
                                           backward=linear_backward)


# --------------------------------------------------------------------------- the ops

class MatMul(Function):
    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not compatible "
                             f"(need (..., M, K) @ (..., K, N), both at least 2-D)")
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dims of {a.shape} and {b.shape} "
                             f"do not broadcast") from None
        self.impl = dispatch.implementation("matmul", MATMUL_REFERENCE, a, b)
        y, self.saved = self.impl.forward(a, b, amp.current())
        return y

    def backward(self, gy):
        # ga = gy @ b^T, gb = a^T @ gy (then undo batch broadcasting)
        return self.impl.backward(gy, self.saved, [t.requires_grad for t in self.inputs])


class Linear(Function):
    """y = x @ W^T + b, the layer of every projection in BERT.

    Shapes: x (..., IN), W (OUT, IN) as stored by PyTorch/Hugging Face, b (OUT,) -> y (..., OUT).
    """

    def forward(self, x, w, b=None):
        check_linear_shapes(x, w, b)
        self.impl = dispatch.implementation("linear", LINEAR_REFERENCE, x, w, b)
        y, self.saved = self.impl.forward(x, w, b, amp.current())
        return y

    def backward(self, gy):
        # gx = gy @ W;  gW = gy^T @ x (summed over all leading positions);  gb = sum(gy)
        needs = [t.requires_grad for t in self.inputs] + [False]
        gx, gw, gb = self.impl.backward(gy, self.saved, needs)
        return (gx, gw) if len(self.inputs) == 2 else (gx, gw, gb)


def check_linear_shapes(x, w, b):
    """ValueError naming the shapes unless x (..., IN), w (OUT, IN), b (OUT,) or None."""
    if x.shape[-1] != w.shape[1] or (b is not None and b.shape != (w.shape[0],)):
        bshape = None if b is None else b.shape
        raise ValueError(f"linear: input {x.shape}, weight {w.shape}, bias {bshape}: need "
                         f"input (..., IN), weight (OUT, IN), bias (OUT,)")


class StackedLinear(Function):
    """y_i = x @ W_i^T + b_i for several Linear layers that read the same x, as ONE product.

    BERT's query, key and value projections all read the layer's input. With their weights
    stacked into one (OUT_1 + ... + OUT_n, IN) matrix they are one (N, IN) @ (IN, 3H) GEMM
    instead of three (N, IN) @ (IN, H) ones: x is read once and the wider product runs
    closer to the BLAS peak (docs/performance.md). The product is the "linear" op's (its
    reference, or the kernel ``dispatch`` picks, under the current ``amp`` precision), so the
    values are those of n ``linear`` calls.

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
        self.impl = dispatch.implementation("linear", LINEAR_REFERENCE, x, w, b)
        y, self.saved = self.impl.forward(x, w, b, amp.current())      # (..., OUT)
        self.edges = np.cumsum([0] + [wi.shape[0] for wi in ws]).tolist()
        return tuple(y[..., lo:hi] for lo, hi in zip(self.edges[:-1], self.edges[1:]))

    def backward(self, *gys):
        # g = [gy_1 | ... | gy_n]  (..., OUT);  gx = g @ W;  gW = g^T @ x and gb = sum(g),
        # cut back into the n weights' rows
        given = next(gy for gy in gys if gy is not None)
        xp = get_array_module(given)
        lead = given.shape[:-1]
        g = _joined(gys, self.edges)                  # already one array (CPU attention)?
        if g is None:
            g = xp.concatenate([xp.zeros(lead + (hi - lo,), given.dtype) if gy is None else gy
                                for gy, lo, hi in zip(gys, self.edges[:-1], self.edges[1:])],
                               axis=-1)               # an output freed unused: zero grad
        n = len(self.edges) - 1
        params = self.inputs[1:]
        needs = [self.inputs[0].requires_grad, any(t.requires_grad for t in params[:n]),
                 any(t.requires_grad for t in params[n:])]
        gx, gw, gb = self.impl.backward(g, self.saved, needs)
        cuts = list(zip(self.edges[:-1], self.edges[1:]))
        return (gx, *(None if gw is None else gw[lo:hi] for lo, hi in cuts),
                *(None if gb is None else gb[lo:hi] for lo, hi in cuts))


def _joined(gys, edges):
    """The (..., OUT) array whose columns edges[i]:edges[i + 1] are gys[i], when the gradients
    are views of one array laid out so (the CPU attention's backward writes gq, gk, gv that
    way: cpu/attention.py ``_gradients_like``); None otherwise, and the caller concatenates."""
    if any(gy is None or not isinstance(gy, np.ndarray) for gy in gys):
        return None
    base = gys[0].base
    lead = gys[0].shape[:-1]
    if (base is None or not base.flags.c_contiguous or base.dtype != gys[0].dtype
            or base.size != np.prod(lead, dtype=np.int64) * edges[-1]):
        return None
    full = base.reshape(lead + (edges[-1],))
    for gy, lo, hi in zip(gys, edges[:-1], edges[1:]):
        part = full[..., lo:hi]
        if (gy.base is not base or gy.shape != part.shape or gy.strides != part.strides
                or gy.__array_interface__["data"][0] != part.__array_interface__["data"][0]):
            return None
    return full             # its blocks are the gys, in order, and nothing else: no overlap


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
