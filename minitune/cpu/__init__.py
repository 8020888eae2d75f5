"""Fused, multi-threaded CPU implementations of minitune's fused ops (numpy arrays).

``FUSED`` maps an op's name to its ``dispatch.Implementation``; ``minitune.dispatch`` looks ops
up here for numpy inputs. Each entry computes exactly what the op's reference in
``minitune/ops/`` computes (tests/cpu compares them), only faster. An op missing from the
table runs on its reference.
"""
FUSED = {}
