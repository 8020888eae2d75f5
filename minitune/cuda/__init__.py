"""Launchers of minitune's CUDA kernels (kernels/*.cu) for cupy arrays.

``KERNELS`` maps an op's name to its implementation (the shape of ``dispatch.Implementation``:
``supports`` and the op's functions; plain namespaces here because ``minitune.dispatch``
imports this package); ``minitune.dispatch`` looks ops up here for cupy inputs. Importing this
package must not import cupy (machines without a GPU import it too): launchers get cupy from
``minitune.backend`` when they first run. An op missing from the table runs on its reference,
through cupy's generic ops.

Modules: ``runtime`` (GPU or CPU emulator), ``source`` (the kernel text every compiler sees),
``nvrtc`` (the compile check), ``emulator`` (CUDA C on the CPU), ``philox`` (the random
numbers, in NumPy), and one launcher module per kernel file. docs/kernels.md explains them.
"""
from types import SimpleNamespace

from . import adam, attention, cross_entropy, dropout, embedding, gelu, layer_norm, matmul


def _kernel(name, module, *functions):
    return SimpleNamespace(name=name, supports=module.supports,
                           **{f: getattr(module, f) for f in functions})


KERNELS = {
    "attention": _kernel("attention", attention, "forward", "backward"),
    "layer_norm": _kernel("layer_norm", layer_norm, "forward", "backward"),
    "gelu": _kernel("gelu", gelu, "forward", "backward"),
    "cross_entropy": _kernel("cross_entropy", cross_entropy, "forward", "backward"),
    "embedding": _kernel("embedding", embedding, "forward", "backward"),
    "dropout": _kernel("dropout", dropout, "forward", "backward"),
    "adam": _kernel("adam", adam, "step"),
    "linear": SimpleNamespace(name="linear", supports=matmul.supports_linear,
                              forward=matmul.linear_forward, backward=matmul.linear_backward),
    "linear_gelu": SimpleNamespace(name="linear_gelu", supports=matmul.supports_linear,
                                   forward=matmul.linear_gelu_forward,
                                   backward=matmul.linear_gelu_backward),
    "matmul": SimpleNamespace(name="matmul", supports=matmul.supports_matmul,
                              forward=matmul.matmul_forward, backward=matmul.matmul_backward),
}
