"""minitune.cpu.cross_entropy against the reference ops.loss.cross_entropy_forward/_backward."""
import numpy as np
import pytest

from minitune.cpu import cross_entropy as fused
from minitune.ops import loss as ref
from cpu_helpers import DTYPES, assert_same, pool_threads  # noqa: F401


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 2), (5, 3), (3, 301, 9), (7, 1000)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_reference(dtype, shape, reduction, pool_threads):
    rng = np.random.default_rng(sum(shape))
    logits = (rng.standard_normal(shape) * 5).astype(dtype)
    target = rng.integers(0, shape[-1], size=shape[:-1])
    target.reshape(-1)[::3] = -100                              # some rows ignored
    loss, saved = fused.cross_entropy_forward(logits, target, -100, reduction)
    loss_ref, saved_ref = ref.cross_entropy_forward(logits, target, -100, reduction)
    assert_same(loss, loss_ref, dtype, scale=10)
    gy = (rng.standard_normal(shape[:-1]) if reduction == "none" else np.array(1.5)).astype(dtype)
    assert_same(fused.cross_entropy_backward(gy, saved),
                ref.cross_entropy_backward(gy, saved_ref), dtype)


def test_every_target_ignored_gives_zero_loss_and_grad():
    z = np.ones((3, 4), np.float32)
    loss, saved = fused.cross_entropy_forward(z, np.full(3, -100), -100, "mean")
    assert loss == 0.0
    assert not fused.cross_entropy_backward(np.float32(1.0), saved).any()


def test_bad_targets_are_named():
    with pytest.raises(ValueError, match=r"\[0, 4\).*\[7\]"):
        fused.cross_entropy_forward(np.ones((2, 4), np.float32), np.array([1, 7]), -100, "mean")
