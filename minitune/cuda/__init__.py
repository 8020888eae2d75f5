"""Launchers of minitune's CUDA kernels (kernels/*.cu) for cupy arrays.

``KERNELS`` maps an op's name to its ``dispatch.Implementation``; ``minitune.dispatch`` looks
ops up here for cupy inputs. Importing this package must not import cupy (machines without a
GPU import it too): launchers get cupy from ``minitune.backend`` when they first run. An op
missing from the table runs on its reference, through cupy's generic ops.
"""
KERNELS = {}
