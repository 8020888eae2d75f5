"""``minitune`` under mpirun for tests/distributed/test_mpi.py, with one test-only addition:
with MINITUNE_TEST_SIGINT="RANK:STEP", rank RANK sends itself SIGINT (a Ctrl-C that only
this process sees) while it fetches the batch of step STEP."""
import os
import signal
import sys

from minitune import cli
from minitune.data import DataLoader
from minitune.distributed import launched_rank

if os.environ.get("MINITUNE_TEST_SIGINT"):
    rank, step = (int(x) for x in os.environ["MINITUNE_TEST_SIGINT"].split(":"))
    real_next, calls = DataLoader.next_batch, [0]

    def interrupting_next(loader):
        calls[0] += 1
        if calls[0] == step and launched_rank() == rank:
            signal.raise_signal(signal.SIGINT)
        return real_next(loader)

    DataLoader.next_batch = interrupting_next

sys.exit(cli.main(sys.argv[1:]))
