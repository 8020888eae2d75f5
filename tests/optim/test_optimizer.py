"""Tests of minitune.optim: trajectories replayed against PyTorch, plus unit tests.

tests/fixtures/adamw_steps.npz was recorded by tools/make_optim_fixture.py with torch (see its
docstring for the problem and keys). Replaying the recorded gradients through minitune must give
the same learning rates, clipping norms and weights step by step; torch is not needed here.
"""
import json

import numpy as np
import pytest

import minitune as mt
from minitune.optim import (SGD, Adam, AdamW, Optimizer, clip_grad_norm,
                            linear_schedule_with_warmup, param_groups_with_weight_decay)
from paths import FIXTURES

FIXTURE = FIXTURES / "adamw_steps.npz"
PARAM_NAMES = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


class Param:
    """Stand-in for minitune.nn.Parameter: the optimizers only use .data and .grad."""

    def __init__(self, data):
        self.data = np.array(data)
        self.grad = None


@pytest.fixture(scope="module")
def fx():
    return dict(np.load(FIXTURE))


def make_params(fx, run):
    return {n: Param(fx[f"{run}/init/{n}"].copy()) for n in PARAM_NAMES}


def set_grads(params, fx, run, step):
    for n, p in params.items():
        p.grad = fx[f"{run}/grad/{n}"][step].copy()


# ---- replay of PyTorch trajectories ---------------------------------------------------------

@pytest.mark.parametrize("run, atol", [("adamw64", 1e-12), ("adamw32", 1e-6)])
def test_adamw_schedule_clip_match_torch(fx, run, atol):
    params = make_params(fx, run)
    groups = param_groups_with_weight_decay(params.items(), weight_decay=0.01)
    assert [len(g["params"]) for g in groups] == [2, 2]
    opt = AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    sched = linear_schedule_with_warmup(opt, num_warmup_steps=5, num_training_steps=20)
    norms = fx[f"{run}/norm"]
    assert (norms > 1).any() and (norms < 1).any(), "fixture should exercise both clip branches"
    dtype = fx[f"{run}/init/fc1.weight"].dtype
    norm_rtol = 1e-12 if dtype == np.float64 else 1e-6

    for step in range(len(norms)):
        set_grads(params, fx, run, step)
        norm = clip_grad_norm(params.values(), max_norm=1.0)
        assert norm == pytest.approx(norms[step], rel=norm_rtol), f"norm at step {step}"
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(
            [fx[f"{run}/lr"][step]] * 2, rel=1e-15, abs=0), f"lr at step {step}"
        opt.step()
        sched.step()
        for n, p in params.items():
            assert p.data.dtype == dtype
            np.testing.assert_allclose(p.data, fx[f"{run}/param/{n}"][step], rtol=0, atol=atol,
                                       err_msg=f"{run}: {n} after step {step}")
    for n, p in params.items():
        state = opt.state[id(p)]
        assert state["step"] == len(norms)
        assert state["exp_avg"].dtype == dtype and state["exp_avg_sq"].dtype == dtype
        np.testing.assert_allclose(state["exp_avg"], fx[f"{run}/exp_avg/{n}"], rtol=1e-5,
                                   atol=atol, err_msg=f"exp_avg of {n}")
        np.testing.assert_allclose(state["exp_avg_sq"], fx[f"{run}/exp_avg_sq/{n}"], rtol=1e-5,
                                   atol=atol, err_msg=f"exp_avg_sq of {n}")


@pytest.mark.parametrize("run, make", [
    ("adam64", lambda ps: Adam(ps, lr=1e-2, weight_decay=0.01)),
    ("sgd64", lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("sgdnest64", lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)),
])
def test_adam_and_sgd_match_torch(fx, run, make):
    params = make_params(fx, run)
    opt = make([params[n] for n in PARAM_NAMES])
    steps = fx[f"{run}/lr"].shape[0]
    for step in range(steps):
        set_grads(params, fx, run, step)
        opt.step()
        for n, p in params.items():
            np.testing.assert_allclose(p.data, fx[f"{run}/param/{n}"][step], rtol=0, atol=1e-12,
                                       err_msg=f"{run}: {n} after step {step}")


# ---- Adam / AdamW unit tests ----------------------------------------------------------------

