"""A training step as one CUDA graph: captured once per input shape, then replayed.

A training step launches a kernel for every op of every layer, forward and backward --
hundreds, many of them short -- and the GPU waits on Python between them. CUDA can record the launches a stream receives ("capture")
into a graph and run the whole graph again with one call ("replay"), no Python in between.

    step = GraphedStep(fn)             # fn(inputs) -> outputs: dicts of device arrays
    out = step(batch)                  # batch: dict of numpy arrays

``GraphedStep`` runs ``fn`` eagerly the first time it sees a shape (compiling kernels, creating
the optimizer's moments), captures it the second time, and from then on copies each batch into
the graph's input buffers and replays. A graph replays exactly the launches it recorded: the
same kernels, the same argument values, the same memory. So:

  what breaks capture, or a replay           what minitune does
  cuBLAS, cuSOLVER, cuRAND calls             CuPy refuses them under capture: products run on
                                             minitune's GEMM, dropout draws Philox numbers
  host <-> device copies                     refused too: a batch is copied into the graph's
                                             input buffers before each replay; constants made
                                             during capture are uploaded after it
                                             (``device_copy``)
  reading a device value on the host         a host synchronisation (refused): such checks
  (``if x.max() >= V``, ``.item()``)         skip under ``capturing()``, the caller checks the
                                             host batch instead; the loss is read after replay
  values that change every step baked into   kept in device memory and refreshed before each
  a captured launch's arguments              replay: dropout seeds (``device_seed``), Adam's
                                             step size and decay (``device_scalars``)
  memory freed during capture and reused     graphs allocate from their own memory pool, which
  between replays by eager code              lives as long as they do
  first-use work (NVRTC, module loading,     the eager run before capture does it
  the optimizer's state)

Capture has no host side effects: nothing is drawn from a Generator and no optimizer counter
moves while recording (``device_seed`` and ``device_scalars`` register what to do instead);
the first replay, right after capture, is the step. If capture fails, nothing happened, the
step runs eagerly, and graphs stay off for this ``GraphedStep`` (``disabled_because`` says
why).

Two backends: CuPy on a GPU (``cupy.cuda.Stream.begin_capture`` / ``end_capture`` ->
``Graph.launch``), and the CPU emulator, where capture records the kernel launches the
launchers make and a replay runs them again -- so CI checks, without a GPU, that replays
redraw seeds, advance Adam and reuse memory exactly as eager steps would.
"""
import contextlib
import sys

import numpy as np

from ..backend import _import_cupy
from . import runtime

SEED_SLOTS = 512                # dropout seeds a captured step may draw
SCALAR_SLOTS = 1024             # float32 values a captured step may read from device slots


class CaptureError(RuntimeError):
    """A step could not be captured (the reason is the message); it ran eagerly instead."""


_active = None                  # the _Capture being recorded, or None


def capturing():
    """True while a step is being captured: no host reads, no uploads, no draws now."""
    return _active is not None


def device_seed(rng):
    """(seed, seed_ptr) for a kernel that draws dropout masks from Philox.

    Eagerly: a seed drawn from ``rng`` now, and None. Under capture: a placeholder seed and a
    one-element device array (a slot) that the kernel reads instead; each replay draws a
    fresh seed from ``rng`` into it, in the order the slots were taken -- the draws an eager
    step makes."""
    if _active is None:
        return rng.integers(0, 2**64, dtype=np.uint64), None
    return np.uint64(0), _active.seed_slot(rng)


def device_scalars(n, compute, before=None):
    """A float32 device array of ``n`` values that a captured kernel reads (under capture only).

    Before each replay ``before()`` runs (an optimizer's step counters move), then
    ``compute()`` gives the ``n`` values for that replay."""
    if _active is None:
        raise RuntimeError("device_scalars is for steps being captured (graph.capturing())")
    return _active.scalar_slot(n, compute, before)


def device_copy(xp, host):
    """``host`` (a numpy array) as an ``xp`` array. Under capture the copy is made when the
    capture ends, before the first replay (a host-to-device copy cannot be captured), into
    memory outside the graphs' pool (its contents must outlive every replay)."""
    if _active is None:
        return xp.asarray(host)
    with _active.backend.persistent_memory():
        device = xp.empty(host.shape, dtype=host.dtype)
    _active.copies.append((device, np.array(host)))
    return device


# --------------------------------------------------------------------------- padding

