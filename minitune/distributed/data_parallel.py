"""Data parallelism: what a training loop calls to run as one rank of N.

Every rank holds the whole model and optimizer. A step on a global batch of B examples:

1. each rank takes its contiguous share of the batch (``shard_bounds``: sizes differ by at most
   one; a short last batch may leave a rank with nothing) and runs forward and backward on it,
   which gives the gradient of *its* mean loss over its n_r loss terms (examples, or labelled
   tokens for NER);
2. ``sync_step`` sums (n_r, n_r * loss_r) over the ranks in one tiny call: every rank learns
   n = sum n_r and the global batch's mean loss;
3. ``reduce_gradients`` sums n_r / n * grad_r over the ranks in a few flat buckets
   (buckets.py). Because the batch's mean loss is sum_r (n_r / n) * mean_r, its gradient is
   exactly that sum: every rank now holds the gradient one process would have computed on the
   whole batch (up to float32 round-off in a different summation order);
4. every rank clips and steps its own optimizer with identical inputs, so the weights stay
   identical everywhere without ever being sent again;
5. ``any(stop requested)`` after the step: a Ctrl-C (or a callback's stop) on any rank stops
   every rank after the same step, so rank 0 saves a checkpoint that all agree on.

Rank 0 alone writes (metrics, checkpoints, results); evaluation is split across the ranks
and the predictions are gathered, so every rank computes the same scores.
"""
import numpy as np

from .buckets import GradientBuckets
from .comm import DistributedError, dist_timeout, on_every_rank


def shard_bounds(n, rank, size):
    """The [start, stop) of rank ``rank``'s share of n items split over ``size`` ranks:
    contiguous, the first n % size ranks one item larger; empty when n < size and rank >= n."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class DataParallel:
    """The hooks of one rank (see the module docstring).

    Args:
        comm: a communicator (comm.py).
        bucket_mb: gradient bucket size in MB.
    """

    def __init__(self, comm, bucket_mb=25.0):
        self.comm = comm
        self.rank, self.size = comm.rank, comm.size
        self.bucket_mb = bucket_mb
        self.buckets = None

    @property
    def is_writer(self):
        """Only rank 0 writes files and prints results."""
        return self.rank == 0

    def handshake(self, fingerprint):
        """Check that every rank has started and agrees on ``fingerprint`` (a dict of what must
        be equal: arguments, data sizes, ...). Raises DistributedError naming the ranks that
        did not report within the timeout or that disagree."""
        reports = self.comm.gather_from_all(fingerprint, dist_timeout(), "start-up handshake")
        verdict = _disagreements(reports) if self.rank == 0 else None
        verdict = self.comm.bcast_object(verdict, what="start-up verdict")
        if verdict:
            raise on_every_rank(DistributedError(verdict))

    def share_weights(self, model):
        """Give every rank rank 0's weights and lay out the gradient buckets."""
        for p in model.parameters():
            self.comm.broadcast(p.data, what="broadcast of rank 0's weights")
        self.buckets = GradientBuckets(model.parameters(), self.comm, self.bucket_mb)

    def on_writer(self, fn):
        """``fn()`` on rank 0 only (e.g. preparing the output directory); an exception there
        is raised again on every rank (rank 0: the exception itself; the others: one of its
        type and message), so all ranks stop alike."""
        error = raised = None
        if self.is_writer:
            try:
                fn()
            except Exception as e:                  # re-raised below, on every rank
                error, raised = (type(e), str(e)), e
        error = self.comm.bcast_object(error, what="rank 0's result")
        if raised is not None:
            raise on_every_rank(raised)
        if error:
            kind, message = error
            try:
                exc = kind(message)
            except Exception:                       # noqa: BLE001 (a class with other arguments)
                exc = RuntimeError(f"{kind.__name__}: {message}")
            raise on_every_rank(exc)

    def seed_dropout(self, rng, seed, step):
        """Give rank r > 0 its own dropout stream (rank 0 keeps the single-process one), a
        function of (seed, rank, step) so that a resumed run draws the same masks."""
        if self.rank > 0:
            rng.bit_generator.state = np.random.default_rng(
                [seed, self.rank, step]).bit_generator.state

    def sync_step(self, n_local, loss_local):
        """Sum (n_r, n_r * loss_r) over the ranks. Returns (n, the global batch's mean loss).
        ``loss_local`` is ignored when n_local = 0 (an empty share)."""
        buf = np.array([n_local, n_local * loss_local if n_local else 0.0], dtype=np.float64)
        self.comm.allreduce_sum(buf, what="all-reduce of the step's loss")
        n_total = int(round(buf[0]))
        return n_total, float(buf[1] / n_total) if n_total else float("nan")

    def reduce_gradients(self, n_local, n_total):
        """Every p.grad becomes the gradient of the global batch's mean loss."""
        self.buckets.reduce(n_local / n_total)

    def any(self, *flags):
        """For each flag: True on every rank when it is true on some rank (one call for all;
        a single flag gives a single bool)."""
        buf = np.array([1.0 if f else 0.0 for f in flags])
        self.comm.allreduce_sum(buf, what="all-reduce of the stop flags")
        agreed = tuple(bool(x > 0) for x in buf)
        return agreed[0] if len(agreed) == 1 else agreed

    def my_share(self, n):
        """The slice of n items (e.g. evaluation examples) this rank handles."""
        return slice(*shard_bounds(n, self.rank, self.size))

    def gather(self, items):
        """Concatenate every rank's list ``items`` in rank order (each rank has the result).
        With ``my_share`` this rebuilds the full, ordered list."""
        parts = self.comm.allgather_object(list(items), what="all-gather of predictions")
        return [x for part in parts for x in part]


def _disagreements(reports):
    """An error message listing what differs from rank 0 (None when all agree)."""
    problems = []
    for rank, rep in enumerate(reports[1:], start=1):
        keys = sorted(set(rep) | set(reports[0]))
        diff = [f"{k}: {reports[0].get(k)!r} on rank 0, {rep.get(k)!r} on rank {rank}"
                for k in keys if rep.get(k) != reports[0].get(k)]
        if diff:
            problems.append("; ".join(diff))
    if not problems:
        return None
    return ("the ranks do not agree on the run (each must see the same files and arguments): "
            + " | ".join(problems))