def test_bias_correction_first_step():
    # After step 1: m = (1-b1) g, v = (1-b2) g^2; un-biased they are g and g^2, so the update is
    # lr * g / (|g| + eps): about lr * sign(g), whatever the scale of g.
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(5, 3))
    g = rng.normal(size=(5, 3)) * 10.0 ** rng.integers(-4, 4, size=(5, 3))
    p = Param(w0.copy())
    p.grad = g.copy()
    lr, eps = 0.01, 1e-8
    Adam([p], lr=lr, betas=(0.9, 0.999), eps=eps).step()
    np.testing.assert_allclose(p.data, w0 - lr * g / (np.abs(g) + eps), rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(p.grad, g)        # the optimizer never changes p.grad


def test_adamw_decay_is_decoupled_and_adam_decay_is_l2():
    w0 = np.array([1.0, -2.0, 4.0])
    lr, wd = 0.1, 0.5
    # zero gradient: AdamW just shrinks the weights, w * (1 - lr*wd); the Adam part adds 0.
    p = Param(w0.copy())
    p.grad = np.zeros(3)
    AdamW([p], lr=lr, weight_decay=wd).step()
    np.testing.assert_allclose(p.data, w0 * (1 - lr * wd), rtol=1e-15)
    # Adam's L2 term goes through the moments: effective grad wd*w, so w moves by ~lr*sign(w).
    q = Param(w0.copy())
    q.grad = np.zeros(3)
    Adam([q], lr=lr, weight_decay=wd).step()
    np.testing.assert_allclose(q.data, w0 - lr * np.sign(w0), rtol=1e-7)


def test_updates_in_place_and_keep_float32():
    rng = np.random.default_rng(2)
    for make in (lambda ps: AdamW(ps, lr=1e-2), lambda ps: Adam(ps, lr=1e-2, weight_decay=0.1),
                 lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True)):
        ps = [Param(rng.normal(size=s).astype(np.float32)) for s in [(7, 3), (3,), (2, 2, 2)]]
        before = [p.data for p in ps]
        copies = [p.data.copy() for p in ps]
        opt = make(ps)
        for _ in range(3):
            for p in ps:
                p.grad = rng.normal(size=p.data.shape).astype(np.float32)
            opt.step()
        for p, ref, old in zip(ps, before, copies):
            assert p.data is ref, "parameters must be updated in place"
            assert p.data.dtype == np.float32
            assert not np.array_equal(p.data, old)
        for state in opt.state.values():
            for v in state.values():
                if isinstance(v, np.ndarray):
                    assert v.dtype == np.float32


def test_params_without_grad_are_skipped():
    a, b = Param(np.ones(3)), Param(np.ones(2))
    a.grad = np.full(3, 0.5)
    opt = AdamW([a, b], lr=0.1)
    opt.step()
    np.testing.assert_array_equal(b.data, np.ones(2))
    assert id(b) not in opt.state and opt.state[id(a)]["step"] == 1


