"""The learning-rate schedules: linear warm-up and decay against the Hugging Face formula and
PyTorch's recorded sequence, LambdaSchedule, state_dict.
"""
import numpy as np
import pytest

from minitune.nn import Parameter
from minitune.optim import (SGD, AdamW, LambdaSchedule, linear_schedule_with_warmup,
                            warmup_steps_from_ratio)
from paths import FIXTURES


def hf_factor(step, warm, total):
    if step < warm:
        return step / max(1, warm)
    return max(0.0, (total - step) / max(1, total - warm))


@pytest.mark.parametrize("warm, total", [(5, 20), (0, 7), (3, 3), (10, 4), (1, 1)])
def test_linear_schedule(warm, total):
    opt = SGD([{"params": [Parameter(np.zeros(1))], "lr": 2.0},
               {"params": [Parameter(np.zeros(1))], "lr": 0.5}], lr=1.0)
    sched = linear_schedule_with_warmup(opt, warm, total)
    lrs = [sched.get_last_lr()]
    for _ in range(total + 10):
        sched.step()
        lrs.append(sched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == lrs[-1]
    lrs = np.array(lrs)
    expected = np.array([[2.0 * hf_factor(s, warm, total), 0.5 * hf_factor(s, warm, total)]
                         for s in range(total + 11)])
    np.testing.assert_allclose(lrs, expected, rtol=1e-15, atol=0)
    assert (lrs >= 0).all()
    if warm <= total:
        assert (lrs[total:] == 0).all(), "lr is 0 from the last step on"
    else:   # transformers' formula: warm-up longer than training never decays (caller's mistake)
        assert (lrs[warm:] == 0).all() and (lrs[total] > 0).all()
    if warm > 0:
        assert (lrs[0] == 0).all(), "warm-up starts from 0 at construction"


def test_schedule_matches_torch_lr_sequence():
    recorded = np.load(FIXTURES / "adamw_steps.npz")["adamw64/lr"]   # tools/make_optim_fixture.py
    opt = AdamW([Parameter(np.zeros(1))], lr=1e-3)
    sched = linear_schedule_with_warmup(opt, 5, 20)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        sched.step()
    np.testing.assert_allclose(seen, recorded, rtol=1e-15, atol=0)


def test_lambda_schedule_and_state_dict():
    opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    sched = LambdaSchedule(opt, lambda s: 0.5 ** s)
    for _ in range(3):
        sched.step()
    assert sched.get_last_lr() == [0.125]
    saved = sched.state_dict()
    opt2 = SGD([Parameter(np.zeros(1))], lr=1.0)
    sched2 = LambdaSchedule(opt2, lambda s: 0.5 ** s)
    sched2.load_state_dict(saved)
    sched.step()
    sched2.step()
    assert sched2.get_last_lr() == sched.get_last_lr() == [0.0625]
    assert opt2.param_groups[0]["lr"] == 0.0625


def test_warmup_steps_from_ratio():
    assert warmup_steps_from_ratio(0.1, 500) == 50
    assert warmup_steps_from_ratio(0.1, 1317) == 132
    assert warmup_steps_from_ratio(0.0, 1317) == 0
    assert warmup_steps_from_ratio(0.5, 5) == 2      # Python's round: halves to even
    with pytest.raises(ValueError):
        warmup_steps_from_ratio(1.5, 10)
