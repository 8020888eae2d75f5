"""Testing helpers: numerical gradient checks, tolerant comparisons, and a kit to test ops.

    from minitune.testing import gradcheck, GradcheckError, assert_close, check_op, check_forward
    from minitune.testing import strategies as mst      # hypothesis strategies (needs hypothesis)
"""
from .compare import DEFAULT_TOLERANCES, assert_close
from .gradcheck import GradcheckError, gradcheck
from .opcheck import check_forward, check_op

__all__ = ["gradcheck", "GradcheckError", "assert_close", "DEFAULT_TOLERANCES", "check_op",
           "check_forward"]
