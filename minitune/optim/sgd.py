"""Stochastic gradient descent with momentum, with the semantics of torch.optim.SGD (dampening 0).

For a weight w with gradient g:

    d = g + wd * w                       L2 weight decay (skipped when wd == 0)
    buf = d                              first step: the buffer starts as a copy of d
    buf = momentum * buf + d             later steps
    d = d + momentum * buf  (nesterov)   or  d = buf  (classic momentum)
    w = w - lr * d

With momentum == 0 this is plain SGD, w = w - lr * (g + wd * w), and no state is kept.
"""
from .optimizer import Optimizer


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum and L2 weight decay.

    Args:
        params: parameters or group dicts (see Optimizer).
        lr: learning rate.
        momentum: momentum factor (0 = none).
        weight_decay: L2 coefficient wd.
        nesterov: use Nesterov momentum (needs momentum > 0).
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, weight_decay=0.0, nesterov=False):
        if not lr >= 0:
            raise ValueError(f"SGD: invalid learning rate {lr} (must be >= 0)")
        if not momentum >= 0:
            raise ValueError(f"SGD: invalid momentum {momentum} (must be >= 0)")
        if not weight_decay >= 0:
            raise ValueError(f"SGD: invalid weight_decay {weight_decay} (must be >= 0)")
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov momentum needs momentum > 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      nesterov=nesterov))

    def step(self):
        """One update of every parameter with a gradient; ``p.data`` is changed in place."""
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p, g, xp in self._params_with_grad(group):
                w = p.data
                d = self._work_buffer(w)
                if wd != 0:
                    xp.multiply(w, wd, out=d)            # d = g + wd * w
                    d += g
                else:
                    d[...] = g                           # copy: p.grad is never modified
                if mu != 0:
                    state = self.state.get(id(p))
                    if state is None:
                        state = {"momentum_buffer": d.copy()}     # buf = d on the first step
                        self.state[id(p)] = state
                    else:
                        buf = state["momentum_buffer"]
                        buf *= mu                                 # buf = mu * buf + d
                        buf += d
                    buf = state["momentum_buffer"]
                    if group["nesterov"]:
                        d += mu * buf                             # d = d + mu * buf
                    else:
                        d[...] = buf                              # d = buf
                d *= lr                                          # w = w - lr * d
                w -= d
