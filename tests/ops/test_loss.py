"""Cross-entropy against a closed-form NumPy reference: reductions, ignored targets, the
softmax-minus-one-hot gradient, bad targets.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitune.functional as F
from minitune.testing import assert_close
from op_helpers import (check_forward, check_grad, leaf, np_log_softmax, np_softmax, seeds, shapes,
                        values)


@st.composite
def ce_case(draw):
    lead = draw(shapes(min_dims=0, max_dims=2))
    k = draw(st.integers(1, 5))
    return lead, k


@given(case=ce_case(), reduction=st.sampled_from(["mean", "sum", "none"]),
       ignore_frac=st.sampled_from([0.0, 0.3, 1.0]), ignore_index=st.sampled_from([-100, -1]),
       seed=seeds)
def test_cross_entropy(case, reduction, ignore_frac, ignore_index, seed):
    lead, k = case
    rng = np.random.default_rng(seed)
    z = values(seed, lead + (k,), -3.0, 3.0)
    target = rng.integers(0, k, size=lead)
    target = np.where(rng.random(lead) < ignore_frac, ignore_index, target)
    valid = target != ignore_index
    tz = leaf(z)

    # reference: -log_softmax at the target, ignored positions contribute nothing
    nll = -np.take_along_axis(np_log_softmax(z, -1), np.where(valid, target, 0)[..., None],
                              -1)[..., 0] * valid
    expected = {"none": nll, "sum": nll.sum(), "mean": nll.sum() / max(valid.sum(), 1)}
    loss = F.cross_entropy(tz, target, ignore_index=ignore_index, reduction=reduction)
    check_forward(loss, expected[reduction])
    check_grad(lambda x: F.cross_entropy(x, target, ignore_index=ignore_index,
                                         reduction=reduction), tz)
    # cross_entropy equals -log_softmax picked at the target
    if valid.any():
        per = F.cross_entropy(tz, target, ignore_index=ignore_index, reduction="none").data
        picked = -np.take_along_axis(F.log_softmax(tz).data, np.where(valid, target, 0)[..., None],
                                     -1)[..., 0]
        assert_close(per[valid], picked[valid], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_all_ignored_gives_zero_loss_and_zero_grad(reduction):
    z = leaf(values(0, (2, 3, 4)))
    loss = F.cross_entropy(z, np.full((2, 3), -100), reduction=reduction)
    assert np.isfinite(loss.data).all() and (loss.data == 0).all()
    loss.sum().backward()
    assert np.isfinite(z.grad).all() and (z.grad == 0).all()


def test_cross_entropy_gradient_is_softmax_minus_onehot():
    z = values(3, (4, 5))
    t = np.array([0, 4, 2, 2])
    tz = leaf(z)
    F.cross_entropy(tz, t).backward()
    assert_close(tz.grad, (np_softmax(z, -1) - np.eye(5)[t]) / 4, rtol=1e-13, atol=1e-15)


def test_cross_entropy_rejects_bad_targets():
    z = leaf(values(0, (3, 4)))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        F.cross_entropy(z, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="integers"):
        F.cross_entropy(z, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(z, np.array([0, 1, 1]), reduction="max")
