"""minitune.cpu.adam against the reference optim.adam.adam_update: bit for bit."""
import numpy as np
import pytest

from minitune.cpu import adam as fused
from minitune.optim.adam import adam_update
from cpu_helpers import DTYPES, pool_threads  # noqa: F401


def state(dtype, shapes, seed=0):
    rng = np.random.default_rng(seed)
    make = [lambda s: rng.standard_normal(s), lambda s: rng.standard_normal(s),
            lambda s: rng.standard_normal(s) * 0.1, lambda s: rng.random(s) * 0.01]
    return [[f(s).astype(dtype) for s in shapes] for f in make]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("decoupled, wd", [(True, 0.01), (False, 0.01), (True, 0.0)])
@pytest.mark.parametrize("one_op", [True, False])
def test_adam_step_is_the_reference_bit_for_bit(dtype, decoupled, wd, one_op, pool_threads,
                                                monkeypatch):
    """All pieces in one parallel op (the default) or one op per parameter (for comparisons)."""
    monkeypatch.setattr(fused, "ONE_OP", one_op)
    shapes = [(3,), (7, 5), (0,), (600_007,), (11,)]         # 600_007: cut into pieces
    a, b = state(dtype, shapes), state(dtype, shapes)
    steps = [1, 2, 3, 10, 4]                                 # one per parameter
    scratch = {}

    def work(w):
        buf = scratch.setdefault(w.dtype, np.empty(600_007, w.dtype))
        return buf[:w.size].reshape(w.shape)
    hyper = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd, decoupled=decoupled)
    for _ in range(3):
        fused.adam_step(*a, steps, work=work, **hyper)
        adam_update(*b, steps, work=work, **hyper)
    for got, want in zip(a, b):                              # w, g (untouched), m, v
        for x, y in zip(got, want):
            np.testing.assert_array_equal(x, y)


def test_non_contiguous_parameters_fall_back_to_the_reference():
    w = np.ones((4, 6), np.float32)[:, ::2]
    g, m, v = (np.full((4, 3), 0.5, np.float32) for _ in range(3))
    w_ref, m_ref, v_ref = w.copy(), m.copy(), v.copy()
    fused.adam_step([w], [g], [m], [v], [1], 0.1, (0.9, 0.999), 1e-8, 0.0, True,
                    work=lambda x: np.empty_like(x))
    adam_update([w_ref], [g], [m_ref], [v_ref], [1], 0.1, (0.9, 0.999), 1e-8, 0.0, True,
                work=lambda x: np.empty_like(x))
    np.testing.assert_array_equal(w, w_ref)