def test_zero_grad():
    a, b = Param(np.ones(3)), Param(np.ones(2))
    a.grad, b.grad = np.full(3, 2.0), None
    opt = SGD([a, b], lr=0.1)
    g = a.grad
    opt.zero_grad(set_to_none=False)
    assert a.grad is g and not a.grad.any() and b.grad is None
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_group_handling_and_errors():
    a, b, c = Param(np.ones(2)), Param(np.ones(2)), Param(np.ones(2))
    opt = AdamW([{"params": [a, b], "lr": 0.5}, {"params": [c], "weight_decay": 0.0}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["weight_decay"] == 0.01
    assert opt.param_groups[1]["lr"] == 0.1 and opt.param_groups[1]["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="already belongs"):
        AdamW([{"params": [a]}, {"params": [a]}])
    with pytest.raises(ValueError, match="empty parameter list"):
        AdamW([])
    with pytest.raises(ValueError, match="betas"):
        AdamW([a], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="learning rate"):
        SGD([a], lr=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        SGD([a], lr=0.1, nesterov=True)
    a.grad = np.ones(3)
    with pytest.raises(ValueError, match=r"grad shape \(3,\) does not match parameter shape"):
        AdamW([a]).step()


# ---- state_dict: exact resume ---------------------------------------------------------------

def _train(make_opt, params, grads, steps, opt=None, sched=None):
    if opt is None:
        opt = make_opt(params)
        sched = linear_schedule_with_warmup(opt, 3, 20)
    for g in grads[:steps]:
        for p, gi in zip(params, g):
            p.grad = gi.copy()
        clip_grad_norm(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
    return opt, sched


@pytest.mark.parametrize("make_opt", [
    lambda ps: AdamW(param_groups_with_weight_decay(
        zip(["w.weight", "w.bias", "v.weight"], ps), 0.05), lr=0.05),
    lambda ps: SGD([{"params": ps[:1]}, {"params": ps[1:], "momentum": 0.5}], lr=0.1,
                   momentum=0.9, nesterov=True, weight_decay=0.01),
])
def test_state_dict_round_trip_resumes_exactly(make_opt):
    rng = np.random.default_rng(3)
    shapes = [(4, 3), (3,), (2, 5)]
    init = [rng.normal(size=s).astype(np.float32) for s in shapes]
    grads = [[rng.normal(size=s).astype(np.float32) for s in shapes] for _ in range(20)]

    straight = [Param(w.copy()) for w in init]
    _train(make_opt, straight, grads, 20)

    first = [Param(w.copy()) for w in init]
    opt, sched = _train(make_opt, first, grads, 10)
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    weights = [p.data.copy() for p in first]
    for p in first:                       # later steps must not leak into the snapshot
        p.grad = np.ones_like(p.data)
    opt.step()

    resumed = [Param(w) for w in weights]
    opt2 = make_opt(resumed)
    sched2 = linear_schedule_with_warmup(opt2, 3, 20)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    assert [g["lr"] for g in opt2.param_groups] == sched.get_last_lr()
    _train(make_opt, resumed, grads[10:], 10, opt2, sched2)
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_state_arrays_split_for_safetensors_and_json_and_come_back():
    a, b = Param(np.ones((2, 3), np.float32)), Param(np.ones(3, np.float32))
    opt = AdamW([{"params": [a]}, {"params": [b], "weight_decay": 0.0}], lr=0.1)
    a.grad, b.grad = np.full((2, 3), 0.5, np.float32), np.ones(3, np.float32)
    opt.step()
    arrays, rest = opt.state_arrays()
    assert sorted(arrays) == ["state.0.exp_avg", "state.0.exp_avg_sq", "state.1.exp_avg",
                              "state.1.exp_avg_sq"]
    rest = json.loads(json.dumps(rest))                  # the rest is plain JSON
    fresh = AdamW([{"params": [Param(np.ones((2, 3), np.float32))]},
                   {"params": [Param(np.ones(3, np.float32))], "weight_decay": 0.0}], lr=0.1)
    fresh.load_state_arrays(arrays, rest)
    for (i, want), got in zip(opt.state_dict()["state"].items(),
                              fresh.state_dict()["state"].values()):
        assert got["step"] == want["step"] == 1
        np.testing.assert_array_equal(got["exp_avg"], want["exp_avg"])


def test_state_dict_layout_and_errors():
    a, b = Param(np.ones((2, 3), np.float32)), Param(np.ones(3, np.float32))
    opt = AdamW([{"params": [a]}, {"params": [b], "weight_decay": 0.0}], lr=0.1)
    a.grad, b.grad = np.ones((2, 3), np.float32), np.ones(3, np.float32)
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][1]["weight_decay"] == 0.0
    assert sd["state"][0]["step"] == 1 and sd["state"][1]["exp_avg"].shape == (3,)
    assert sd["state"][0]["exp_avg"] is not opt.state[id(a)]["exp_avg"]

    with pytest.raises(ValueError, match="2 parameter groups"):
        AdamW([Param(np.ones((2, 3)))]).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"shape \(2, 3\), parameter has \(3, 2\)"):
        AdamW([{"params": [Param(np.ones((3, 2)))]},
               {"params": [Param(np.ones(3))]}]).load_state_dict(sd)


def test_optimizer_is_an_abstract_base():
    with pytest.raises(NotImplementedError):
        Optimizer([Param(np.ones(1))], {"lr": 0.1}).step()


def test_trains_engine_tensors():
    # End to end with minitune's own Tensors: autograd fills .grad, AdamW updates .data in place.
    rng = np.random.default_rng(8)
    x = mt.tensor(rng.normal(size=(32, 4)))
    true_w = rng.normal(size=(4, 1))
    y = mt.tensor(x.data @ true_w)
    w = mt.tensor(np.zeros((4, 1)), requires_grad=True)
    b = mt.tensor(np.zeros(1), requires_grad=True)
    opt = AdamW(param_groups_with_weight_decay([("w.weight", w), ("w.bias", b)], 0.0), lr=0.1)
    data_ref = w.data
    losses = []
    for _ in range(200):
        loss = (((x @ w + b) - y) ** 2).mean()
        loss.backward()
        losses.append(loss.item())
        clip_grad_norm([w, b], 10.0)
        opt.step()
        opt.zero_grad()
        assert w.grad is None
    assert w.data is data_ref
    assert losses[-1] < 1e-3 * losses[0]
    np.testing.assert_allclose(w.data, true_w, atol=0.05)
