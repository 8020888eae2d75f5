"""Communicators: the one place where the process group and its transport are chosen.

``communicator()`` looks at the environment that a launcher (``mpirun``/``mpiexec``, ``srun``)
gives each process and returns:

* ``SingleProcess`` when nothing launched several processes: no MPI import, every collective
  is the identity. The single-process run does not even create one (see ``train``).
* ``MPICommunicator`` (mpi4py) for NumPy arrays. GPU (CuPy) arrays are copied to the host,
  reduced there and copied back, which works with any MPI and any number of ranks per GPU.
* ``NCCLCommunicator`` (``cupy.cuda.nccl``) when the run is on GPUs, one GPU per rank: GPU
  arrays are reduced by NCCL on the device; MPI still starts the job, carries the NCCL id and
  the small host-side messages. NCCL refuses two ranks on one GPU, hence the host path above.

Every communicator offers the same few collectives, in place on contiguous arrays:
``allreduce_sum``, ``broadcast``, plus ``allgather_object``/``bcast_object`` for small Python
values (the predictions of an evaluation, a start-up fingerprint).

A rank that never arrives would leave the others blocked forever inside MPI. So every
collective runs under a watchdog: a rank that has waited ``timeout`` seconds (the environment
variable MINITUNE_DIST_TIMEOUT, default 300; 0 turns it off) in one collective prints which
collective it was waiting in and aborts the whole job (MPI_Abort), instead of hanging.
"""
import os
import sys
import threading
import time
from contextlib import contextmanager

from ..backend import is_cupy_array

