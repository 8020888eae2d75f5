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

The default is the number of cores this process may run on (``os.sched_getaffinity``), unless
the environment sets ``MINITUNE_NUM_THREADS`` (or ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS``);
``minitune --threads N`` sets those variables (and restarts), ``set_num_threads`` works from
Python at any time.

**A busy machine.** Every parallel op ends with the calling thread waiting for the others.
When other processes keep the cores busy, a waited-for thread may not run for a whole
scheduler slice, and a step has hundreds of such waits: measured, a 0.6 s SST-2 step took
13 s beside other work. So minitune watches how much CPU *other* processes take (from
/proc/stat, at most every half second) and uses only the cores they leave free: with n
threads allowed and others keeping k cores busy, it computes with max(1, round(n - k))
threads (BLAS and pool alike), and goes back up when they stop. ``set_adaptive(False)`` (or
``MINITUNE_ADAPTIVE_THREADS=0``) keeps exactly n.
"""
import os
import threading
import time
from collections import deque


def _default_threads():
    """MINITUNE_NUM_THREADS, else the BLAS/OpenMP variables a user may have set for numpy,
    else the cores this process may run on."""
    name = next((v for v in ("MINITUNE_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
                 if os.environ.get(v)), None)
    env = os.environ.get(name) if name else None
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"{name} must be a positive integer, got {env!r}")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # not on Linux
        return os.cpu_count() or 1


class _Config:
    threads = _default_threads()                # the most threads allowed (set_num_threads)
    active = None                               # threads in use now (fewer on a busy machine)
    adaptive = os.environ.get("MINITUNE_ADAPTIVE_THREADS", "1") != "0"
    helpers = []                                # the pool: threads - 1 _Helper threads
    pool_lock = threading.Lock()                # held by the parallel_for using the helpers
    blas = None                                 # threadpoolctl's controller, once needed
    blas_held = 0                               # single_threaded_blas blocks open now


def num_threads():
    """The most threads minitune computes with (BLAS and its own pool)."""
    return _Config.threads


def set_num_threads(n):
    """Use up to ``n`` threads from now on, for BLAS and for minitune's fused ops.

    Unlike the OPENBLAS_NUM_THREADS variable, this works after numpy has been imported.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"the number of threads must be at least 1, got {n}")
    _Config.threads = n             # the pool grows when it needs more threads; fewer leave
    _Load.reset()                   # some asleep
    _use(n)


def set_adaptive(flag):
    """True (default): use fewer threads while other processes keep cores busy."""
    _Config.adaptive = bool(flag)
    _Load.reset()
    _use(_Config.threads)


def active_threads():
    """The number of threads in use now: ``num_threads()``, or fewer on a busy machine."""
    if _Config.adaptive and _Config.threads > 1:
        n = max(1, min(_Config.threads, round(_Config.threads - _Load.others_busy())))
        if n != _Config.active:
            _use(n)
    elif _Config.active is None:
        _use(_Config.threads)
    return _Config.active


def _use(n):
    """Compute with n threads: BLAS's count, and how many chunks the pool hands out. Inside a
    ``single_threaded_blas`` block BLAS stays at one thread; the block sets n when it ends."""
    _Config.active = n
    if not _Config.blas_held:
        _blas().limit(limits=n, user_api="blas")


class _Load:
    """How many cores other processes keep busy, from the machine's and this process's CPU
    time (Linux /proc/stat); 0 where that is not available."""
    interval = 0.5            # seconds between two readings
    last = None               # (wall, machine busy seconds, this process's seconds)
    others = 0.0              # cores busy with other processes, smoothed

    @classmethod
    def reset(cls):
        cls.last, cls.others = None, 0.0

    @classmethod
    def others_busy(cls):
        now = time.monotonic()
        if cls.last is not None and now - cls.last[0] < cls.interval:
            return cls.others
        busy = _machine_busy_seconds()
        if busy is None:
            return 0.0
        ours = time.process_time()
        if cls.last is not None:
            wall = now - cls.last[0]
            seen = max(0.0, (busy - cls.last[1]) - (ours - cls.last[2])) / wall
            cls.others = 0.5 * cls.others + 0.5 * seen
        cls.last = (now, busy, ours)
        return cls.others


def _machine_busy_seconds():
    """CPU seconds all processes have used since boot (None where /proc/stat is missing)."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
    ticks = [int(v) for v in fields[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _blas():
    """threadpoolctl's view of the BLAS libraries loaded in this process (numpy's, scipy's).

    threadpoolctl is a dependency; where it is missing anyway (a checkout run from PYTHONPATH
    on a machine that has only numpy, as tools/gpu_check.sh does) minitune still imports and
    runs, with the BLAS left at its own thread count."""
    if _Config.blas is None:
        try:
            from threadpoolctl import ThreadpoolController
            _Config.blas = ThreadpoolController()
        except ImportError:
            _Config.blas = _NoBlasControl()
    return _Config.blas


class _NoBlasControl:
    """Stands in for threadpoolctl's controller when it is not installed: no library to set."""
    lib_controllers = []

    def select(self, **kwargs):
        return self

    def limit(self, **kwargs):
        return None


