"""Adam and AdamW, with the exact arithmetic of torch.optim.Adam / AdamW (single-tensor path).

For one parameter w with gradient g, at step t = 1, 2, ... (moments m = v = 0 before step 1):

    m = b1 * m + (1 - b1) * g            first moment  (running mean of g)
    v = b2 * v + (1 - b2) * g * g        second moment (running mean of g^2)
    bias_c1 = 1 - b1**t                  m and v start at 0, so early on they are biased towards 0
    bias_c2 = 1 - b2**t                  by exactly these factors; dividing them out un-biases them
    step_size = lr / bias_c1
    denom = sqrt(v) / sqrt(bias_c2) + eps
    w = w - step_size * m / denom

Weight decay differs between the two:
    Adam  (L2):        g = g + wd * w                 before the moments (decay is rescaled by
                                                      1/sqrt(v) like any gradient)
    AdamW (decoupled): w = w * (1 - lr * wd)          before the update, independent of v
See docs/optim.md for the derivation.

Moments have the parameter's dtype and device (float32 weights -> float32 moments, like torch).
Everything is computed in place with ``out=`` / augmented ufuncs into one reused scratch buffer,
because a BERT step touches every one of ~22M weights and temporaries would double the traffic.
"""
import math

from .. import dispatch
from ..backend import get_array_module
from ..cuda import adam as cuda_adam
from ..cuda import graph
from .optimizer import Optimizer


class Adam(Optimizer):
    """Adam with L2 weight decay (the decay term is added to the gradient), as torch.optim.Adam.

    Args:
        params: parameters or group dicts (see Optimizer).
        lr: learning rate.
        betas: (b1, b2), decay rates of the first and second moment.
        eps: added to the denominator for numerical stability.
        weight_decay: L2 coefficient wd.
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        _check_hyper(type(self).__name__, lr, betas, eps, weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    def step(self):
        """One update of every parameter with a gradient; ``p.data`` is changed in place.

        The arithmetic is ``adam_update`` (below) or a fused implementation of it chosen by
        ``minitune.dispatch`` (all parameters of a group in one call). While a step is captured
        as a CUDA graph (``cuda.graph``) nothing moves on the host: the step counters advance,
        and the step size and decay are computed, before each replay instead."""
        for group in self.param_groups:
            params = list(self._params_with_grad(group))
            if not params:
                continue
            states = [self._state_of(p, xp) for p, _, xp in params]
            ws = [p.data for p, _, _ in params]
            impl = dispatch.implementation("adam", ADAM_REFERENCE, ws[0])
            extra = {}
            if graph.capturing():
                extra["hyper"] = self._captured_hyper(impl, group, states)
            else:
                for state in states:
                    state["step"] += 1
            impl.step(ws, [g for _, g, _ in params], [s["exp_avg"] for s in states],
                      [s["exp_avg_sq"] for s in states], [s["step"] for s in states],
                      lr=group["lr"], betas=group["betas"], eps=group["eps"],
                      weight_decay=group["weight_decay"], decoupled=self.decoupled_weight_decay,
                      work=self._work_buffer, **extra)

    def _state_of(self, p, xp):
        """The moments and step counter of ``p``, created (zeros, step 0) on first use."""
        state = self.state.get(id(p))
        if state is None:
            if graph.capturing():          # zeros made while capturing would be re-zeroed
                raise graph.CaptureError("Adam's state must exist before a step is captured")
            state = {"step": 0, "exp_avg": xp.zeros_like(p.data),
                     "exp_avg_sq": xp.zeros_like(p.data)}
            self.state[id(p)] = state
        return state

    def _captured_hyper(self, impl, group, states):
        """The device slot (step size, sqrt(1 - b2^t), 1 - lr wd) a captured update reads;
        before each replay the group's counters advance and the values follow its lr."""
        if impl.step is not cuda_adam.step:      # the reference, or fused CPU code
            raise graph.CaptureError("a captured Adam update needs the adam kernel (fused ops "
                                     "are switched off, or the weights are not on the GPU)")
        if len({s["step"] for s in states}) != 1:
            raise graph.CaptureError("a captured Adam update needs a group's parameters at one "
                                     "step")
        b1, b2 = group["betas"]

        def advance():
            for state in states:
                state["step"] += 1

        def values():
            t, lr = states[0]["step"], group["lr"]
            return [lr / (1 - b1 ** t), math.sqrt(1 - b2 ** t), 1 - lr * group["weight_decay"]]

        return graph.device_scalars(3, values, before=advance)


def adam_update(ws, gs, ms, vs, ts, lr, betas, eps, weight_decay, decoupled, work):
    """The reference Adam/AdamW update, in place, of parameters ``ws`` (any shapes).

    Args:
        ws, gs, ms, vs: lists of arrays: weights, their gradients, first and second moments.
        ts: the step number t (1, 2, ...) of each parameter, already counting this step.
        lr, betas, eps, weight_decay: the group's hyper-parameters.
        decoupled: AdamW's decay (w *= 1 - lr * wd) when True, Adam's L2 (g += wd * w) else.
        work: ``work(w)`` returns a scratch array shaped like w (reused; never kept).
    """
    b1, b2 = betas
    wd = weight_decay
    for w, g, m, v, t in zip(ws, gs, ms, vs, ts):
        xp = get_array_module(w)
        if wd != 0:
            if decoupled:
                w *= 1 - lr * wd                  # w = w * (1 - lr * wd)
            else:
                g = g + wd * w                    # g = g + wd * w (new array: p.grad kept)

        tmp = work(w)
        # m = b1*m + (1-b1)*g, written as m += (1-b1) * (g - m) (torch's lerp)
        xp.subtract(g, m, out=tmp)
        tmp *= 1 - b1
        m += tmp
        # v = b2*v + (1-b2) * g*g
        v *= b2
        xp.multiply(g, g, out=tmp)
        tmp *= 1 - b2
        v += tmp

        bias_c1 = 1 - b1 ** t
        bias_c2 = 1 - b2 ** t
        step_size = lr / bias_c1
        # denom = sqrt(v) / sqrt(bias_c2) + eps
        xp.sqrt(v, out=tmp)
        tmp /= math.sqrt(bias_c2)
        tmp += eps
        # w = w - step_size * m / denom
        xp.divide(m, tmp, out=tmp)
        tmp *= step_size
        w -= tmp


ADAM_REFERENCE = dispatch.Implementation("adam", step=adam_update)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW.

    Same arguments as Adam; ``weight_decay`` defaults to 0.01 like torch. Each step first
    shrinks the weights, ``w = w * (1 - lr * wd)``, then applies the plain Adam update.
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def _check_hyper(name, lr, betas, eps, weight_decay):
    """Raise ValueError for hyperparameters outside their valid range."""
    if not lr >= 0:
        raise ValueError(f"{name}: invalid learning rate {lr} (must be >= 0)")
    if not eps >= 0:
        raise ValueError(f"{name}: invalid eps {eps} (must be >= 0)")
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"{name}: invalid betas {betas} (need two values in [0, 1))")
    if not weight_decay >= 0:
        raise ValueError(f"{name}: invalid weight_decay {weight_decay} (must be >= 0)")
