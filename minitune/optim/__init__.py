"""Optimizers, learning-rate schedules and gradient clipping (see docs/optim.md).

All of them work on raw arrays: ``p.data`` is updated in place from ``p.grad``.
"""
from .adam import Adam, AdamW
from .clip import clip_grad_norm
from .groups import param_groups_with_weight_decay
from .optimizer import Optimizer
from .schedule import (LambdaSchedule, LinearWarmupSchedule, linear_schedule_with_warmup,
                       warmup_steps_from_ratio)
from .sgd import SGD

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW",
    "LambdaSchedule", "LinearWarmupSchedule", "linear_schedule_with_warmup",
    "warmup_steps_from_ratio", "clip_grad_norm", "param_groups_with_weight_decay",
]