def bucket_length(T, step, limit):
    """The padded length of a batch of ``T`` tokens: the next multiple of ``step``, at most
    ``limit`` (itself a bucket). Few buckets = few graphs: max length 128 gives 32, 64, 96
    and 128."""
    if T > limit:
        raise ValueError(f"batch length {T} exceeds the limit {limit}")
    return min(-(-T // step) * step, limit)


def pad_batch(batch, rows, length, pad_id, ignore_index=-100):
    """``batch`` (input_ids, attention_mask, token_type_ids (B, T), labels (B,) or (B, T))
    padded to ``rows`` x ``length``: pad ids, mask 0, type 0, label ``ignore_index``. Padded
    positions are masked keys and ignored targets, so the loss and every gradient are those
    of the unpadded batch (up to float32 round-off: sums run in another order)."""
    B, T = batch["input_ids"].shape
    if B > rows or T > length:
        raise ValueError(f"batch {B} x {T} does not fit in {rows} x {length}")
    fill = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0,
            "labels": ignore_index}
    out = {}
    for name, value in fill.items():
        a = np.asarray(batch[name])
        shape = (rows,) + ((length,) if a.ndim == 2 else ())
        padded = np.full(shape, value, dtype=a.dtype)
        padded[(slice(0, B),) + ((slice(0, T),) if a.ndim == 2 else ())] = a
        out[name] = padded
    return out


# --------------------------------------------------------------------------- capture

class _Capture:
    """What one capture registers: seed and scalar slots, copies to make after it. The slots
    live outside the graphs' pool: another graph's scratch must never be a slot."""

    def __init__(self, backend):
        self.backend = backend
        self.seeds = backend.xp.zeros(SEED_SLOTS, dtype=np.uint64)
        self.seed_rngs = []
        self.scalars = backend.xp.zeros(SCALAR_SLOTS, dtype=np.float32)
        self.scalar_fns = []                 # (offset, n, compute, before)
        self.scalar_count = 0
        self.copies = []                     # (device array, host array)

    def seed_slot(self, rng):
        i = len(self.seed_rngs)
        if i == SEED_SLOTS:
            raise CaptureError(f"a captured step may draw at most {SEED_SLOTS} dropout seeds")
        self.seed_rngs.append(rng)
        return self.seeds[i:i + 1]

    def scalar_slot(self, n, compute, before):
        offset = self.scalar_count
        if offset + n > SCALAR_SLOTS:
            raise CaptureError(f"a captured step may read at most {SCALAR_SLOTS} scalars")
        self.scalar_fns.append((offset, n, compute, before))
        self.scalar_count += n
        return self.scalars[offset:offset + n]


class _Graph:
    """One captured step: its input buffers, outputs, slots and the backend's graph."""

    def __init__(self, backend, handle, inputs, outputs, capture):
        self.backend, self.handle = backend, handle
        self.inputs, self.outputs, self.capture = inputs, outputs, capture
        self.host_seeds = np.zeros(SEED_SLOTS, dtype=np.uint64)
        self.host_scalars = np.zeros(SCALAR_SLOTS, dtype=np.float32)

    def replay(self, batch):
        """Refresh the slots (optimizer bookkeeping, then values, then seeds, as an eager step
        would), copy the batch in, run the graph; returns its outputs (device arrays)."""
        cap = self.capture
        for offset, n, compute, before in cap.scalar_fns:
            if before is not None:
                before()
            self.host_scalars[offset:offset + n] = compute()
        for i, rng in enumerate(cap.seed_rngs):
            self.host_seeds[i] = rng.integers(0, 2**64, dtype=np.uint64)
        upload = self.backend.upload
        for name, device in self.inputs.items():
            upload(device, batch[name])
        if cap.seed_rngs:
            upload(cap.seeds[:len(cap.seed_rngs)], self.host_seeds[:len(cap.seed_rngs)])
        if cap.scalar_count:
            upload(cap.scalars[:cap.scalar_count], self.host_scalars[:cap.scalar_count])
        self.backend.launch(self.handle)
        return self.outputs


class GraphedStep:
    """``fn(inputs) -> outputs`` (dicts of device arrays), replayed as a graph per input shape.

    Args:
        fn: one step, e.g. forward + backward + optimizer update. It must not read device
            values on the host, nor upload, while ``capturing()`` (see the module docstring).
        backend: "cuda" (CuPy) or "emulator" (numpy arrays, kernels in the CPU emulator).
        enabled: False runs every step eagerly (the switch: ``--no-cuda-graphs``).
        rngs: Generators ``fn`` may draw from outside minitune's kernels (the reference
            dropout): restored if a capture fails, so that a failed capture draws nothing.
        pinned: ``pinned()`` returns the arrays whose addresses a graph bakes in (the
            weights): when one moves, every graph is dropped and captured again.
        context: ``context()`` returns what else decides the kernels a step launches (the
            precision, whether fused ops are on); a graph is kept per shape and context.

    ``disabled_because`` holds the reason when a capture failed and graphs were turned off;
    ``captures`` counts the graphs captured.
    """

    def __init__(self, fn, backend="cuda", enabled=True, rngs=(), pinned=None, context=None):
        self.fn, self.enabled, self.rngs, self.pinned = fn, enabled, tuple(rngs), pinned
        self.context = context or (lambda: ())
        self.backend = _CupyGraphs() if backend == "cuda" else _EmulatedGraphs()
        self.graphs, self.warmed = {}, set()
        self.disabled_because, self.captures = None, 0
        self._pointers = None

    def __call__(self, batch):
        """Run one step on ``batch`` (numpy arrays); returns ``fn``'s outputs (device)."""
        self._check_pinned()
        key = (tuple((k, v.shape, v.dtype.str) for k, v in sorted(batch.items())),
               self.context())
        graph = self.graphs.get(key)
        if graph is not None:
            return graph.replay(batch)
        if not self.enabled or key not in self.warmed:
            self.warmed.add(key)
            return self.fn({k: self.backend.to_device(v) for k, v in batch.items()})
        try:
            graph = self._capture(batch)
        except CaptureError as e:
            self.enabled, self.disabled_because = False, str(e)
            print(f"CUDA graphs off: capturing the training step failed ({e}); it runs "
                  f"without graphs", file=sys.stderr)
            return self.fn({k: self.backend.to_device(v) for k, v in batch.items()})
        self.graphs[key] = graph
        self.captures += 1
        return graph.replay(batch)

    def _check_pinned(self):
        if self.pinned is None:
            return
        pointers = tuple(runtime.for_array(a).pointer(a) for a in self.pinned())
        if pointers != self._pointers:
            self.graphs.clear()
            self._pointers = pointers

    def _capture(self, batch):
        """Record ``fn`` on the batch's shapes. The input buffers, slots and constants are
        allocated in the ordinary pool (their contents must survive other graphs' replays);
        everything ``fn`` allocates while recording comes from the graphs' own pool."""
        global _active
        states = [(r, r.bit_generator.state) for r in self.rngs]
        backend = self.backend
        inputs = {k: backend.xp.empty(v.shape, dtype=v.dtype) for k, v in batch.items()}
        capture = _active = _Capture(backend)
        try:
            with backend.private_memory():
                handle, outputs = backend.capture(lambda: self.fn(inputs))
        except Exception as e:                   # the step ran nothing: undo any draws
            for rng, state in states:
                rng.bit_generator.state = state
            reason = e if isinstance(e, CaptureError) else f"{type(e).__name__}: {e}"
            raise CaptureError(str(reason).splitlines()[0]) from e
        finally:
            _active = None
        for device, host in capture.copies:
            backend.upload(device, host)
        backend.trim()           # the eager warm-up's activations go back to the driver
        return _Graph(backend, handle, inputs, outputs, capture)


class _CupyGraphs:
    """CUDA graphs through CuPy: capture on a side stream, replay on the null stream (so eager
    work -- evaluation, checkpoints -- stays ordered with the replays)."""

    def __init__(self):
        self.xp = _import_cupy()
        self.pool = self.xp.cuda.MemoryPool()          # the graphs' memory, theirs alone
        self.stream = self.xp.cuda.Stream(non_blocking=True)

    def private_memory(self):
        return self.xp.cuda.using_allocator(self.pool.malloc)

    def persistent_memory(self):
        return self.xp.cuda.using_allocator(self.xp.get_default_memory_pool().malloc)

    def to_device(self, host):
        return self.xp.asarray(host)

    def upload(self, device, host):
        device.set(np.ascontiguousarray(host, dtype=device.dtype))   # on the null stream

    def capture(self, record):
        stream = self.stream
        self.xp.cuda.Stream.null.synchronize()        # the inputs are allocated; nothing pends
        with stream:
            stream.begin_capture()
            try:
                outputs = record()
            except BaseException:
                with contextlib.suppress(Exception):
                    stream.end_capture()                # leave the stream usable
                raise
            graph = stream.end_capture()
        graph.upload(self.xp.cuda.Stream.null)
        return graph, outputs

    def launch(self, graph):
        graph.launch(self.xp.cuda.Stream.null)

    def trim(self):
        """Free the ordinary pool's unused blocks (eager steps' activations, cached by CuPy)."""
        self.xp.get_default_memory_pool().free_all_blocks()


class _EmulatedGraphs:
    """The same protocol on the CPU: capture records the kernel launches the launchers make
    (runtime.recording), a replay runs them again in the emulator."""

    xp = np

    def private_memory(self):
        return contextlib.nullcontext()

    persistent_memory = private_memory

    def to_device(self, host):
        return np.array(host)

    def upload(self, device, host):
        device[...] = host

    def capture(self, record):
        with runtime.recording() as launches:
            outputs = record()
        return list(launches), outputs

    def launch(self, launches):
        for args in launches:
            runtime.emulated_launch(*args)

    def trim(self):
        pass
