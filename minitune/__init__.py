"""minitune: a from-scratch deep-learning framework in NumPy for fine-tuning BERT.

    import minitune as mt
    import minitune.functional as F
    trainer = mt.Trainer(mt.TrainArgs(train="train.tsv", dev="dev.tsv"))
"""
from .backend import cuda_available
from .autograd import Function, is_grad_enabled, no_grad, set_grad_enabled
from .tensor import Tensor, tensor
from . import functional
from .testing import GradcheckError, gradcheck
from .errors import CheckpointError, ConfigError, DataError, UnsafeCheckpointError
from .tokenizer import Tokenizer
from .cpu import register as _register_fused_cpu_ops

_register_fused_cpu_ops()

__version__ = "0.1.0"

__all__ = ["Tensor", "tensor", "Function", "no_grad", "set_grad_enabled", "is_grad_enabled",
           "functional", "gradcheck", "GradcheckError", "Tokenizer", "Trainer", "TrainArgs",
           "CheckpointError", "ConfigError", "DataError", "UnsafeCheckpointError",
           "cuda_available"]


def __getattr__(name):
    """``minitune.Trainer`` / ``minitune.TrainArgs``, imported on first use: the fine-tuning
    pipeline (and the checkpoint code it brings) is not loaded by ``import minitune``."""
    if name in ("Trainer", "TrainArgs"):
        from . import train
        return getattr(train, name)
    raise AttributeError(f"module 'minitune' has no attribute {name!r}")