# What each launcher tells its processes: (variable holding the world size, ... the rank).
# MPICH/Intel MPI (hydra) and Slurm's PMI set PMI_*, Open MPI OMPI_COMM_WORLD_*, MVAPICH MV2_*.
LAUNCHER_VARS = (("PMI_SIZE", "PMI_RANK"), ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
                 ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"))
TIMEOUT_VAR = "MINITUNE_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 300.0
ABORT_GRACE_S = 0.5          # MPI_Abort kills at once; the launcher may not have read stderr


class DistributedError(RuntimeError):
    """The processes of a data-parallel run cannot work together (missing mpi4py, a rank that
    does not start, ranks that disagree on the data or the arguments)."""


class StoppedTogether(KeyboardInterrupt):
    """Every rank of a data-parallel run stopped after the same step (Ctrl-C on one of them):
    the checkpoint is saved and the processes may exit normally."""


def abort_job(code, error=None):
    """After an error on this rank of a multi-process run, end every rank (MPI_Abort): a rank
    that merely exits leaves the others waiting inside MPI forever. A no-op in one process,
    and for an ``error`` that every rank raised alike (``on_every_rank``): then each rank
    exits by itself, and none of them loses its last lines to the abort's kill."""
    if error is not None and getattr(error, "on_every_rank", False):
        return
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and launched_world_size() > 1 and mpi.Is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        _grace()
        mpi.COMM_WORLD.Abort(code)


def _grace():
    """Wait ABORT_GRACE_S before an MPI_Abort, so that the launcher forwards this rank's last
    lines first. A second Ctrl-C meanwhile must not skip the abort (the other ranks would
    then wait for this one)."""
    try:
        time.sleep(ABORT_GRACE_S)
    except KeyboardInterrupt:
        pass


def on_every_rank(error):
    """Mark ``error`` as raised alike on every rank at the same point (rank 0's verdict,
    broadcast): the ranks can all exit normally, so ``abort_job`` leaves them to it. (An
    exception type that takes no attributes stays unmarked, and the job is aborted as before.)"""
    try:
        error.on_every_rank = True
    except AttributeError:
        pass
    return error


def launched_rank(environ=os.environ):
    """This process's rank as its launcher says (0 when run directly); reads no MPI."""
    for _, rank_var in LAUNCHER_VARS:
        if environ.get(rank_var):
            return int(environ[rank_var])
    return 0


def launched_world_size(environ=os.environ):
    """The number of processes a launcher started, read from its environment (1 when run
    directly). Reads no MPI library, so a single-process run never imports mpi4py."""
    for size_var, _ in LAUNCHER_VARS:
        if environ.get(size_var):
            return int(environ[size_var])
    return 1


def dist_timeout(environ=os.environ):
    """Seconds a rank may wait in one collective before the job is aborted (0: forever)."""
    value = environ.get(TIMEOUT_VAR, "")
    try:
        timeout = float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        raise DistributedError(f"{TIMEOUT_VAR}={value!r} is not a number of seconds") from None
    return timeout


def communicator(device="cpu"):
    """The communicator for this process: SingleProcess when no launcher started several
    processes, else MPI (CPU) or NCCL (``device`` "gpu", when cupy has NCCL)."""
    size = launched_world_size()
    if size <= 1:
        return SingleProcess()
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(
            f"this process is one of {size} started by an MPI launcher, but mpi4py cannot be "
            f"imported ({e}). Install the MPI extra: pip install 'minitune[mpi]'") from None
    world = MPI.COMM_WORLD
    if world.Get_size() != size:
        raise DistributedError(
            f"the launcher started {size} processes but mpi4py's MPI sees "
            f"{world.Get_size()}: the mpirun on PATH belongs to another MPI than the one mpi4py "
            f"uses ({MPI.Get_library_version().splitlines()[0].strip()}). Use the mpirun that "
            f"comes with it (in the same environment's bin/)")
    if device in ("gpu", "cuda"):
        return _gpu_communicator(MPI, world)
    return MPICommunicator(MPI, world)


class SingleProcess:
    """One process: every collective is the identity."""

    rank, size, local_rank, local_size = 0, 1, 0, 1
    transport = "none"

    def allreduce_sum(self, array, what="all-reduce"):
        return array

    def broadcast(self, array, root=0, what="broadcast"):
        return array

    def allgather_object(self, obj, what="all-gather"):
        return [obj]

    def bcast_object(self, obj, root=0, what="broadcast"):
        return obj

    def gather_from_all(self, obj, timeout, what):
        return [obj]

    def abort(self, code=1):
        sys.exit(code)


class MPICommunicator:
    """Collectives over mpi4py's COMM_WORLD. Arrays are reduced in place; GPU arrays go
    through a host copy (see the module docstring)."""

    transport = "mpi"

    def __init__(self, MPI, comm, timeout=None):
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = dist_timeout() if timeout is None else timeout
        self._watchdog = _Watchdog(self) if self.timeout > 0 else None
        self._local = None

    def _local_group(self):
        """(rank among the ranks on this machine, their number). A collective, so it is
        asked only when needed (choosing a GPU), never before the start-up handshake."""
        if self._local is None:
            with self._waiting("finding the ranks on this machine"):
                local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED, key=self.rank)
            self._local = (local.Get_rank(), local.Get_size())
            local.Free()
        return self._local

    @property
    def local_rank(self):
        return self._local_group()[0]

    @property
    def local_size(self):
        return self._local_group()[1]

    def allreduce_sum(self, array, what="all-reduce"):
        """array <- the sum of every rank's array, in place; returns array."""
        if is_cupy_array(array):
            host = array.get()
            with self._waiting(what):
                self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
            array.set(host)
            return array
        with self._waiting(what):
            self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        return array

    def broadcast(self, array, root=0, what="broadcast"):
        """array <- root's array, in place; returns array."""
        if is_cupy_array(array):
            host = array.get()
            with self._waiting(what):
                self.comm.Bcast(host, root=root)
            array.set(host)
            return array
        with self._waiting(what):
            self.comm.Bcast(array, root=root)
        return array

    def allgather_object(self, obj, what="all-gather"):
        """[obj of rank 0, obj of rank 1, ...] on every rank (small picklable values)."""
        with self._waiting(what):
            return self.comm.allgather(obj)

    def bcast_object(self, obj, root=0, what="broadcast"):
        with self._waiting(what):
            return self.comm.bcast(obj, root=root)

    def gather_from_all(self, obj, timeout, what):
        """Rank 0 receives every rank's ``obj`` (returns the list; other ranks return None),
        waiting at most ``timeout`` seconds and naming the ranks that never sent: the
        start-up handshake, where a rank that fails to start must not leave rank 0 hanging."""
        if self.rank != 0:
            with self._waiting(what):
                self.comm.send(obj, dest=0, tag=_TAG_HELLO)
            return None
        requests = {r: self.comm.irecv(source=r, tag=_TAG_HELLO) for r in range(1, self.size)}
        received = {0: obj}
        deadline = time.monotonic() + (timeout if timeout > 0 else float("inf"))
        while requests:
            for r, req in list(requests.items()):
                done, value = req.test()
                if done:
                    received[r] = value
                    del requests[r]
            if requests and time.monotonic() > deadline:
                missing = sorted(requests)
                raise DistributedError(
                    f"{what}: rank(s) {missing} of {self.size} did not report within "
                    f"{timeout:.0f} s ({TIMEOUT_VAR}); they failed to start or are stuck "
                    f"before training (see their output above)")
            time.sleep(0.005)
        return [received[r] for r in range(self.size)]

    def abort(self, code=1):
        """End every rank of the job now (after an error on this one)."""
        sys.stdout.flush()
        sys.stderr.flush()
        _grace()
        self.comm.Abort(code)

    @contextmanager
    def _waiting(self, what):
        if self._watchdog is None:
            yield
            return
        self._watchdog.enter(what)
        try:
            yield
        finally:
            self._watchdog.leave()


