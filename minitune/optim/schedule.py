"""Learning-rate schedules: a factor of each group's base learning rate, as a function of step.

Usage mirrors torch's LambdaLR with transformers.get_linear_schedule_with_warmup:

    opt = AdamW(groups, lr=5e-5)
    sched = linear_schedule_with_warmup(opt, num_warmup_steps=50, num_training_steps=500)
    for batch in batches:        # construction already set lr = base_lr * factor(0)
        ...backward...
        opt.step()               # uses lr = base_lr * factor(k) on the k-th update (k = 0, 1, ...)
        sched.step()             # k -> k + 1, sets every group's lr
        opt.zero_grad()
"""


class LambdaSchedule:
    """Set ``group["lr"] = base_lr * lr_lambda(step)`` for every parameter group.

    At construction the groups' current ``lr`` values become the base learning rates and
    ``lr_lambda(0)`` is applied at once (as torch's LambdaLR does), so the first optimizer step
    already uses the scheduled rate.

    Args:
        optimizer: an Optimizer (anything with ``param_groups``, each with an "lr").
        lr_lambda: function int step -> float factor.
    """

    def __init__(self, optimizer, lr_lambda):
        self.optimizer = optimizer
        self.lr_lambda = lr_lambda
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def step(self):
        """Advance one step and set each group's lr for the next optimizer update."""
        self.last_step += 1
        self._apply()

    def get_last_lr(self):
        """The learning rates (one per group) set by the latest ``step()`` or by construction."""
        return list(self._last_lr)

    def _apply(self):
        factor = self.lr_lambda(self.last_step)
        self._last_lr = [base_lr * factor for base_lr in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def state_dict(self):
        """``{"base_lrs", "last_step", "last_lr"}``; the lambda itself is code, not state."""
        return {"base_lrs": list(self.base_lrs), "last_step": self.last_step,
                "last_lr": list(self._last_lr)}

    def load_state_dict(self, state_dict):
        """Restore the step counter and base rates. Does not touch the optimizer's lr, which
        ``Optimizer.load_state_dict`` restores (load both, in either order)."""
        if len(state_dict["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(f"schedule load_state_dict: {len(state_dict['base_lrs'])} base lrs "
                             f"saved, optimizer has {len(self.optimizer.param_groups)} groups")
        self.base_lrs = [float(x) for x in state_dict["base_lrs"]]
        self.last_step = int(state_dict["last_step"])
        self._last_lr = [float(x) for x in state_dict["last_lr"]]


class LinearWarmupSchedule(LambdaSchedule):
    """Linear warm-up from 0 to the base lr, then linear decay to 0 at ``num_training_steps``.

    The factor is exactly transformers.get_linear_schedule_with_warmup's:

        factor(s) = s / max(1, W)                          for s < W
                  = max(0, (N - s) / max(1, N - W))        otherwise

    with W = num_warmup_steps, N = num_training_steps. It reaches 0 at s = N and stays 0 after,
    never negative. (As in transformers, W > N is not an error: the lr then rises until s = W
    and drops to 0 there; a trainer should reject that configuration.)
    """

    def __init__(self, optimizer, num_warmup_steps, num_training_steps):
        if num_warmup_steps < 0 or num_training_steps < 0:
            raise ValueError(f"linear schedule: steps must be >= 0, got warmup={num_warmup_steps}, "
                             f"total={num_training_steps}")
        self.num_warmup_steps = int(num_warmup_steps)
        self.num_training_steps = int(num_training_steps)
        super().__init__(optimizer, self.factor)

    def factor(self, step):
        """Multiplier of the base lr at ``step`` (0-based count of completed updates)."""
        warm, total = self.num_warmup_steps, self.num_training_steps
        if step < warm:
            return float(step) / float(max(1, warm))
        return max(0.0, float(total - step) / float(max(1, total - warm)))


def linear_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps):
    """A LinearWarmupSchedule: the factor of transformers.get_linear_schedule_with_warmup."""
    return LinearWarmupSchedule(optimizer, num_warmup_steps, num_training_steps)


def warmup_steps_from_ratio(ratio, total_steps):
    """Warm-up length for a warm-up fraction: ``int(round(ratio * total_steps))``.

    Python rounds halves to even (round(2.5) == 2), matching the reference scripts.
    """
    if not 0 <= ratio <= 1:     # also rejects NaN
        raise ValueError(f"warmup ratio must be in [0, 1], got {ratio}")
    return int(round(ratio * total_steps))
