"""Flat gradient buckets: every rank's gradients summed in a few large all-reduce calls.

One all-reduce per parameter would pay MPI's per-call latency ~100 times a step (BERT has
~100 parameter arrays, many of them small biases and LayerNorm weights). Instead the
parameters are laid out, once, in a few contiguous buffers of about ``bucket_mb`` MB each:

    bucket 0: [classifier.bias | classifier.weight | pooler... | layer 5 ...]    (reverse order:
    bucket 1: [... layer 3 ...]                                                    the order in
    bucket k: [embeddings.word_embeddings.weight]   (a parameter larger than a     which backward
                                                     bucket gets one of its own)   produces them)

Each step, ``reduce(scale)`` copies ``scale * p.grad`` of every parameter into its slot,
all-reduces each bucket in place, and leaves ``p.grad`` as a view of its slot (no copy back).
A parameter without a gradient on one rank contributes zeros there.
"""
import time

from ..backend import get_array_module


class GradientBuckets:
    """The gradient buffers of ``params`` for ``comm`` (see the module docstring).

    Args:
        params: the model's parameters (objects with ``.data`` and ``.grad``), in model order.
        comm: a communicator (``allreduce_sum``).
        bucket_mb: target bucket size in MB (2**20 bytes).
    """

    def __init__(self, params, comm, bucket_mb=25.0):
        self.comm = comm
        self.bucket_bytes = int(bucket_mb * 2**20)
        self.buckets = []                     # [(buffer, [(param, offset, size), ...])]
        pending, pending_bytes = [], 0
        for p in reversed(list(params)):
            nbytes = p.data.size * p.data.itemsize
            same_kind = not pending or (pending[0].data.dtype == p.data.dtype and
                                        type(pending[0].data) is type(p.data))
            if pending and (not same_kind or pending_bytes + nbytes > self.bucket_bytes):
                self._add_bucket(pending)
                pending, pending_bytes = [], 0
            pending.append(p)
            pending_bytes += nbytes
        if pending:
            self._add_bucket(pending)
        self.comm_seconds = 0.0               # time spent inside all-reduce, summed over calls

    def _add_bucket(self, params):
        xp = get_array_module(params[0].data)
        slots, offset = [], 0
        for p in params:
            slots.append((p, offset, p.data.size))
            offset += p.data.size
        self.buckets.append((xp.empty(offset, dtype=params[0].data.dtype), slots))

    @property
    def sizes_mb(self):
        """Each bucket's size in MB, in reduction order."""
        return [buf.size * buf.itemsize / 2**20 for buf, _ in self.buckets]

    def reduce(self, scale=1.0):
        """``p.grad <- sum over ranks of scale_rank * p.grad_rank`` for every parameter.

        With ``scale = n_rank / n_total`` (this rank's share of the global batch's loss terms)
        and each rank's gradient that of its mean loss, the sum is the gradient of the mean
        loss over the whole global batch: what one process computes on that batch.
        """
        for buffer, slots in self.buckets:
            xp = get_array_module(buffer)
            for p, offset, size in slots:
                view = buffer[offset:offset + size]
                if p.grad is None:
                    view[...] = 0
                elif scale == 1.0:
                    view[...] = p.grad.reshape(-1)
                else:
                    xp.multiply(p.grad.reshape(-1), scale, out=view)
            t = time.perf_counter()
            self.comm.allreduce_sum(buffer, what="all-reduce of gradients")
            self.comm_seconds += time.perf_counter() - t
            for p, offset, size in slots:
                p.grad = buffer[offset:offset + size].reshape(p.data.shape)
