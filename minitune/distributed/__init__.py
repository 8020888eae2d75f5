"""Data-parallel fine-tuning over MPI (``mpirun -n N minitune train ...``); docs/distributed.md.

Importing this package imports no MPI library: mpi4py is loaded only when a launcher started
several processes (``communicator()``), so the single-process path needs no extra.
"""
from .buckets import GradientBuckets
from .comm import (DistributedError, MPICommunicator, SingleProcess, StoppedTogether,
                   abort_job, communicator, dist_timeout, launched_rank, launched_world_size,
                   on_every_rank)
from .data_parallel import DataParallel, shard_bounds

__all__ = ["DataParallel", "DistributedError", "GradientBuckets", "MPICommunicator",
           "SingleProcess", "StoppedTogether", "abort_job", "communicator", "dist_timeout",
           "launched_rank", "launched_world_size", "on_every_rank", "shard_bounds"]
