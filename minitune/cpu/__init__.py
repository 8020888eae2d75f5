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
import os
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
    wide_vectors()
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
    # the LayerNorms' backward adds the terms of a gradient the engine hands them unsummed
    # (autograd.GradTerms) in its own row pass
    FUSED["layer_norm"].adds_grad_terms = FUSED["dropout_layer_norm"].adds_grad_terms = True
    # linear + GELU: the reference's composition of the two, except that the forward keeps
    # GELU's slope for the backward (gelu.py); it falls back to the composition by itself
    FUSED["linear_gelu"] = dispatch.Implementation("linear_gelu",
                                                   forward=gelu.linear_gelu_forward,
                                                   backward=gelu.linear_gelu_backward)
    FUSED["adam"] = dispatch.Implementation("adam", supports=adam.supports, step=adam.adam_step)
    FUSED["grad_sum"] = dispatch.Implementation("grad_sum", supports=grad_sum.supports,
                                                forward=grad_sum.grad_sum_forward)



def wide_vectors():
    """Let the compiler use 512-bit vectors in the kernels, on CPUs with AVX-512.

    LLVM tunes for recent Intel server CPUs with "prefer-256-bit": it vectorises loops 8 float32
    wide, not 16, because running 512-bit instructions lowers the clock of some of those CPUs.
    Here that clock is lowered anyway: the BLAS's GEMMs, most of a step, are 512-bit, and a
    step alternates between them and the kernels every few milliseconds. The kernels' loops
    are bound by arithmetic (GELU's erf, softmax's exp, the dropout hash), so twice the width
    is measured faster (docs/cpu.md, "Vector width"): GELU's forward 0.45 -> 0.36 ns an element
    on one thread, a training step at 32 x 128 1-2% shorter.

    numba reads its target's features once, when it compiles or loads its first function;
    this sets them (the host's, less "prefer-256-bit") unless the user set NUMBA_CPU_FEATURES
    or NUMBA_CPU_NAME, ``MINITUNE_WIDE_VECTORS=0`` is set, or the CPU has no AVX-512.
    Compiled kernels are cached per feature set, so switching recompiles once. Returns True
    when it set them. (A process in which numba compiled something before minitune was
    imported keeps the features it started with; the kernels then run 8 wide.)"""
    from numba.core import config
    from llvmlite import binding
    if os.environ.get("MINITUNE_WIDE_VECTORS", "1") == "0":
        return False
    if config.CPU_FEATURES is not None or config.CPU_NAME is not None:
        return False
    features = binding.get_host_cpu_features().flatten()
    if "+avx512f" not in features.split(","):
        return False
    config.CPU_FEATURES = features + ",-prefer-256-bit"
    return True


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
