"""Behaviour of the autograd engine: graph building and freeing, gradient accumulation,
broadcasting, no_grad, dtypes, and the errors a user sees."""
import gc
import weakref

import numpy as np
import pytest

import minitune as mt
import minitune.functional as F
from minitune.autograd import GradTerms, _topological_order, grad_of_output, sum_to
from minitune.testing import assert_close
from op_helpers import leaf, values


# ---- accumulation when a tensor is used more than once --------------------------------------

@pytest.mark.parametrize("fn, grad", [
    (lambda x: x * x, lambda v: 2 * v),          # d(x^2)/dx = 2x: both inputs are x
    (lambda x: x + x, lambda v: np.full_like(v, 2.0)),
    (lambda x: x * x * x, lambda v: 3 * v ** 2),
])
def test_a_tensor_used_twice_gets_both_gradients(fn, grad):
    x = leaf([1.0, -2.0, 3.0])
    fn(x).sum().backward()
    np.testing.assert_array_equal(x.grad, grad(x.data))


def test_diamond_graph():
    # x -> a = 2x, b = x^2 -> y = a * b = 2 x^3: dy/dx = 6 x^2, reached along two paths
    x = leaf([1.0, 2.0])
    a, b = x * 2.0, x * x
    (a * b).sum().backward()
    np.testing.assert_allclose(x.grad, 6 * x.data ** 2)


def test_uneven_paths_wait_for_the_complete_gradient():
    # a feeds c directly and through a longer chain b; a's creator must run once, after both
    # contributions arrived (a topological order, not a plain depth-first walk)
    x = leaf([0.5, -1.0])
    a = x.exp()
    b = (a * 3.0).tanh() * 2.0
    c = a + b
    c.sum().backward()
    ea = np.exp(x.data)
    expected = ea * (1 + 6 * (1 - np.tanh(3 * ea) ** 2))
    assert_close(x.grad, expected, rtol=1e-14)


def test_topological_order_lists_every_function_after_its_inputs():
    x = leaf([1.0])
    a = x * 2.0
    b = a.exp()
    c = a + b
    d = c * a
    order = _topological_order(d.creator)
    pos = {id(f): i for i, f in enumerate(order)}
    assert len(order) == 4                  # x*2, exp, +, *
    for f in order:
        for inp in f.inputs:
            if inp.creator is not None:
                assert pos[id(inp.creator)] < pos[id(f)]


def test_deep_chains_do_not_recurse():
    # the topological sort is an iterative DFS: no RecursionError on a long chain
    x = leaf([1.0])
    y = x
    for _ in range(3000):
        y = y * 1.0
    y.sum().backward()
    assert x.grad[0] == 1.0


def test_leaf_grad_accumulates_across_backward_calls():
    x = leaf([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0 + 2.0, 3.0 + 4.0])
    x.zero_grad()
    assert x.grad is None


def test_unused_and_constant_tensors_get_no_grad():
    x, unused = leaf([1.0]), leaf([2.0])
    const = mt.tensor([3.0], dtype=np.float64)
    (x * const).sum().backward()
    assert unused.grad is None and const.grad is None


# ---- broadcasting is undone by summing ----------------------------------------------------------

def test_broadcast_gradients_are_summed_back():
    a = leaf(np.ones((3, 1)))
    b = leaf(np.ones(4))
    c = leaf(np.ones((2, 1, 1)))
    y = a * b + c                        # (2, 3, 4)
    assert y.shape == (2, 3, 4)
    y.sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (4,) and c.grad.shape == (2, 1, 1)
    np.testing.assert_array_equal(a.grad, np.full((3, 1), 8.0))
    np.testing.assert_array_equal(b.grad, np.full(4, 6.0))
    np.testing.assert_array_equal(c.grad, np.full((2, 1, 1), 12.0))


@pytest.mark.parametrize("shape", [(), (4,), (1, 4), (3, 1), (2, 1, 1), (1, 3, 4), (2, 3, 4)])
def test_sum_to(shape):
    g = np.arange(24.0).reshape(2, 3, 4)
    out = sum_to(g, shape)
    assert out.shape == shape
    expected = g
    while expected.ndim > len(shape):
        expected = expected.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1:
            expected = expected.sum(axis=axis, keepdims=True)
    np.testing.assert_array_equal(out, expected)


