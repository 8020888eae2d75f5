"""How many threads minitune computes with on the CPU: decided here, and only here.

Two sets of threads do the work of a step on the CPU:

- **BLAS** (numpy's OpenBLAS): the large 2-D products of the Linear layers. It splits one
  product into equal static parts, one per thread, and its idle threads spin-wait.
- **minitune's pool** (this module): the fused layer ops of ``minitune.cpu`` and the many small
  attention products. Work is cut into more chunks than threads; each thread takes the next
  chunk when it is done with one, so a thread slowed down by another process on its core does
  less of the work instead of holding everyone up. Idle pool threads sleep on a lock.

``set_num_threads(n)`` sets both to n. The two never run at once (an op runs either BLAS or the
pool), so n threads of each is n busy threads, not 2n. While the pool runs small products,
BLAS is held at one thread (``single_threaded_blas``), since a two-way split of a 128 x 128
product costs more in synchronisation than it saves, and it stalls for whole scheduler slices
when another process holds one of the cores (docs/performance.md).

The default is the number of cores this process may run on (``os.sched_getaffinity``), or the
environment's ``MINITUNE_NUM_THREADS``; ``minitune --threads N`` sets it from the command line.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

def _default_threads():
    env = os.environ.get("MINITUNE_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"MINITUNE_NUM_THREADS must be a positive integer, got {env!r}")
        if n < 1:
            raise ValueError(f"MINITUNE_NUM_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # not on Linux
        return os.cpu_count() or 1


class _Config:
    threads = _default_threads()
    pool = None                                 # a ThreadPoolExecutor of threads - 1 workers
    blas = None                                 # threadpoolctl's controller, once needed


def num_threads():
    """The number of threads minitune computes with (BLAS and its own pool)."""
    return _Config.threads


def set_num_threads(n):
    """Use ``n`` threads from now on, for BLAS and for minitune's fused ops.

    Unlike the OPENBLAS_NUM_THREADS variable, this works after numpy has been imported.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"the number of threads must be at least 1, got {n}")
    _Config.threads = n
    if _Config.pool is not None:
        _Config.pool.shutdown(wait=True)
        _Config.pool = None
    _blas().limit(limits=n, user_api="blas")


def _blas():
    """threadpoolctl's view of the BLAS libraries loaded in this process (numpy's, scipy's)."""
    if _Config.blas is None:
        from threadpoolctl import ThreadpoolController
        _Config.blas = ThreadpoolController()
    return _Config.blas


def blas_num_threads():
    """The largest thread count among the loaded BLAS libraries."""
    return max((lib.num_threads for lib in _blas().select(user_api="blas").lib_controllers),
               default=1)


class single_threaded_blas:
    """Inside the block BLAS runs on the calling thread (minitune's pool splits the work).

    Cheap to enter (a C call per BLAS library), so it wraps single ops.
    """

    def __enter__(self):
        self.libs = _blas().select(user_api="blas").lib_controllers
        self.saved = [lib.num_threads for lib in self.libs]
        for lib, n in zip(self.libs, self.saved):
            if n != 1:
                lib.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        for lib, n in zip(self.libs, self.saved):
            if n != 1:
                lib.set_num_threads(n)


def chunk_bounds(n, grain=1, per_thread=4):
    """Split ``range(n)`` into contiguous chunks for the pool: about ``per_thread`` chunks per
    thread (so a slow thread can be made up for), none shorter than ``grain`` items.

    Returns a list of (lo, hi) pairs covering [0, n) in order.
    """
    threads = _Config.threads
    parts = 1 if threads == 1 else max(1, min(n // max(grain, 1), threads * per_thread))
    edges = np.linspace(0, n, parts + 1).astype(np.int64).tolist()
    return [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]


def parallel_for(kernel, n, *args, grain=1):
    """Run ``kernel(c, lo, hi, *args)`` for every chunk c = (lo, hi) of ``range(n)``.

    The chunks come from ``chunk_bounds(n, grain)``. The calling thread and the pool's threads
    take chunks one after another until none is left. A kernel must release the GIL (numba
    ``nogil=True``, or numpy calls on large arrays) and write only to its own rows, or to
    ``partial[c]`` for a reduction. Returns the number of chunks.
    """
    bounds = chunk_bounds(n, grain)
    if len(bounds) == 1:
        kernel(0, 0, n, *args)
        return 1
    work = iter(enumerate(bounds))                  # next() on it is atomic under the GIL
    errors = []

    def worker():
        try:
            for c, (lo, hi) in work:
                kernel(c, lo, hi, *args)
        except BaseException as e:                  # noqa: BLE001 -- re-raised below
            errors.append(e)

    pool = _pool()
    futures = [pool.submit(worker) for _ in range(min(_Config.threads, len(bounds)) - 1)]
    worker()
    for f in futures:
        f.result()
    if errors:
        raise errors[0]
    return len(bounds)


def _pool():
    if _Config.pool is None:
        _Config.pool = ThreadPoolExecutor(max_workers=_Config.threads - 1,
                                          thread_name_prefix="minitune-cpu")
    return _Config.pool


def num_chunks(n, grain=1):
    """How many chunks ``parallel_for(kernel, n, grain=grain)`` will use (to size partials)."""
    return len(chunk_bounds(n, grain))

