"""Optimizers, learning-rate schedules and gradient clipping (see docs/optim.md).

All of them work on raw arrays: ``p.data`` is updated in place from ``p.grad``.
"""
from minitune.optim.adam import Adam, AdamW
from minitune.optim.clip import clip_grad_norm
from minitune.optim.optimizer import Optimizer, param_groups_with_weight_decay
from minitune.optim.schedule import (LambdaSchedule, LinearWarmupSchedule,
                                     linear_schedule_with_warmup, warmup_steps_from_ratio)
from minitune.optim.sgd import SGD

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW",
    "LambdaSchedule", "LinearWarmupSchedule", "linear_schedule_with_warmup",
    "warmup_steps_from_ratio", "clip_grad_norm", "param_groups_with_weight_decay",
]