# ---- graph freeing, retain_graph ----------------------------------------------------------------

def test_second_backward_raises_a_clear_error():
    x = leaf([1.0, 2.0])
    y = (x.exp() * 2.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="already freed.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = leaf([1.0, 2.0])
    y = (x.exp() * 2.0).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 4 * np.exp(x.data))


def test_backward_frees_intermediate_tensors_and_saved_arrays():
    x = leaf(np.ones(1000))
    a = x * 2.0
    a_ref = weakref.ref(a)
    b = a.exp()
    exp_fn = b.creator
    del a
    loss = b.sum()
    del b
    gc.collect()
    assert a_ref() is not None            # held by the graph until backward
    loss.backward()
    gc.collect()
    assert a_ref() is None                # freed with the graph
    assert not hasattr(exp_fn, "y") and not hasattr(exp_fn, "inputs")


def test_graph_holds_outputs_weakly():
    x = leaf([1.0])
    y = x * 2.0
    fn = y.creator
    assert fn.outputs[0]() is y
    del y
    gc.collect()
    assert fn.outputs[0]() is None


# ---- no_grad ------------------------------------------------------------------------------------

def test_no_grad_builds_no_graph():
    x = leaf([1.0, 2.0])
    with mt.no_grad():
        assert not mt.is_grad_enabled()
        y = F.softmax(x * 2.0 + 1.0)
    assert mt.is_grad_enabled()
    assert y.creator is None and not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_no_grad_is_restored_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with mt.no_grad():
            1 / 0
    assert mt.is_grad_enabled()


def test_detach_cuts_the_graph():
    x = leaf([1.0, 2.0])
    d = (x * 2.0).detach()
    assert d.creator is None and not d.requires_grad
    (x * d).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])


def test_requires_grad_propagates_only_from_inputs_that_require_it():
    a = mt.tensor([1.0])
    b = a * 2.0 + 1.0
    assert not b.requires_grad and b.creator is None
    c = b * leaf([1.0])
    assert c.requires_grad and c.creator is not None


# ---- dtypes -------------------------------------------------------------------------------------

def test_python_floats_default_to_float32_and_ints_to_int64():
    assert mt.tensor([1.0, 2.0]).dtype == np.float32
    assert mt.tensor(1.5).dtype == np.float32
    assert mt.tensor([1, 2]).dtype == np.int64
    assert mt.tensor(np.arange(3.0)).dtype == np.float64      # an array keeps its dtype
    assert mt.tensor([1.0], dtype=np.float64).dtype == np.float64


def test_float64_is_kept_through_forward_and_backward():
    x = leaf(values(0, (2, 3)))
    w = leaf(values(1, (4, 3)))
    y = F.layer_norm(F.gelu(F.linear(x, w)), leaf(np.ones(4)), leaf(np.zeros(4)))
    loss = F.cross_entropy(y, np.array([1, 3]))
    assert y.dtype == np.float64 and loss.dtype == np.float64
    loss.backward()
    assert x.grad.dtype == np.float64 and w.grad.dtype == np.float64


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(ValueError, match="floating-point"):
        mt.tensor([1, 2], requires_grad=True)
    with pytest.raises(ValueError, match="int64"):
        mt.Tensor(np.arange(3), requires_grad=True)
    with pytest.raises(ValueError):
        mt.tensor([True, False]).requires_grad_()


@pytest.mark.parametrize("expr", [
    lambda x: x * 2.0, lambda x: 2.0 * x, lambda x: x + 1, lambda x: 1.0 - x, lambda x: x / 3.0,
    lambda x: 3.0 / x, lambda x: x ** 2, lambda x: x ** 0.5, lambda x: 2.0 ** x,
    lambda x: F.masked_fill(x, np.array([True, False]), -1e4), lambda x: F.where(
        np.array([True, False]), x, 0.0), lambda x: F.layer_norm(x, mt.tensor([1.0, 1.0]),
                                                                  mt.tensor([0.0, 0.0]))])
