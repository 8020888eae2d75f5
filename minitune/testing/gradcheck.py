"""Numerical gradient checking: compare what ``backward`` computes with central differences.

For a function f of tensors x_0, x_1, ... returning a tensor y (any shape), backward computes the
vector-Jacobian product vjp(v)_i = J_i^T v, where J_i = dy/dx_i. Central differences estimate the
same derivatives from forward passes only:

    dy/dx[j] ~= (f(x + eps e_j) - f(x - eps e_j)) / (2 eps)        error O(eps^2) + O(ulp/eps)

Two modes:

* ``full``: the whole Jacobian of every checked input, numerically (two forwards per input
  element) and analytically (one backward per output element, with v = e_k). Exact blame, but
  cost grows with size: used for small inputs.
* ``directional``: one random unit direction u_i per input and one random unit cotangent v,
  comparing the scalars

      v . (f(x_i + eps u_i) - f(x_i - eps u_i)) / (2 eps)    with    u_i . vjp(v)_i

  Two forwards per input and one backward, whatever the size: used for layers and blocks. A wrong
  gradient almost surely changes u . J^T v for random u, v. When it fails, the checker localises
  the error by finite-differencing v . f element by element (all elements of small inputs, a
  sample of large ones) so the message can still name the worst element.

Everything runs in float64: with eps = 1e-6 the truncation error (~eps^2 |f'''|) and the rounding
error (~1e-16 |f| / eps = 1e-10 |f|) are both far below atol = 1e-5. In float32 the rounding term
alone would be ~1e-7 / 1e-6 = 0.1, so float32 inputs are refused rather than silently upcast
(an upcast copy would check a different computation than the one the caller runs).
"""
import numpy as np

from ..autograd import no_grad
from ..backend import asnumpy, get_array_module
from ..tensor import Tensor

#: ``mode="auto"`` uses the full Jacobian when both the checked inputs and the output have at
#: most this many elements in total, and the directional check otherwise.
FULL_MAX_ELEMENTS = 256

#: In a failing directional check, inputs up to this size are localised element by element;
#: larger ones on a sample of this many elements (the largest analytic grads plus random ones).
LOCALIZE_MAX_ELEMENTS = 2048


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree (or ``fn`` cannot be checked).

    Attributes (None when not applicable):
        input_index: position in ``inputs`` of the input whose gradient is wrong.
        element: index (tuple) of the worst element of that input.
        output_element: index of the output element (full mode only).
        analytic, numeric: the two values at the worst element.
        mode: "full" or "directional".
    """

    def __init__(self, message, input_index=None, element=None, output_element=None,
                 analytic=None, numeric=None, mode=None):
        super().__init__(message)
        self.input_index, self.element, self.output_element = input_index, element, output_element
        self.analytic, self.numeric, self.mode = analytic, numeric, mode


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, mode="auto",
              seed=0):
    """Check the gradients of ``fn`` at ``inputs`` against central finite differences.

    Args:
        fn: called as ``fn(*inputs)``; returns a float64 Tensor of any shape. It must be
            deterministic: an op with randomness (dropout) must re-seed its rng inside ``fn``.
        inputs: a Tensor or a sequence of arguments. Only Tensors with ``requires_grad`` are
            checked; they must be float64 (TypeError otherwise: no silent upcast). Other
            arguments (integer ids, masks, constants) are passed through unchanged.
        eps: finite-difference step.
        atol, rtol: an entry passes when |analytic - numeric| <= atol + rtol * |numeric|.
        raise_exception: raise ``GradcheckError`` on failure (else return False).
        mode: "full" (whole Jacobian), "directional" (random u, v), or "auto" (full when the
            checked inputs and the output each have at most ``FULL_MAX_ELEMENTS`` elements).
        seed: seed of the random directions u and cotangent v of the directional mode.

    Returns:
        True when every checked gradient matches (False on failure if not raising).

    The inputs' ``.data`` is perturbed in place during the check and restored afterwards, and
    their ``.grad`` is left as it was.
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    inputs = tuple(inputs)
    if mode not in ("auto", "full", "directional"):
        raise ValueError(f"gradcheck: mode must be 'auto', 'full' or 'directional', got {mode!r}")
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need "
                            f"float64 inputs (make them with dtype=np.float64; float32 is not "
                            f"upcast for you)")

    saved_grads = [inputs[i].grad for i in checked]
    try:
        y0 = _evaluate(fn, inputs)
        if not np.array_equal(asnumpy(_evaluate(fn, inputs)), asnumpy(y0), equal_nan=True):
            raise GradcheckError("gradcheck: fn gave different results for the same inputs; "
                                 "finite differences need a deterministic fn (re-seed the rng of "
                                 "dropout inside fn)")
        n_in = sum(inputs[i].size for i in checked)
        if mode == "auto":
            mode = "full" if max(n_in, y0.size) <= FULL_MAX_ELEMENTS else "directional"
        check = _check_full if mode == "full" else _check_directional
        failure = check(fn, inputs, checked, eps, atol, rtol, seed, raise_exception)
    finally:
        for i, g in zip(checked, saved_grads):
            inputs[i].grad = g
    if failure is None:
        return True
    if raise_exception:
        raise failure
    return False


