"""minitune.cpu.grad_sum: the autograd engine's sum of two gradients, on the pool, against
its reference a + b; and the engine using it."""
import numpy as np
import pytest

import minitune as mt
from minitune import cpu, dispatch
from minitune.cpu import grad_sum

from ..cpu_helpers import DTYPES, pool_threads  # noqa: F401  (a fixture)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(65_537,), (3, 129, 385), (32, 128, 384)])
def test_the_sum_is_the_references_to_the_bit(shape, dtype, pool_threads):  # noqa: F811
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    impl = dispatch.implementation("grad_sum", dispatch.GRAD_SUM, a, b)
    assert impl is cpu.FUSED["grad_sum"]
    out = impl.forward(a, b)
    assert out.dtype == dtype and out.shape == shape
    assert out is not a and out is not b
    np.testing.assert_array_equal(out, a + b)


@pytest.mark.parametrize("case", ["small", "strided", "dtypes", "shapes", "ints"])
def test_what_it_does_not_take_runs_on_the_reference(case):
    n = grad_sum._MIN_SIZE
    a = np.ones((2, n), np.float32)
    b = {"small": None, "strided": np.ones((n, 2), np.float32).T, "dtypes": a.astype(np.float64),
         "shapes": np.ones((1, n), np.float32), "ints": None}[case]
    if case == "small":
        a = b = np.ones(n - 1, np.float32)
    if case == "ints":
        a = b = np.ones(2 * n, np.int64)
    assert not grad_sum.supports(a, b)
    assert dispatch.implementation("grad_sum", dispatch.GRAD_SUM, a, b) is dispatch.GRAD_SUM
    np.testing.assert_array_equal(dispatch.grad_sum(a, b), a + b)


def test_the_engine_adds_a_tensors_two_gradients_with_it(monkeypatch):
    calls = []
    impl = cpu.FUSED["grad_sum"]
    original = impl.forward
    monkeypatch.setattr(impl, "forward", lambda a, b: calls.append(a.shape) or original(a, b))
    rng = np.random.default_rng(2)
    x = mt.tensor(rng.standard_normal((64, 1024)).astype(np.float32), requires_grad=True)
    h = x * 1.5                                   # h feeds two ops: its gradients are summed
    ((h * 2.0).sum() + (h * 3.0).sum()).backward()
    assert calls == [(64, 1024)]
    np.testing.assert_array_equal(x.grad, np.full(x.shape, 1.5 * 5.0, np.float32))
