"""Tests of the gradient checker itself, and two larger gradchecks: one BERT-style attention
block and random chains of ops drawn by hypothesis (assert_close: tests/testing/test_compare.py)."""
import importlib
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitune as mt
import minitune.functional as F
from minitune.testing import GradcheckError, gradcheck
from op_helpers import leaf, values


# the module (the package's name "gradcheck" is the function)
gradcheck_module = importlib.import_module("minitune.testing.gradcheck")
MODES = ["full", "directional"]


# ---- ops with deliberately wrong backwards ------------------------------------------------------

class ScaledSquare(mt.Function):
    """y = x**2 with the gradient off by a factor: 3x instead of 2x."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        return gy * 3.0 * self.x


class WrongSignTanh(mt.Function):
    """y = tanh(x) with the gradient's sign flipped."""

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, gy):
        return -gy * (1 - self.y ** 2)


class MulWrongAt(mt.Function):
    """y = a * b; the gradient of b is ``factor * gy`` too large at one element (``bad``)."""

    def __init__(self, bad, factor=0.5):
        self.bad, self.factor = bad, factor

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        gb = gy * self.a
        gb[self.bad] += self.factor * gy[self.bad]
        return gy * self.b, gb


class IgnoresGy(mt.Function):
    """y = 2x with a backward that assumes gy is all ones: right only under .sum()."""

    def forward(self, x):
        return 2.0 * x

    def backward(self, gy):
        return np.full_like(gy, 2.0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bad_op", [ScaledSquare, WrongSignTanh])
def test_wrong_backward_is_caught(mode, bad_op):
    x = leaf(values(0, (3, 4)))
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda t: bad_op().apply(t), [x], mode=mode)
    err = info.value
    assert err.input_index == 0 and err.mode == mode
    assert "input 0" in str(err) and "analytic" in str(err) and "numeric" in str(err)
    assert "input0[" + ", ".join(map(str, err.element)) + "]" in str(err)
    # analytic / numeric at the named element is the planted error: x1.5 or x-1
    assert err.analytic / err.numeric == pytest.approx(1.5 if bad_op is ScaledSquare else -1.0,
                                                       rel=1e-5)
    if mode == "full":
        # the worst Jacobian entry: |3x - 2x| = |x| is largest, or 2 (1 - tanh(x)^2) is
        pick = np.argmax if bad_op is ScaledSquare else np.argmin
        worst = np.unravel_index(pick(np.abs(x.data)), x.shape)
        assert err.element == worst and err.output_element == worst


@pytest.mark.parametrize("mode", MODES)
def test_error_names_the_input_index_and_the_worst_element(mode):
    a, b = leaf(values(1, (2, 3))), leaf(values(2, (2, 3)))
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda x, y: MulWrongAt((1, 2)).apply(x, y), [a, b], mode=mode)
    err = info.value
    assert err.input_index == 1 and err.element == (1, 2)
    assert "input 1" in str(err) and "input1[1, 2]" in str(err)
    # analytic = (a + 0.5) * gy, numeric = a * gy at that element, whatever gy is
    assert err.analytic / err.numeric == pytest.approx(1 + 0.5 / a.data[1, 2], rel=1e-5)
    if mode == "full":
        assert err.output_element == (1, 2)


@pytest.mark.parametrize("mode", MODES)
def test_backward_that_ignores_the_output_grad_is_caught(mode):
    x = leaf(values(3, (2, 5)))
    assert gradcheck(lambda t: IgnoresGy().apply(t).sum(), [x], mode=mode)   # hidden by sum
    with pytest.raises(GradcheckError):
        gradcheck(lambda t: IgnoresGy().apply(t), [x], mode=mode)


@pytest.mark.parametrize("seed", range(5))
def test_directional_check_catches_errors_for_any_seed(seed):
    x = leaf(values(seed, (4, 6)))
    with pytest.raises(GradcheckError):
        gradcheck(lambda t: ScaledSquare().apply(t), [x], mode="directional", seed=seed)


def test_directional_localises_large_inputs_on_a_sample(monkeypatch):
    monkeypatch.setattr(gradcheck_module, "LOCALIZE_MAX_ELEMENTS", 64)
    a = leaf(values(4, (30, 20)))            # 600 elements > 64: sampled localisation
    b = leaf(values(5, (30, 20)))
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda x, y: MulWrongAt((17, 3), 100.0).apply(x, y), [a, b],
                  mode="directional")
    err = info.value
    assert err.input_index == 1 and err.element == (17, 3)
    assert "64 of 600 elements" in str(err)


def test_auto_mode_uses_full_for_small_and_directional_for_large_inputs():
    small = leaf(values(0, (4, 4)))
    large = leaf(values(0, (gradcheck_module.FULL_MAX_ELEMENTS + 1,)))
    for x, expected in [(small, "full"), (large, "directional")]:
        with pytest.raises(GradcheckError) as info:
            gradcheck(lambda t: ScaledSquare().apply(t), [x])
        assert info.value.mode == expected