# OpenBLAS's idle worker threads keep spinning (a busy loop, not even yielding the core) for
# 2^28 cycles, about 0.1 s, after every multi-threaded product before they sleep. In a
# training step the next product is never that far away, so the workers never sleep, and
# while minitune's pool runs a fused op between two products, each pool thread shares its
# core with a spinning BLAS worker: measured, a bias + GELU at 8192 x 1536 took 23 ms right
# after a product against 14 ms after a pause. 2^16 cycles (about 30 microseconds) still
# covers the gap between back-to-back products (a Linear's backward) and then lets go.
BLAS_SPIN_LOG2_CYCLES = 16


def shorten_blas_spin(log2_cycles=BLAS_SPIN_LOG2_CYCLES):
    """Make OpenBLAS's idle workers sleep after 2^log2_cycles cycles instead of 2^28.

    OpenBLAS reads the time from OPENBLAS_THREAD_TIMEOUT when its workers start, which is
    usually before minitune is imported; so the variable is set, OpenBLAS re-reads its
    environment (``openblas_read_env``) and stops its workers (``blas_thread_shutdown_``),
    which it restarts on its next multi-threaded call. Not done when the user set the
    variable (theirs wins), for BLAS libraries other than OpenBLAS with its own pthreads
    server, or when ``MINITUNE_BLAS_SPIN=0``. Returns how many libraries were changed.
    """
    if os.environ.get("MINITUNE_BLAS_SPIN", "1") == "0":
        return 0
    if any(os.environ.get(v) for v in ("OPENBLAS_THREAD_TIMEOUT", "GOTO_THREAD_TIMEOUT")):
        return 0
    import ctypes
    changed = 0
    for lib in _blas().select(internal_api="openblas").lib_controllers:
        if getattr(lib, "threading_layer", None) != "pthreads":
            continue
        try:
            handle = ctypes.CDLL(lib.filepath)
            read_env, shutdown = handle.openblas_read_env, handle.blas_thread_shutdown_
        except (OSError, AttributeError):           # an OpenBLAS without these symbols
            continue
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(log2_cycles)
        try:
            read_env()
            shutdown()
        finally:
            del os.environ["OPENBLAS_THREAD_TIMEOUT"]
        changed += 1
    return changed


def blas_num_threads():
    """The largest thread count among the loaded BLAS libraries."""
    return max((lib.num_threads for lib in _blas().select(user_api="blas").lib_controllers),
               default=1)


class single_threaded_blas:
    """Inside the block BLAS runs on the calling thread (minitune's pool splits the work).

    Cheap to enter (a C call per BLAS library), so it wraps single ops.
    """

    def __enter__(self):
        _Config.blas_held += 1
        self.libs = _blas().select(user_api="blas").lib_controllers
        self.saved = [lib.num_threads for lib in self.libs]
        for lib, n in zip(self.libs, self.saved):
            if n != 1:
                lib.set_num_threads(1)
        self.active = _Config.active
        return self

    def __exit__(self, *exc):
        _Config.blas_held -= 1
        if _Config.blas_held:
            return
        if _Config.active != self.active:       # the count changed inside: BLAS takes it now
            _blas().limit(limits=_Config.active, user_api="blas")
            return
        for lib, n in zip(self.libs, self.saved):
            if n != 1:
                lib.set_num_threads(n)


