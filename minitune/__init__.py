"""minitune: a from-scratch deep-learning framework in NumPy for fine-tuning BERT.

    import minitune as mt
    import minitune.functional as F
"""
from .autograd import Function, is_grad_enabled, no_grad, set_grad_enabled
from .tensor import Tensor, tensor
from . import functional
from .testing import GradcheckError, gradcheck
from .io.errors import CheckpointError, ConfigError, UnsafeCheckpointError
from .tokenizer import Tokenizer

__version__ = "0.1.0"

__all__ = ["Tensor", "tensor", "Function", "no_grad", "set_grad_enabled", "is_grad_enabled",
           "functional", "gradcheck", "GradcheckError", "Tokenizer",
           "CheckpointError", "ConfigError", "UnsafeCheckpointError"]