def test_python_scalars_keep_float32(expr):
    x = mt.tensor([1.0, 2.0], requires_grad=True)
    y = expr(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_mixing_float32_and_float64_follows_numpy_promotion():
    a = mt.tensor([1.0, 2.0], requires_grad=True)                   # float32
    b = mt.tensor([3.0, 4.0], dtype=np.float64, requires_grad=True)
    for y in (a * b, a + b, F.matmul(a.reshape(1, 2), b.reshape(2, 1))):
        assert y.dtype == np.result_type(np.float32, np.float64) == np.float64
    (a * b).sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64   # each grad in its dtype
    np.testing.assert_array_equal(a.grad, [3.0, 4.0])
    x32, w32 = mt.tensor(np.ones((2, 3), np.float32)), mt.tensor(np.ones((4, 3), np.float32))
    assert F.linear(x32, w32, mt.tensor(np.ones(4))).dtype == np.float64
    assert F.linear(x32, w32, mt.tensor(np.ones(4, np.float32))).dtype == np.float32


def test_comparisons_give_boolean_tensors_without_grad():
    x = leaf([1.0, -2.0, 3.0])
    for c in (x > 0, x >= 0, x < 0, x <= 0, x == 1.0, x != 1.0, x > leaf([0.0, 0.0, 5.0])):
        assert c.dtype == np.bool_ and not c.requires_grad and c.creator is None
    np.testing.assert_array_equal((x > 0).data, [True, False, True])
    F.where(x > 0, x, x * 0.0).sum().backward()               # the mask itself is a constant
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 1.0])
    assert {x: 1}[x] == 1                                     # still hashable by identity


# ---- leaf gradients own their memory ----------------------------------------------------------

def test_leaf_grads_never_share_memory():
    # add hands gy to both inputs and transpose returns a view: without a copy a.grad and
    # b.grad would be one array, and an in-place update (clip_grad_norm) would hit both
    a, b = leaf(np.ones((2, 3))), leaf(np.ones((2, 3)))
    c, d = leaf(np.ones((3, 2))), leaf(np.ones((2, 3)))
    (a + b + c.T - d).sum().backward()
    grads = [a.grad, b.grad, c.grad, d.grad]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.shares_memory(grads[i], grads[j])
    a.grad *= 0.5
    np.testing.assert_array_equal(b.grad, np.ones((2, 3)))


def test_backward_does_not_keep_the_callers_grad_array():
    x = leaf([1.0, 2.0])
    g = np.array([1.0, 1.0])
    (x + 0.0).backward(g)
    x2 = leaf([1.0, 2.0])
    x2.backward(g)
    assert not np.shares_memory(x.grad, g) and not np.shares_memory(x2.grad, g)


# ---- errors -------------------------------------------------------------------------------------

def test_backward_on_a_non_scalar_without_grad_raises():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"scalar output, got shape \(2,\)"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match="grad shape"):
        (x * 2.0).backward(np.ones(3))
    y = x * 2.0
    y.backward(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 20.0])


def test_backward_on_a_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mt.tensor([1.0]).sum().backward()


def _ce(logits, target):
    return F.cross_entropy(logits, target)


@pytest.mark.parametrize("op,args,shapes", [
    ("add", lambda: (mt.tensor(np.ones((2, 3))) + mt.tensor(np.ones(4)),), ["(2, 3)", "(4,)"]),
    ("matmul", lambda: (mt.tensor(np.ones((2, 3))) @ mt.tensor(np.ones((4, 5))),),
     ["(2, 3)", "(4, 5)"]),
    ("matmul", lambda: (F.matmul(mt.tensor(np.ones((2, 2, 3))), mt.tensor(np.ones((3, 3, 4)))),),
     ["(2, 2, 3)", "(3, 3, 4)"]),
    ("linear", lambda: (F.linear(mt.tensor(np.ones((2, 3))), mt.tensor(np.ones((4, 5)))),),
     ["(2, 3)", "(4, 5)"]),
    ("linear", lambda: (F.linear(mt.tensor(np.ones((2, 3))), mt.tensor(np.ones((4, 3))),
                                 mt.tensor(np.ones(5))),), ["(2, 3)", "(4, 3)", "(5,)"]),
    ("layer_norm", lambda: (F.layer_norm(mt.tensor(np.ones((2, 3))), mt.tensor(np.ones(4)),
                                         mt.tensor(np.ones(4))),), ["(2, 3)", "(4,)"]),
    ("cross_entropy", lambda: (_ce(mt.tensor(np.ones((2, 3))), np.array([0, 1, 2])),),
     ["(2, 3)", "(3,)"]),
    ("reshape", lambda: (mt.tensor(np.ones((2, 3))).reshape(4, 2),), ["(2, 3)", "(4, 2)"]),
    ("concatenate", lambda: (F.concatenate([mt.tensor(np.ones((2, 3))),
                                            mt.tensor(np.ones((2, 4)))], axis=0),),
     ["(2, 3)", "(2, 4)"]),
])
def test_shape_mismatch_errors_name_the_op_and_both_shapes(op, args, shapes):
    with pytest.raises(ValueError) as info:
        args()
    message = str(info.value)
    assert op in message, message
    for s in shapes:
        assert s in message, message