@pytest.mark.parametrize("mode", MODES)
def test_raise_exception_false_returns_a_bool(mode):
    x = leaf(values(0, (3, 3)))
    assert gradcheck(lambda t: ScaledSquare().apply(t), [x], mode=mode,
                     raise_exception=False) is False
    assert gradcheck(lambda t: t * t, [x], mode=mode, raise_exception=False) is True


@pytest.mark.parametrize("mode", MODES)
def test_inputs_data_and_grad_are_left_as_they_were(mode):
    x = leaf(values(0, (3, 3)))
    data, sentinel = x.data, np.full((3, 3), 7.0)
    copy = data.copy()
    x.grad = sentinel
    gradcheck(lambda t: (t * t).tanh(), [x], mode=mode)
    assert x.data is data and np.array_equal(x.data, copy)
    assert x.grad is sentinel


def test_only_inputs_that_require_grad_are_checked():
    ids = np.array([[0, 2, 2]])
    w = leaf(values(0, (3, 4)))
    scale = mt.tensor(values(1, (4,)), dtype=np.float64)          # constant, not checked
    assert gradcheck(lambda i, weight, s: F.embedding(i, weight) * s, [ids, w, scale])
    assert scale.grad is None
    assert gradcheck(lambda t: t.tanh(), leaf(values(0, (2,))))    # a single Tensor is fine


def test_float32_inputs_and_outputs_are_refused():
    x32 = mt.tensor(values(0, (2, 2)), dtype=np.float32, requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda t: t * t, [x32])
    x = leaf(values(0, (2, 2)))
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda t: t * mt.tensor(np.ones(2, np.float32)).astype(np.float32)
                  .astype(np.float32) if False else F.linear(t.astype(np.float32), x32), [x])


def test_bad_arguments_are_refused():
    x = leaf(values(0, (2,)))
    with pytest.raises(ValueError, match="mode"):
        gradcheck(lambda t: t, [x], mode="fast")
    with pytest.raises(ValueError, match="requires_grad"):
        gradcheck(lambda t: t, [mt.tensor(np.ones(2), dtype=np.float64)])
    with pytest.raises(TypeError, match="must return a Tensor"):
        gradcheck(lambda t: t.data, [x])


def test_non_deterministic_fn_is_refused():
    rng = np.random.default_rng(0)
    x = leaf(values(0, (4,)))
    with pytest.raises(GradcheckError, match="deterministic"):
        gradcheck(lambda t: t * rng.random(), [x])


def test_gradcheck_is_exported_from_the_package():
    assert mt.gradcheck is gradcheck and mt.GradcheckError is GradcheckError
    assert issubclass(GradcheckError, AssertionError)


# ---- a BERT attention block, directional -----------------------------------------------------

B, T, H, NH, I = 2, 5, 8, 2, 16
HS = H // NH


def attention_block(x, mask_bias, wq, bq, wk, bk, wv, bv, wo, bo, g1, b1, wi, bi, wf, bf, g2, b2):
    """One BERT encoder layer: x (B, T, H), mask_bias (B, 1, 1, T) additive -> (B, T, H)."""
    def heads(t):
        return t.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)         # (B, T, H) -> (B, NH, T, HS)

    q, k, v = heads(F.linear(x, wq, bq)), heads(F.linear(x, wk, bk)), heads(F.linear(x, wv, bv))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(HS) + mask_bias   # (B, NH, T, T)
    probs = F.softmax(scores, axis=-1)
    ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(B, T, H)          # (B, NH, T, HS) -> (B, T, H)
    h1 = F.layer_norm(F.linear(ctx, wo, bo) + x, g1, b1, eps=1e-12)
    ff = F.linear(F.gelu(F.linear(h1, wi, bi)), wf, bf)
    return F.layer_norm(ff + h1, g2, b2, eps=1e-12)


def block_inputs(seed=0):
    rng = np.random.default_rng(seed)

    def p(*shape, scale=0.3):
        return leaf(rng.standard_normal(shape) * scale)

    attention_mask = np.ones((B, T))
    attention_mask[1, -1] = 0                                  # one padded position
    mask_bias = mt.tensor((1.0 - attention_mask)[:, None, None, :] * -1e9, dtype=np.float64)
    x = p(B, T, H, scale=1.0)
    params = [p(H, H), p(H), p(H, H), p(H), p(H, H), p(H), p(H, H), p(H),
              leaf(1 + rng.standard_normal(H) * 0.1), p(H), p(I, H), p(I), p(H, I), p(H),
              leaf(1 + rng.standard_normal(H) * 0.1), p(H)]
    return [x, mask_bias] + params


@pytest.mark.parametrize("seed", [0, 1])
def test_attention_block_gradcheck_directional(seed):
    inputs = block_inputs(seed)
    assert gradcheck(attention_block, inputs, mode="directional", seed=seed)