def chunk_bounds(n, grain=1, per_thread=4, threads=None):
    """Split ``range(n)`` into contiguous chunks for the pool: about ``per_thread`` chunks per
    thread (so a slow thread can be made up for), none shorter than ``grain`` items.

    ``threads``: the thread count to cut for; default the threads active now. A reduction
    passes ``num_threads()`` (``reduction_bounds``), so that its partial sums, and the order
    they are added in, depend on the thread setting only, never on how busy the machine is.

    Returns a list of (lo, hi) pairs covering [0, n) in order.
    """
    if threads is None:
        threads = active_threads()
    parts = 1 if threads == 1 else max(1, min(n // max(grain, 1), threads * per_thread))
    edges = even_edges(n, parts)
    return [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]


def even_edges(n, parts):
    """[0, ..., n]: the edges of ``parts`` near-equal pieces of ``range(n)``. Integer
    arithmetic: np.linspace took 25 us a call, 6 ms of a training step on one thread while the
    others waited (it runs before every parallel op)."""
    return [n * i // parts for i in range(parts + 1)]


def parallel_for(kernel, n, *args, grain=1, bounds=None):
    """Run ``kernel(c, lo, hi, *args)`` for every chunk c = (lo, hi) of ``range(n)``.

    The chunks are ``bounds`` when given (a reduction sizes its ``partial`` array from them:
    ``reduction_bounds``), else ``chunk_bounds(n, grain)``. The calling thread and the pool's
    threads take chunks one after another until none is left. A kernel must release the GIL (numba
    ``nogil=True``, or numpy calls on large arrays) and write only to its own rows, or to
    ``partial[c]`` for a reduction. Returns the number of chunks.
    """
    if bounds is None:
        bounds = chunk_bounds(n, grain)
    if not bounds:                                  # nothing to do (n = 0)
        return 0
    if len(bounds) == 1:
        kernel(0, 0, n, *args)
        return 1
    threads = min(active_threads(), len(bounds))
    errors = []
    run_with_helpers(chunk_taker(kernel, bounds, args, threads, errors), threads - 1)
    if errors:
        raise errors[0]
    return len(bounds)


def chunk_taker(kernel, bounds, args, threads, errors):
    """parallel_for's job for ``threads`` threads: ``job(t)`` runs ``kernel(c, lo, hi, *args)``
    for chunks c of ``bounds`` until none is left, appending what a kernel raises to
    ``errors``. Thread t first takes, in order, the chunks of the t-th of ``threads`` equal
    parts of the list, then the other parts' last chunks."""
    if AFFINITY:
        edges = even_edges(len(bounds), threads)
        queues = [deque(range(edges[t], edges[t + 1])) for t in range(threads)]
    else:
        queues = [deque(range(len(bounds)))] * threads

    def job(t):
        try:
            own = queues[t]
            while own:
                try:
                    c = own.popleft()               # atomic: no two threads get one chunk
                except IndexError:
                    break
                kernel(c, *bounds[c], *args)
            for i in range(1, threads):
                other = queues[(t + i) % threads]
                while other:
                    try:
                        c = other.pop()
                    except IndexError:
                        break
                    kernel(c, *bounds[c], *args)
        except BaseException as e:                  # noqa: BLE001 -- re-raised by the caller
            errors.append(e)
    return job


# Each thread starts on its own part of the chunks (chunk_taker): the part of the rows it
# computed in the op before, since every op cuts its rows the same way -- those of them still
# in its core's L2 cache are read from there. False: all threads take the next chunk of one
# list, as before 2026-12-01 (``bench_bert.py --ab affinity``; changes no result).
AFFINITY = True


def run_with_helpers(job, count):
    """``job(0)`` on the calling thread while ``count`` of the pool's threads run ``job(1)``,
    ..., ``job(count)``; returns when all have returned. ``job`` must not raise
    (parallel_for's catches what its kernels raise).

    When the pool is in use already -- parallel_for called from two Python threads at once, or
    from inside a kernel -- the caller runs ``job(0)`` alone: ``job(0)`` must then do all the
    work itself, as parallel_for's does (it takes the others' chunks when its own are done)."""
    if count < 1 or not _Config.pool_lock.acquire(blocking=False):
        job(0)
        return
    try:
        while len(_Config.helpers) < count:
            _Config.helpers.append(_Helper(f"minitune-cpu_{len(_Config.helpers)}"))
        helpers = _Config.helpers[:count]
        for t, helper in enumerate(helpers, 1):
            helper.start(job, t)
        try:
            job(0)
        finally:
            for helper in helpers:
                helper.wait()
    finally:
        _Config.pool_lock.release()


class _Helper:
    """One thread of the pool. It sleeps on its ``go`` lock; ``start(job)`` hands it a job and
    releases ``go``; the thread runs the job and releases ``done``, which ``wait()`` takes.

    Two plain locks used as semaphores are the cheapest hand-off CPython offers between
    threads: measured, a parallel_for of two 10 us chunks took 39 us against 67-70 us through a
    ThreadPoolExecutor, whose submit and result go through a queue, a Future and a condition
    variable (docs/performance.md). A step makes some 150 of these hand-offs."""

    def __init__(self, name):
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.job, self.arg = None, None
        self.waiting = False             # a job handed over and not yet waited for
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            self.go.acquire()
            try:
                self.job(self.arg)
            except BaseException:        # noqa: BLE001 -- the jobs catch their own errors;
                pass                     # this only keeps the thread (and the pool) alive
            finally:
                self.job = None
                self.done.release()

    def start(self, job, arg=None):
        if self.waiting:                 # a wait() that was interrupted (Ctrl-C): the last
            self.wait()                  # job must end before this thread takes another
        self.job, self.arg = job, arg
        self.waiting = True
        self.go.release()

    def wait(self):
        self.done.acquire()
        self.waiting = False


def _forget_pool_after_fork():
    """A forked child has only the thread that forked: the pool's threads are gone (and the
    pool's lock may be held by a thread that no longer exists). The child starts a pool of its
    own when it first needs one."""
    _Config.helpers = []
    _Config.pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def reduction_bounds(n, grain=1):
    """The chunks of a reduction over ``range(n)``: one ``partial[c]`` row per chunk, summed
    after ``parallel_for(..., bounds=...)``. Cut for ``num_threads()``, not the threads active
    now, so a busy machine changes who computes the chunks, not the sum's bits."""
    return chunk_bounds(n, grain, threads=_Config.threads)

