"""Testing helpers: numerical gradient checks and tolerant comparisons.

    from minitune.testing import gradcheck, GradcheckError, assert_close
"""
from .compare import DEFAULT_TOLERANCES, assert_close
from .gradcheck import GradcheckError, gradcheck

__all__ = ["gradcheck", "GradcheckError", "assert_close", "DEFAULT_TOLERANCES"]