# ---- evaluation helpers -------------------------------------------------------------------------

def _evaluate(fn, inputs):
    """A copy of fn(*inputs).data, computed without a graph and checked to be float64.

    Copied because views (x[0], x.reshape, x.T) share memory with the input being perturbed.
    """
    with no_grad():
        y = fn(*inputs)
    return _output_array(y).copy()


def _output_array(y):
    if not isinstance(y, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(y).__name__}")
    if y.dtype != np.float64:
        raise TypeError(f"gradcheck: fn returned {y.dtype}; it must compute in float64 "
                        f"(some constant or parameter inside fn is probably float32)")
    return y.data


def _vjp(fn, inputs, checked, v):
    """Gradients of sum(v * fn(*inputs)) with respect to each checked input (arrays)."""
    for i in checked:
        inputs[i].grad = None
    y = fn(*inputs)
    _output_array(y)
    if y.requires_grad:
        y.backward(v)
    return [inputs[i].grad if inputs[i].grad is not None
            else get_array_module(inputs[i].data).zeros_like(inputs[i].data) for i in checked]


def _perturbed(fn, inputs, x, flat_direction, eps):
    """(f(x + eps d) , f(x - eps d)) for one input x, restoring x.data afterwards."""
    orig = x.data
    try:
        x.data = orig + eps * flat_direction.reshape(orig.shape)
        plus = _evaluate(fn, inputs)
        x.data = orig - eps * flat_direction.reshape(orig.shape)
        minus = _evaluate(fn, inputs)
    finally:
        x.data = orig
    return plus, minus


def _numeric_elements(fn, inputs, x, elements, eps):
    """For each flat index j in ``elements``: (f(x + eps e_j) - f(x - eps e_j)) / 2 eps, flattened.

    Returns an array (len(elements), output size).
    """
    xp = get_array_module(x.data)
    orig = x.data
    work = orig.copy().reshape(-1)
    x.data = work.reshape(orig.shape)
    rows = []
    try:
        for j in elements:
            j = int(j)
            base = work[j].copy()
            work[j] = base + eps
            plus = _evaluate(fn, inputs).reshape(-1)
            work[j] = base - eps
            minus = _evaluate(fn, inputs).reshape(-1)
            work[j] = base
            rows.append((plus - minus) / (2 * eps))
    finally:
        x.data = orig
    return xp.stack(rows) if rows else xp.zeros((0, 0))


def _worst(analytic, numeric, atol, rtol):
    """Flat index of the entry most out of tolerance, and the count of failing entries."""
    excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    bad = ~(excess <= 0)               # NaN counts as a failure
    score = np.where(np.isnan(excess), np.inf, excess)
    return int(np.argmax(score)), int(bad.sum())


def _fmt_index(index):
    return "[" + ", ".join(str(int(k)) for k in index) + "]"


# ---- the two modes ------------------------------------------------------------------------------

def _check_full(fn, inputs, checked, eps, atol, rtol, seed, raise_exception):
    """Whole Jacobians: numeric column by column, analytic row by row. Returns an error or None."""
    y0 = _evaluate(fn, inputs)
    xp = get_array_module(y0)
    out_shape, n_out = y0.shape, y0.size
    # analytic: row k of every J_i from one backward with v = e_k (graph kept between rows)
    analytic = [np.zeros((n_out, inputs[i].size)) for i in checked]
    for i in checked:
        inputs[i].grad = None
    y = fn(*inputs)
    if y.requires_grad:
        for k in range(n_out):
            v = xp.zeros(n_out, dtype=np.float64)
            v[k] = 1.0
            for i in checked:
                inputs[i].grad = None
            y.backward(v.reshape(out_shape), retain_graph=True)
            for row, i in zip(analytic, checked):
                if inputs[i].grad is not None:
                    row[k] = asnumpy(inputs[i].grad).reshape(-1)
    for a, i in zip(analytic, checked):
        x = inputs[i]
        numeric = asnumpy(_numeric_elements(fn, inputs, x, range(x.size), eps)).T  # (out, in)
        if numeric.size == 0:
            continue
        flat, n_bad = _worst(a, numeric, atol, rtol)
        if n_bad == 0:
            continue
        k, j = np.unravel_index(flat, a.shape)
        out_el = np.unravel_index(k, out_shape) if out_shape else ()
        el = np.unravel_index(j, x.shape) if x.shape else ()
        an, nu = float(a[k, j]), float(numeric[k, j])
        return GradcheckError(
            f"gradcheck (full Jacobian) failed for input {i} of shape {x.shape}: worst element "
            f"d out{_fmt_index(out_el)} / d input{i}{_fmt_index(el)}: analytic {an:.10g}, "
            f"numeric {nu:.10g} (|diff| {abs(an - nu):.3g} > atol + rtol*|numeric| = "
            f"{atol + rtol * abs(nu):.3g}); {n_bad} of {a.size} Jacobian entries out of tolerance",
            input_index=i, element=tuple(int(e) for e in el),
            output_element=tuple(int(e) for e in out_el), analytic=an, numeric=nu, mode="full")
    return None