# ---- saved arrays ---------------------------------------------------------------------------

def test_mul_and_div_by_a_python_number_keep_no_copy_of_the_tensor():
    """x * 2.0 needs only 2.0 in backward: the op must not hold on to x's array (attention's
    scores * scale would otherwise keep a (B, NH, T, T) array alive per layer)."""
    x = mt.tensor(np.ones((3, 4)), requires_grad=True)
    for y in (x * 2.0, x / 4.0):
        assert y.creator.a is None
    y = (x * 2.0 + x / 4.0).sum()
    y.backward()
    np.testing.assert_allclose(x.grad, np.full((3, 4), 2.25))


# ---- gradients handed over unsummed (GradTerms) to a creator that adds them itself -----------

def _layer_norm_used(times, dtype, fused, seed=0):
    """A LayerNorm whose output feeds ``times`` ops (as a BERT layer's output feeds the next
    layer's attention and its residual); returns the leaves' gradients."""
    rng = np.random.default_rng(seed)
    x = mt.tensor(rng.standard_normal((37, 67)).astype(dtype), requires_grad=True)
    w = mt.tensor(rng.standard_normal(67).astype(dtype), requires_grad=True)
    b = mt.tensor(rng.standard_normal(67).astype(dtype), requires_grad=True)
    r = mt.tensor(rng.standard_normal((37, 67)).astype(dtype), requires_grad=True)
    with mt.dispatch.use_fused(fused):
        h = F.layer_norm(x, w, b, residual=r)
        uses = [(h * float(i + 1)).tanh() for i in range(times)]
        loss = uses[0]
        for u in uses[1:]:
            loss = loss + u * u
        loss.sum().backward()
    return [t.grad for t in (x, w, b, r)]


@pytest.mark.parametrize("times", [2, 3, 4])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_layer_norm_adds_its_output_gradients_itself_to_the_engines_bits(times, fused,
                                                                            dtype, monkeypatch):
    """The LayerNorm gets its output's gradients as GradTerms and adds them in its own pass
    (fused), or has them added first (reference): either way the bits of the engine's own
    sum, which is what runs when the Function does not take terms."""
    got = _layer_norm_used(times, dtype, fused)
    monkeypatch.setattr(mt.ops.nn.LayerNorm, "adds_grad_terms", False)
    want = _layer_norm_used(times, dtype, fused)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_the_layer_norm_backward_receives_the_terms(monkeypatch):
    seen = []
    backward = mt.ops.nn.LayerNorm.backward
    monkeypatch.setattr(mt.ops.nn.LayerNorm, "backward",
                        lambda self, gy: seen.append(gy) or backward(self, gy))
    _layer_norm_used(3, np.float64, True)
    assert isinstance(seen[0], GradTerms) and len(seen[0]) == 3


def test_grad_terms_add_up_in_order():
    a, b, c = (np.float32(v) for v in (1e8, -1e8, 1.0))
    assert GradTerms(a) == (a,) and GradTerms(GradTerms(a) + (b,)) == (a, b)
    assert GradTerms([a, b]) == (a, b) and type(GradTerms(a) + (b,)) is GradTerms
    assert (GradTerms(a) + (b, c)).total() == np.float32(1.0)     # (a + b) + c, not a + (b + c)
    assert grad_of_output(GradTerms((a, b)), object()) == 0.0
