"""Sharding and gradient buckets, in one process (the multi-process runs: test_mpi.py)."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minitune import data as D
from minitune.distributed import (DataParallel, DistributedError, GradientBuckets,
                                  SingleProcess, communicator, dist_timeout,
                                  launched_world_size, shard_bounds)
from minitune.distributed.data_parallel import _disagreements
from minitune.nn.module import Parameter


@given(st.integers(0, 200), st.integers(1, 9))
def test_shard_bounds_cover_every_item_once_in_order(n, size):
    parts = [range(*shard_bounds(n, r, size)) for r in range(size)]
    assert [i for p in parts for i in p] == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def _examples(n, rng):
    return [{"input_ids": list(rng.integers(5, 50, rng.integers(1, 9))), "label": i % 3}
            for i in range(n)]


@given(st.integers(1, 45), st.integers(1, 12), st.integers(1, 4), st.booleans())
def test_sharded_loader_visits_every_example_once_per_epoch(n, batch_size, size, grouped):
    """Across the ranks, each global batch is exactly the single-process batch (same examples,
    same order, uneven and empty shares included), so each epoch covers every example once."""
    examples = _examples(n, np.random.default_rng(n))
    single = D.DataLoader(examples, batch_size, shuffle=True, seed=3, group_by_length=grouped)
    ranks = []
    for r in range(size):
        loader = D.DataLoader(examples, batch_size, shuffle=True, seed=3,
                              group_by_length=grouped)
        loader.shard(r, size)
        ranks.append(loader)
    for epoch in range(2):
        seen = []
        for _ in range(len(single)):
            whole = single.next_batch()
            parts = [loader.next_batch() for loader in ranks]
            assert np.array_equal(np.concatenate([p.indices for p in parts]), whole.indices)
            for p in parts:
                if len(p.indices):
                    assert np.array_equal(p["labels"], whole["labels"][np.isin(whole.indices,
                                                                               p.indices)])
                else:
                    assert p["input_ids"].shape == (0, 0)
            seen.extend(whole.indices.tolist())
        assert sorted(seen) == list(range(n)), f"epoch {epoch}"
        assert all(loader.state_dict() == single.state_dict() for loader in ranks)


def test_shard_rejects_a_rank_outside_the_world():
    loader = D.DataLoader(_examples(4, np.random.default_rng(0)), 2)
    with pytest.raises(ValueError, match="rank 2 is outside 0..1"):
        loader.shard(2, 2)


def _params(shapes, rng):
    return [Parameter(rng.standard_normal(s).astype(np.float32)) for s in shapes]


def test_buckets_group_parameters_in_reverse_order_and_keep_big_ones_alone():
    rng = np.random.default_rng(0)
    # 4-byte floats: 1 MB = 262144 numbers; a bucket of 1 MB
    params = _params([(512, 1024), (10,), (300, 300), (200, 1000), (7,)], rng)
    buckets = GradientBuckets(params, SingleProcess(), bucket_mb=1.0)
    position = {id(p): i for i, p in enumerate(params)}
    layout = [[position[id(p)] for p, _, _ in slots] for _, slots in buckets.buckets]
    assert layout == [[4, 3], [2, 1], [0]]
    assert sum(buf.size for buf, _ in buckets.buckets) == sum(p.data.size for p in params)
    assert buckets.sizes_mb[2] == 2.0


def test_bucket_reduce_scales_fills_missing_grads_and_leaves_views():
    rng = np.random.default_rng(1)
    params = _params([(3, 4), (5,), (2, 2)], rng)
    grads = [rng.standard_normal(p.data.shape).astype(np.float32) for p in params]
    for p, g in zip(params, grads):
        p.grad = g.copy()
    params[1].grad = None                      # e.g. a head this rank's share did not reach
    buckets = GradientBuckets(params, SingleProcess(), bucket_mb=1.0)
    buckets.reduce(0.25)
    np.testing.assert_array_equal(params[0].grad, grads[0] * np.float32(0.25))
    np.testing.assert_array_equal(params[1].grad, np.zeros(5, np.float32))
    np.testing.assert_array_equal(params[2].grad, grads[2] * np.float32(0.25))
    buffer = buckets.buckets[0][0]
    assert all(np.shares_memory(p.grad, buffer) for p in params)
    assert params[0].grad.shape == (3, 4) and params[0].grad.dtype == np.float32


def test_single_process_step_is_the_identity():
    dp = DataParallel(SingleProcess())
    n, loss = dp.sync_step(7, 0.5)
    assert (n, loss) == (7, 0.5)
    assert dp.gather([1, 2]) == [1, 2] and dp.my_share(5) == slice(0, 5)
    assert not dp.any(False) and dp.any(True) and dp.any(True, False) == (True, False)
    assert dp.is_writer


def test_disagreeing_ranks_are_named():
    assert _disagreements([{"a": 1}, {"a": 1}]) is None
    msg = _disagreements([{"a": 1, "n": 40}, {"a": 1, "n": 40}, {"a": 1, "n": 48}])
    assert "n: 40 on rank 0, 48 on rank 2" in msg and "rank 1" not in msg


def test_launcher_environment_is_read_without_mpi(monkeypatch):
    assert launched_world_size({}) == 1
    assert launched_world_size({"PMI_SIZE": "4"}) == 4
    assert launched_world_size({"OMPI_COMM_WORLD_SIZE": "3"}) == 3
    assert dist_timeout({}) == 300.0 and dist_timeout({"MINITUNE_DIST_TIMEOUT": "0"}) == 0
    with pytest.raises(DistributedError, match="MINITUNE_DIST_TIMEOUT='soon'"):
        dist_timeout({"MINITUNE_DIST_TIMEOUT": "soon"})
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert isinstance(communicator(), SingleProcess)


def test_the_single_process_path_imports_no_mpi():
    code = ("import sys, minitune, minitune.distributed, minitune.data, minitune.train, "
            "minitune.cli; from minitune.distributed import communicator; communicator(); "
            "print(sorted(m for m in sys.modules if m.startswith('mpi4py')))")
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_the_writers_own_exception_is_raised_on_the_writer():
    """Rank 0 raises the very exception ``fn`` raised (an OSError keeps its errno and file
    name for the CLI's message); other ranks get one of the same type and message."""
    from minitune.distributed.comm import SingleProcess

    error = OSError(28, "No space left on device", "runs/x")

    def fn():
        raise error
    with pytest.raises(OSError) as info:
        DataParallel(SingleProcess()).on_writer(fn)
    assert info.value is error and info.value.filename == "runs/x"


def test_only_an_error_every_rank_raised_ends_without_mpi_abort(monkeypatch):
    """``abort_job`` under a launcher: a lone rank's error aborts the job (after a grace for
    the launcher to forward its output); an error marked ``on_every_rank`` -- rank 0's
    broadcast verdict, raised alike everywhere -- lets each rank exit by itself, so that no
    MPI_Abort can cut off the ranks' messages (it once did: both ranks' refusal of a taken
    --out never reached the captured stderr)."""
    import types

    from minitune.distributed import abort_job, on_every_rank
    from minitune.distributed import comm

    aborted = []
    fake = types.SimpleNamespace(Is_initialized=lambda: True,
                                 COMM_WORLD=types.SimpleNamespace(Abort=aborted.append))
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", fake)
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setattr(comm, "ABORT_GRACE_S", 0.0)
    abort_job(2, on_every_rank(OSError("output directory runs/x holds another run")))
    assert aborted == []
    abort_job(2, OSError("cannot read train.tsv"))            # this rank alone
    assert aborted == [2]

    def fn():
        raise ValueError("bad --out")
    with pytest.raises(ValueError) as info:
        DataParallel(SingleProcess()).on_writer(fn)
    assert info.value.on_every_rank                            # marked where it is raised