def _check_directional(fn, inputs, checked, eps, atol, rtol, seed, raise_exception):
    """u_i . vjp(v)_i against v . (f(x_i + eps u_i) - f(x_i - eps u_i)) / 2 eps, per input."""
    rng = np.random.default_rng(seed)
    y0 = _evaluate(fn, inputs)
    xp = get_array_module(y0)
    v = _unit(rng.standard_normal(y0.size))
    v_dev = xp.asarray(v).reshape(y0.shape)
    grads = _vjp(fn, inputs, checked, v_dev)
    for i, g in zip(checked, grads):
        x = inputs[i]
        u = _unit(rng.standard_normal(x.size))
        analytic = float(np.dot(asnumpy(g).reshape(-1), u))
        plus, minus = _perturbed(fn, inputs, x, xp.asarray(u), eps)
        numeric = float(np.dot(v, asnumpy(plus - minus).reshape(-1)) / (2 * eps))
        if abs(analytic - numeric) <= atol + rtol * abs(numeric):
            continue
        message = (f"gradcheck (directional, seed {seed}) failed for input {i} of shape "
                   f"{x.shape}: u.vjp(v) analytic {analytic:.10g} vs v.(f(x+eps u)-f(x-eps u))"
                   f"/2eps numeric {numeric:.10g} (|diff| {abs(analytic - numeric):.3g} > "
                   f"{atol + rtol * abs(numeric):.3g})")
        if not raise_exception:
            return GradcheckError(message, input_index=i, analytic=analytic, numeric=numeric,
                                  mode="directional")
        return _localize(fn, inputs, i, asnumpy(g).reshape(-1), v_dev, eps, atol, rtol, rng,
                         message, analytic, numeric)
    return None


def _localize(fn, inputs, i, g, v, eps, atol, rtol, rng, message, d_analytic, d_numeric):
    """Name the worst element of a failing directional check: d(v.f)/dx_j, element by element."""
    x = inputs[i]
    n = x.size
    if n <= LOCALIZE_MAX_ELEMENTS:
        elements, scope = np.arange(n), f"all {n} elements"
    else:
        half = LOCALIZE_MAX_ELEMENTS // 2
        top = np.argsort(-np.abs(g))[:half]
        rest = np.setdiff1d(np.arange(n), top)
        elements = np.concatenate([top, rng.choice(rest, LOCALIZE_MAX_ELEMENTS - half,
                                                   replace=False)])
        scope = f"{LOCALIZE_MAX_ELEMENTS} of {n} elements (largest grads + random)"
    rows = _numeric_elements(fn, inputs, x, elements, eps)             # (len, out)
    numeric = asnumpy(rows @ v.reshape(-1))                           # d(v.f)/dx_j
    analytic = g[elements]
    flat, n_bad = _worst(analytic, numeric, atol, rtol)
    j = int(elements[flat])
    el = tuple(int(e) for e in np.unravel_index(j, x.shape)) if x.shape else ()
    an, nu = float(analytic[flat]), float(numeric[flat])
    if n_bad:
        where = (f"; worst element of d(v.out)/d input{i}: input{i}{_fmt_index(el)}: analytic "
                 f"{an:.10g}, numeric {nu:.10g} ({n_bad} out of tolerance among {scope})")
    else:
        where = (f"; no single element out of tolerance among {scope} (largest difference at "
                 f"input{i}{_fmt_index(el)}: analytic {an:.10g}, numeric {nu:.10g})")
    return GradcheckError(message + where, input_index=i, element=el, analytic=an, numeric=nu,
                          mode="directional")


def _unit(a):
    norm = np.linalg.norm(a)
    return a / norm if norm > 0 else a
