"""Fused, multi-threaded CPU implementations of minitune's fused ops (numpy arrays).

``FUSED`` maps an op's name to its ``dispatch.Implementation``; ``minitune.dispatch`` looks ops
up here for numpy inputs. Each entry computes what the op's reference in ``minitune/ops/``
(``minitune/optim/adam.py`` for Adam) computes -- tests/cpu compares them in float32 and
float64 -- in one compiled pass per row, on all cores (``threads.py`` decides how many).

The kernels are compiled by numba. Without numba (it is a dependency, but a broken install
should not stop anyone from training) the table stays empty and every op runs its reference.

The table is filled by ``register()``, which ``minitune/__init__.py`` calls last: the kernels
import the references they share code with (``minitune.ops``), and those import
``minitune.dispatch``, which imports this package.
"""
import hashlib
from pathlib import Path

from . import memory, threads  # noqa: F401  (these work with or without numba)

FUSED = {}


def register():
    """Fill ``FUSED`` (once; a no-op without numba); tune the C allocator (memory.py) and
    OpenBLAS's idle workers (threads.shorten_blas_spin)."""
    if FUSED:
        return
    memory.tune_malloc()
    threads.shorten_blas_spin()
    try:
        import numba  # noqa: F401
    except ImportError:
        return
    _drop_stale_compiled_kernels()
    from .. import dispatch
    from . import (adam, attention, cross_entropy, dropout, embedding, gelu, grad_sum,
                   layer_norm, linear)
    for name, module, functions in [
        ("linear", linear, ("forward", "backward")),
        ("attention", attention, ("forward", "backward")),
        ("dropout", dropout, ("forward", "backward")),
        ("layer_norm", layer_norm, ("forward", "backward")),
        ("dropout_layer_norm", layer_norm, ("forward", "backward")),
        ("gelu", gelu, ("forward", "backward")),
        ("cross_entropy", cross_entropy, ("forward", "backward")),
        ("embedding", embedding, ("forward", "backward")),
    ]:
        FUSED[name] = dispatch.Implementation(
            name, supports=module.supports,
            **{fn: getattr(module, f"{name}_{fn}") for fn in functions})
    FUSED["adam"] = dispatch.Implementation("adam", supports=adam.supports, step=adam.adam_step)
    FUSED["grad_sum"] = dispatch.Implementation("grad_sum", supports=grad_sum.supports,
                                                forward=grad_sum.grad_sum_forward)



def _drop_stale_compiled_kernels():
    """numba's disk cache is keyed on the file that defines a kernel, not on the files whose
    functions it inlines: a kernel calling ``vecmath.exp_row`` would keep an old exp_row after
    vecmath.py changed. So the cache is dropped whenever any kernel source changes (a stamp
    with the sources' hash sits beside the compiled files)."""
    here = Path(__file__).parent
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(here.glob("*.py"))))
    cache = here / "__pycache__"
    stamp = cache / "kernels.sha256"
    try:
        if stamp.exists() and stamp.read_text() == digest.hexdigest():
            return
        for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            f.unlink()
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest.hexdigest())
    except OSError:            # a read-only install: numba then caches elsewhere, per user
        pass