def test_attention_block_padding_is_invisible_to_other_positions():
    inputs = block_inputs(0)
    y = attention_block(*inputs).data
    inputs[0].data = inputs[0].data.copy()
    inputs[0].data[1, -1] += 3.0                               # change the padded token only
    y2 = attention_block(*inputs).data
    np.testing.assert_array_equal(y2[1, :-1], y[1, :-1])
    np.testing.assert_array_equal(y2[0], y[0])
    assert not np.allclose(y2[1, -1], y[1, -1])


def test_attention_block_wrong_backward_is_caught():
    inputs = block_inputs(0)

    def broken(x, *rest):
        return attention_block(ScaledSquare().apply(x) * 0.5, *rest)

    with pytest.raises(GradcheckError) as info:
        gradcheck(broken, inputs, mode="directional")
    assert info.value.input_index == 0


# ---- random chains of ops ------------------------------------------------------------------------

def _params(seed):
    rng = np.random.default_rng(seed)
    return {"g": leaf(1 + 0.1 * rng.standard_normal(4)), "b": leaf(rng.standard_normal(4)),
            "row": leaf(rng.standard_normal(4)), "col": leaf(rng.standard_normal((3, 1))),
            "m": leaf(rng.standard_normal((3, 4))), "w": leaf(0.5 * rng.standard_normal((4, 4)))}


COND = np.array([[True, False, True, False], [False, False, True, True], [True, True, False, True]])

# each step maps the current value h (3, 4) and the parameters p to a new (3, 4) value, staying
# smooth and bounded so that chains of any length keep finite differences accurate
STEPS = {
    "tanh": lambda h, p: h.tanh(),
    "gelu": lambda h, p: F.gelu(h),
    "exp_tanh": lambda h, p: h.tanh().exp(),
    "softmax_rows": lambda h, p: F.softmax(h, axis=-1),
    "softmax_cols": lambda h, p: F.softmax(h, axis=0),
    "log_softmax": lambda h, p: F.log_softmax(h, axis=-1),
    "layer_norm": lambda h, p: F.layer_norm(h, p["g"], p["b"]),
    "scale_row": lambda h, p: h * p["row"],
    "shift_col": lambda h, p: h + p["col"],
    "sub_from": lambda h, p: p["m"] - h,
    "soft_div": lambda h, p: h / (1.0 + h * h),
    "self_mul": lambda h, p: h * h.tanh(),
    "sqrt": lambda h, p: (h * h + 1.0).sqrt(),
    "log": lambda h, p: (h * h + 1.0).log(),
    "pow": lambda h, p: (h * h + 0.5) ** 0.75,
    "matmul": lambda h, p: h @ p["w"],
    "linear": lambda h, p: F.linear(h, p["w"], p["row"]),
    "transpose": lambda h, p: (h.T * 2.0).transpose(1, 0),
    "reshape": lambda h, p: (h.reshape(2, 6) - 0.5).reshape(3, 4),
    "center": lambda h, p: h - h.mean(axis=1, keepdims=True),
    "max_sub": lambda h, p: h - h.max(axis=0, keepdims=True),
    "sum_scale": lambda h, p: h * h.sum(axis=0).tanh(),
    "gather_rows": lambda h, p: h[[2, 0, 0]] + h,
    "flip": lambda h, p: h[::-1, ::-1] * 0.5 + h,
    "concat": lambda h, p: F.concatenate([h[:, :1], h[:, 1:].tanh()], axis=1),
    "stack": lambda h, p: F.stack([h, -h.tanh()], axis=0).mean(axis=0),
    "where": lambda h, p: F.where(COND, h, h * 0.5),
    "masked_fill": lambda h, p: F.masked_fill(h, COND, 0.25),
    "dropout": lambda h, p: F.dropout(h, 0.3, rng=np.random.default_rng(7)),
}
# steps that also read an earlier value e of the chain: the graph becomes a DAG with reuse
JOINS = {
    "add": lambda h, e: h + e,
    "mul_tanh": lambda h, e: h * e.tanh(),
    "where_max": lambda h, e: F.where(COND, h, e) - e.max(axis=1, keepdims=True),
}


@st.composite
def chains(draw):
    n = draw(st.integers(1, 6))
    plan = []
    for i in range(n):
        if i and draw(st.booleans()):
            plan.append(("join", draw(st.sampled_from(sorted(JOINS))), draw(st.integers(0, i))))
        else:
            plan.append(("step", draw(st.sampled_from(sorted(STEPS))), None))
    return plan


def run_chain(plan, x, p):
    history = [x]
    h = x
    for kind, name, j in plan:
        h = STEPS[name](h, p) if kind == "step" else JOINS[name](h, history[j])
        history.append(h)
    return h


@given(plan=chains(), seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(MODES))
def test_random_chains_of_ops(plan, seed, mode):
    p = _params(seed)
    names = sorted(p)
    x = leaf(values(seed, (3, 4)))

    def fn(x_, *ps):
        return run_chain(plan, x_, dict(zip(names, ps)))

    assert gradcheck(fn, [x] + [p[k] for k in names], mode=mode, seed=seed % 1000)