_TAG_HELLO = 7001


class _Watchdog:
    """A daemon thread that aborts the job when this rank has waited in one collective for
    longer than the timeout (the other ranks are dead or stuck; MPI itself would wait
    forever). Aborting from a second thread needs MPI_THREAD_MULTIPLE, which mpi4py asks for
    by default; with less, there is no watchdog."""

    def __init__(self, owner):
        self.owner = owner
        self.what, self.since = None, None
        if owner.MPI.Query_thread() < owner.MPI.THREAD_MULTIPLE:
            self.thread = None
            return
        self.thread = threading.Thread(target=self._run, name="minitune-dist-watchdog",
                                       daemon=True)
        self.thread.start()

    def enter(self, what):
        self.what, self.since = what, time.monotonic()

    def leave(self):
        self.since = None

    def _run(self):
        period = min(5.0, self.owner.timeout / 4)
        while True:
            time.sleep(period)
            since = self.since
            if since is not None and time.monotonic() - since > self.owner.timeout:
                print(f"minitune rank {self.owner.rank}/{self.owner.size}: waited more than "
                      f"{self.owner.timeout:.0f} s ({TIMEOUT_VAR}) in '{self.what}'; another "
                      f"rank has died or hangs. Aborting all ranks.", file=sys.stderr,
                      flush=True)
                self.owner.abort(3)


class NCCLCommunicator(MPICommunicator):
    """MPI for start-up and host values, NCCL for GPU arrays (one GPU per rank)."""

    transport = "nccl"

    _DTYPES = {"float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64", "float16": "NCCL_FLOAT16"}

    def __init__(self, base, nccl, cupy):
        self.__dict__.update(base.__dict__)          # the MPI side: ranks, watchdog
        self.nccl, self.cupy = nccl, cupy
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = self.bcast_object(uid, what="NCCL start-up")
        self.nccl_comm = nccl.NcclCommunicator(self.size, uid, self.rank)

    def _nccl_args(self, array):
        if not array.flags.c_contiguous:
            raise ValueError("NCCL collectives need contiguous arrays")
        dtype = getattr(self.nccl, self._DTYPES[array.dtype.name])
        return array.data.ptr, array.size, dtype, self.cupy.cuda.get_current_stream().ptr

    def allreduce_sum(self, array, what="all-reduce"):
        if not is_cupy_array(array):
            return super().allreduce_sum(array, what)
        ptr, count, dtype, stream = self._nccl_args(array)
        with self._waiting(what):
            self.nccl_comm.allReduce(ptr, ptr, count, dtype, self.nccl.NCCL_SUM, stream)
            self.cupy.cuda.get_current_stream().synchronize()
        return array

    def broadcast(self, array, root=0, what="broadcast"):
        if not is_cupy_array(array):
            return super().broadcast(array, root, what)
        ptr, count, dtype, stream = self._nccl_args(array)
        with self._waiting(what):
            self.nccl_comm.bcast(ptr, count, dtype, root, stream)
            self.cupy.cuda.get_current_stream().synchronize()
        return array


def _gpu_communicator(MPI, world):
    """Pick this rank's GPU (local rank modulo the GPUs of its machine) and its transport:
    NCCL when every rank of the machine has its own GPU and cupy has NCCL, else MPI through
    host copies."""
    from .. import backend
    base = MPICommunicator(MPI, world)
    n_gpus = backend.gpu_count()
    if n_gpus == 0:
        raise DistributedError(f"rank {base.rank}: --device cuda but no CUDA device is visible")
    backend.use_gpu(base.local_rank % n_gpus)
    try:
        from cupy.cuda import nccl
        has_nccl = nccl.available if hasattr(nccl, "available") else True
    except ImportError:
        has_nccl = False
    one_gpu_each = base.local_size <= n_gpus
    # every rank must take the same branch: decide on the whole job's view
    use_nccl = all(base.allgather_object(has_nccl and one_gpu_each, what="GPU set-up"))
    if not use_nccl:
        return base
    return NCCLCommunicator(base, nccl, backend.cupy_module())
