"""Record optimizer trajectories from PyTorch into tests/fixtures/adamw_steps.npz.

Needs torch and transformers (not minitune's dependencies); run from the repo root with e.g.
    .refenv/bin/python tools/make_optim_fixture.py

The problem: a 2-layer MLP (6 -> 8 -> tanh -> 3, cross-entropy) on fixed random data. Data and
initial weights come from numpy's default_rng(0), so they do not depend on torch's RNG. Every step
uses its own mini-batch and a loss scale in [0.2, 3], so the gradient norm moves above and below
the clipping threshold and both branches of clipping get exercised.

Runs recorded (S = steps; every name in PARAM_NAMES):
    adamw64, adamw32  AdamW (float64 / float32), groups: fc*.weight decay 0.01, fc*.bias decay 0,
                      lr 1e-3, betas (0.9, 0.999), eps 1e-8, get_linear_schedule_with_warmup(5, 20),
                      clip_grad_norm_(max_norm=1.0); 20 steps
    adam64            Adam (L2 weight_decay 0.01), lr 1e-2, one group, no schedule or clipping;
                      10 steps
    sgd64             SGD(lr 0.1, momentum 0.9, weight_decay 0.01); 10 steps
    sgdnest64         the same with nesterov=True; 10 steps

Keys: "{run}/init/{name}" initial weights; "{run}/grad/{name}" (S, *shape) gradients handed to
the optimizer *before* clipping; "{run}/param/{name}" (S, *shape) weights after each step;
"{run}/lr" (S,) learning rate used by each step; "{run}/norm" (S,) total norm returned by
clip_grad_norm_ (AdamW runs); "{run}/exp_avg/{name}", "{run}/exp_avg_sq/{name}" moments after the
last step (Adam runs); "meta" a description string with the torch version.
"""
from pathlib import Path

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

PARAM_NAMES = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "adamw_steps.npz"


def make_problem(steps, batch=16):
    """Initial weights, per-step batches (x (S, B, 6), y (S, B)) and loss scales (S,)."""
    rng = np.random.default_rng(0)
    init = {
        "fc1.weight": rng.normal(0, 0.5, (8, 6)),
        "fc1.bias": rng.normal(0, 0.1, (8,)),
        "fc2.weight": rng.normal(0, 0.5, (3, 8)),
        "fc2.bias": rng.normal(0, 0.1, (3,)),
    }
    x = rng.normal(0, 1, (steps, batch, 6))
    y = rng.integers(0, 3, (steps, batch))
    scales = rng.uniform(0.2, 3.0, steps)
    return init, x, y, scales


def loss_fn(p, x, y, scale):
    h = torch.tanh(x @ p["fc1.weight"].T + p["fc1.bias"])
    logits = h @ p["fc2.weight"].T + p["fc2.bias"]
    return scale * torch.nn.functional.cross_entropy(logits, y)


def run(kind, dtype, steps, out):
    init, xs, ys, scales = make_problem(steps)
    p = {n: torch.tensor(init[n], dtype=dtype, requires_grad=True) for n in PARAM_NAMES}
    schedule, clip = None, False
    if kind == "adamw":
        groups = [{"params": [p["fc1.weight"], p["fc2.weight"]], "weight_decay": 0.01},
                  {"params": [p["fc1.bias"], p["fc2.bias"]], "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, foreach=False)
        schedule = get_linear_schedule_with_warmup(opt, num_warmup_steps=5, num_training_steps=20)
        clip = True
    elif kind == "adam":
        opt = torch.optim.Adam([p[n] for n in PARAM_NAMES], lr=1e-2, weight_decay=0.01,
                               foreach=False)
    elif kind in ("sgd", "sgdnest"):
        opt = torch.optim.SGD([p[n] for n in PARAM_NAMES], lr=0.1, momentum=0.9,
                              weight_decay=0.01, nesterov=(kind == "sgdnest"), foreach=False)
    else:
        raise ValueError(kind)

    rec = {"grad": {n: [] for n in PARAM_NAMES}, "param": {n: [] for n in PARAM_NAMES},
           "lr": [], "norm": []}
    for s in range(steps):
        x = torch.tensor(xs[s], dtype=dtype)
        y = torch.tensor(ys[s])
        opt.zero_grad(set_to_none=True)
        loss_fn(p, x, y, float(scales[s])).backward()
        for n in PARAM_NAMES:
            rec["grad"][n].append(p[n].grad.detach().numpy().copy())
        if clip:
            rec["norm"].append(float(torch.nn.utils.clip_grad_norm_(list(p.values()), 1.0)))
        rec["lr"].append(opt.param_groups[0]["lr"])
        opt.step()
        if schedule is not None:
            schedule.step()
        for n in PARAM_NAMES:
            rec["param"][n].append(p[n].detach().numpy().copy())

    run_name = f"{kind}{'64' if dtype == torch.float64 else '32'}"
    for n in PARAM_NAMES:
        out[f"{run_name}/init/{n}"] = init[n].astype(rec["grad"][n][0].dtype)
        out[f"{run_name}/grad/{n}"] = np.stack(rec["grad"][n])
        out[f"{run_name}/param/{n}"] = np.stack(rec["param"][n])
        if kind in ("adam", "adamw"):
            st = opt.state[p[n]]
            out[f"{run_name}/exp_avg/{n}"] = st["exp_avg"].numpy().copy()
            out[f"{run_name}/exp_avg_sq/{n}"] = st["exp_avg_sq"].numpy().copy()
    out[f"{run_name}/lr"] = np.array(rec["lr"])
    if clip:
        out[f"{run_name}/norm"] = np.array(rec["norm"])


def main():
    torch.set_num_threads(1)
    out = {}
    run("adamw", torch.float64, 20, out)
    run("adamw", torch.float32, 20, out)
    run("adam", torch.float64, 10, out)
    run("sgd", torch.float64, 10, out)
    run("sgdnest", torch.float64, 10, out)
    out["meta"] = np.array(f"made by tools/make_optim_fixture.py with torch {torch.__version__}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(out)} arrays)")


if __name__ == "__main__":
    main()
