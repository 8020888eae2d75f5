"""``assert_close``: compare arrays with tolerances chosen by dtype.

An element passes when |actual - expected| <= atol + rtol * |expected|. Unless given, rtol and
atol come from the less precise dtype of the two arguments (float16 < float32 < float64); integer
and boolean arrays must match exactly. This is the one comparison helper of the project and its
tests: a check relative to a tensor's scale passes ``atol=tol * max|expected|``, a bitwise one
``rtol=0, atol=0``.
"""
import numpy as np

from ..backend import asnumpy
from ..tensor import Tensor

#: (rtol, atol) per dtype: a few units in the last place relative, plus a small absolute floor for
#: values that cancel to near zero (float32/float16 as torch.testing.assert_close).
DEFAULT_TOLERANCES = {
    np.dtype(np.float16): (1e-3, 1e-5),
    np.dtype(np.float32): (1.3e-6, 1e-5),
    np.dtype(np.float64): (1e-7, 1e-7),
}


def _as_array(x):
    if isinstance(x, Tensor):     # not getattr(x, "data"): a cupy array's .data is a MemoryPointer
        x = x.data
    return asnumpy(x) if hasattr(x, "shape") else np.asarray(x)


def _default_tolerances(*dtypes):
    floats = [d for d in dtypes if d.kind == "f"]
    if not floats:
        return 0.0, 0.0
    least = min(floats, key=lambda d: d.itemsize)
    return DEFAULT_TOLERANCES.get(least, DEFAULT_TOLERANCES[np.dtype(np.float64)])


def assert_close(actual, expected, rtol=None, atol=None, equal_nan=False, check_dtype=False,
                 msg=""):
    """Raise AssertionError unless ``actual`` and ``expected`` agree elementwise.

    Args:
        actual, expected: Tensors, numpy/cupy arrays or Python numbers; shapes must be equal
            (no broadcasting).
        rtol, atol: tolerances; each one left None is taken from ``DEFAULT_TOLERANCES`` for the
            less precise dtype of the two (0 for integers and booleans).
        equal_nan: treat NaN in the same position on both sides as equal.
        check_dtype: also require equal dtypes.
        msg: prefix of the error message.

    Returns:
        The headroom used: max |actual - expected| / (atol + rtol * |expected|), at most 1 when
        the check passes (0 for identical arrays), for reports of how tight a tolerance is.
    """
    a, e = _as_array(actual), _as_array(expected)
    prefix = f"{msg}: " if msg else ""
    if a.shape != e.shape:
        raise AssertionError(f"{prefix}shapes differ: actual {a.shape}, expected {e.shape}")
    if check_dtype and a.dtype != e.dtype:
        raise AssertionError(f"{prefix}dtypes differ: actual {a.dtype}, expected {e.dtype}")
    d_rtol, d_atol = _default_tolerances(a.dtype, e.dtype)
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    with np.errstate(invalid="ignore"):            # inf - inf: NaN, judged below
        diff = np.abs(a64 - e64)
    ok = (diff <= atol + rtol * np.abs(e64)) & np.isfinite(diff)
    ok |= (a64 == e64)                              # equal infinities
    if equal_nan:
        ok |= np.isnan(a64) & np.isnan(e64)
    if ok.all():
        with np.errstate(invalid="ignore", divide="ignore"):
            used = np.where(a64 == e64, 0.0, diff / (atol + rtol * np.abs(e64)))
        return float(np.nan_to_num(used, nan=0.0).max()) if used.size else 0.0
    bad = ~ok
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(bad, np.nan_to_num(diff - rtol * np.abs(e64), nan=np.inf), -np.inf)
        worst = np.unravel_index(int(np.argmax(score)), a.shape) if a.shape else ()
        rel = diff[worst] / abs(e64[worst]) if e64[worst] != 0 else np.inf
    raise AssertionError(
        f"{prefix}{int(bad.sum())} of {a.size} elements differ (rtol {rtol:g}, atol {atol:g}); "
        f"worst at {tuple(int(k) for k in worst)}: actual {a64[worst]:.10g}, expected "
        f"{e64[worst]:.10g}, |diff| {diff[worst]:.3g}, relative {rel:.3g}")
