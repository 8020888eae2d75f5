"""Adam / AdamW in one launch per parameter group (kernels/adamw.cu).

Same arguments as ``minitune.optim.adam.adam_update`` (the reference, whose elementwise
arithmetic the kernel repeats operation for operation: the kernel is that algorithm, fused).
The launcher hands the kernel tables of device addresses (weights, gradients, moments) and a
block table saying which parameter and element each block starts at. Tables are cached by
the parameters' addresses and sizes: weights and moments never move, and CuPy's memory pool
usually hands gradients the same addresses every step; a miss costs one small host-to-device
copy. Parameters all at the same step (the usual case) pass their bias corrections as scalars.
"""
import math

import numpy as np

from . import graph, runtime

FILE = "adamw.cu"
CHUNK = 1024                        # elements a block updates (adamw.cu)
_tables = {}


def supports(w, *rest):
    return w.dtype == np.float32


def _table(rt, ws, gs, ms, vs):
    """(pointer tables, sizes, block table) for these arrays, cached by address and size."""
    key = (rt.xp.__name__,) + tuple((rt.pointer(w), rt.pointer(g), rt.pointer(m), rt.pointer(v),
                                     w.size) for w, g, m, v in zip(ws, gs, ms, vs))
    table = _tables.get(key)
    if table is None:
        xp = rt.xp
        sizes = np.array([w.size for w in ws], dtype=np.int64)
        blocks = [(p, s) for p, n in enumerate(sizes) for s in range(0, int(n), CHUNK)]
        upload = lambda host: graph.device_copy(xp, host)     # noqa: E731 (after a capture)
        table = tuple(upload(np.array([rt.pointer(a) for a in arrays], dtype=np.uint64))
                      for arrays in (ws, gs, ms, vs)) + (
            upload(sizes), upload(np.array([p for p, _ in blocks], dtype=np.int32)),
            upload(np.array([s for _, s in blocks], dtype=np.int64)))
        if len(_tables) > 64:                           # bounded: old address sets go
            _tables.clear()
        _tables[key] = table
    return table


def step(ws, gs, ms, vs, ts, lr, betas, eps, weight_decay, decoupled, work, hyper=None):
    """One Adam/AdamW update of float32 parameters ``ws`` in place (``work`` is unused).

    hyper: None, or a float32 device array (step_size, bc2_root, decay) that the kernel reads
    instead of the values computed here from lr and ts -- a step captured as a CUDA graph,
    whose optimizer refreshes it before each replay (``optim.adam``, ``graph.device_scalars``).
    """
    rt = runtime.for_array(ws[0])
    xp = rt.xp
    b1, b2 = betas
    gs = [g if g.flags.c_contiguous and g.dtype == np.float32 else
          xp.ascontiguousarray(g, dtype=np.float32) for g in gs]
    keep = [w for w in ws + ms + vs if not w.flags.c_contiguous]
    if keep:
        raise ValueError("adam kernel: parameters and moments must be contiguous")
    w_ptrs, g_ptrs, m_ptrs, v_ptrs, sizes, block_tensor, block_start = _table(rt, ws, gs, ms, vs)
    step_sizes = [lr / (1 - b1 ** t) for t in ts]
    roots = [math.sqrt(1 - b2 ** t) for t in ts]
    same = len(set(ts)) == 1
    if hyper is not None and not same:
        raise ValueError("adam kernel: device hyper-parameters need every parameter at one step")
    per_tensor = (None, None) if same else (
        graph.device_copy(xp, np.array(step_sizes, dtype=np.float32)),
        graph.device_copy(xp, np.array(roots, dtype=np.float32)))
    rt.launch(FILE, "adam_update", int(block_tensor.size), 256,
              (w_ptrs, g_ptrs, m_ptrs, v_ptrs, sizes, block_tensor, block_start, *per_tensor,
               np.float32(step_sizes[0]), np.float32(roots[0]),
               np.float32(1 - lr * weight_decay), np.float32(weight_decay), np.float32(1 - b1),
               np.float32(b2), np.float32(1 - b2), np.float32(eps), np.int32(decoupled), hyper))
