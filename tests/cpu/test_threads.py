"""minitune.cpu.threads: one place for the thread count; the pool's chunking and errors."""
import os
import threading
import time

import numpy as np
import pytest

from minitune.cpu import threads


@pytest.fixture
def restore_threads():
    before = threads.num_threads()
    threads.set_adaptive(False)
    yield
    threads.set_adaptive(True)
    threads.set_num_threads(before)


def test_set_num_threads_sets_blas_and_the_pool(restore_threads):
    threads.set_num_threads(1)
    assert threads.num_threads() == 1 and threads.blas_num_threads() == 1
    threads.set_num_threads(2)
    assert threads.num_threads() == 2 and threads.blas_num_threads() == 2
    with threads.single_threaded_blas():
        assert threads.blas_num_threads() == 1
    assert threads.blas_num_threads() == 2
    with pytest.raises(ValueError, match="at least 1"):
        threads.set_num_threads(0)


@pytest.mark.parametrize("n, grain", [(0, 1), (1, 1), (5, 1), (1000, 7), (1000, 1000)])
def test_parallel_for_covers_every_item_once(n, grain, restore_threads):
    threads.set_num_threads(2)
    hits = np.zeros(n, np.int64)
    seen = set()

    def kernel(c, lo, hi):
        hits[lo:hi] += 1
        seen.add(threading.get_ident())
    chunks = threads.parallel_for(kernel, n, grain=grain)
    assert (hits == 1).all()
    assert chunks == len(threads.chunk_bounds(n, grain)) <= max(1, 4 * 2)
    assert all(hi - lo >= min(grain, n) for lo, hi in threads.chunk_bounds(n, grain))


def test_parallel_for_reraises_a_kernels_error(restore_threads):
    threads.set_num_threads(2)

    def kernel(c, lo, hi):
        if c == 3:
            raise ZeroDivisionError("chunk 3")
    with pytest.raises(ZeroDivisionError, match="chunk 3"):
        threads.parallel_for(kernel, 100)


def test_a_thread_done_with_its_own_chunks_takes_the_others_last_ones(restore_threads):
    """Each thread starts on its own part of the chunks (the caller: the first half at two
    threads); one whose part is done takes the others' last chunks, so a slow thread still
    does less of the work. Here the caller's first chunk holds it until the helper has taken
    one of the caller's other chunks (or 10 s have passed, and the test fails)."""
    threads.set_num_threads(2)
    main = threading.get_ident()
    ran_by, helper_order = {}, []
    stolen = threading.Event()

    def kernel(c, lo, hi):
        ran_by[c] = threading.get_ident()
        if ran_by[c] != main:
            helper_order.append(c)
        if c == 0:
            stolen.wait(timeout=10)
        elif c < 4 and ran_by[c] != main:
            stolen.set()
    bounds = [(c, c + 1) for c in range(8)]
    threads.parallel_for(kernel, 8, bounds=bounds)
    assert sorted(ran_by) == list(range(8))
    assert ran_by[0] == main                            # the caller starts on its own part
    assert stolen.is_set()                              # the helper took some of it,
    assert helper_order[:5] == [4, 5, 6, 7, 3]          # its own part first, then the end


def test_parallel_for_from_two_threads_at_once_covers_every_item(restore_threads):
    """The pool serves one parallel_for at a time; a second one, from another Python thread,
    runs on its own caller meanwhile -- and each covers all of its items."""
    threads.set_num_threads(2)
    n = 200
    hits = {name: np.zeros(n, np.int64) for name in ("a", "b")}
    errors = []

    def run(name):
        def kernel(c, lo, hi):
            time.sleep(0.0005)                          # lets the other caller interleave
            hits[name][lo:hi] += 1
        try:
            for _ in range(20):
                threads.parallel_for(kernel, n, grain=5)
        except BaseException as e:                      # noqa: BLE001
            errors.append(e)
    others = [threading.Thread(target=run, args=(name,)) for name in hits]
    for t in others:
        t.start()
    for t in others:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in others)
    assert all((h == 20).all() for h in hits.values())


def test_a_parallel_for_inside_a_kernel_runs_on_its_caller(restore_threads):
    threads.set_num_threads(2)
    hits = np.zeros((4, 100), np.int64)

    def inner(c, lo, hi, row):
        hits[row, lo:hi] += 1

    def outer(c, lo, hi):
        for row in range(lo, hi):
            threads.parallel_for(inner, 100, row, grain=10)
    threads.parallel_for(outer, 4)
    assert (hits == 1).all()


def test_a_helper_finishes_its_last_job_before_taking_the_next(restore_threads):
    """A wait() cut short (Ctrl-C in the caller) leaves a job running: the helper's next
    start() waits for it first, so two jobs never share the thread and no release is lost."""
    helper = threads._Helper("test-helper")
    order = []
    helper.start(lambda _: (time.sleep(0.05), order.append("first")))
    helper.start(lambda _: order.append("second"))       # no wait() in between
    helper.wait()
    assert order == ["first", "second"]
    helper.start(lambda _: 1 / 0)                         # a job that raises keeps the thread
    helper.wait()
    helper.start(lambda t: order.append(("third", t)), 7)
    helper.wait()
    assert order[-1] == ("third", 7)


def test_one_thread_runs_everything_on_the_caller(restore_threads):
    threads.set_num_threads(1)
    idents = set()
    threads.parallel_for(lambda c, lo, hi: idents.add(threading.get_ident()), 100)
    assert idents == {threading.get_ident()}


def test_one_thread_runs_given_bounds_of_several_chunks_on_the_caller(restore_threads):
    """Explicit bounds (cpu/adam.py: one chunk per piece) at one thread: every chunk, in
    order, on the calling thread, and no pool (one of no workers cannot be made)."""
    threads.set_num_threads(1)
    seen = []
    bounds = [(0, 3), (3, 4), (4, 9)]
    n = threads.parallel_for(lambda c, lo, hi: seen.append((c, lo, hi, threading.get_ident())),
                             9, bounds=bounds)
    assert n == 3
    assert seen == [(c, lo, hi, threading.get_ident()) for c, (lo, hi) in enumerate(bounds)]


@pytest.mark.parametrize("n_threads", [1, 2])
def test_nothing_to_do_runs_nothing(restore_threads, n_threads):
    """n = 0 (an empty batch): no chunk, no kernel call, no pool -- at one thread the pool
    would have no workers to make."""
    threads.set_num_threads(n_threads)
    calls = []
    assert threads.parallel_for(lambda c, lo, hi: calls.append(c), 0) == 0
    assert calls == []


def test_bad_environment_value_is_named(monkeypatch):
    monkeypatch.setenv("MINITUNE_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="MINITUNE_NUM_THREADS"):
        threads._default_threads()


def test_fewer_threads_while_other_processes_keep_cores_busy(restore_threads, monkeypatch):
    threads.set_num_threads(2)
    threads.set_adaptive(True)
    clock = {"wall": 100.0, "busy": 1000.0}
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(threads.time, "process_time", lambda: 5.0)     # we use no CPU
    monkeypatch.setattr(threads, "_machine_busy_seconds", lambda: clock["busy"])
    assert threads.active_threads() == 2                    # first reading: nothing known
    for _ in range(4):                                      # others keep 1.9 cores busy
        clock["wall"] += 1.0
        clock["busy"] += 1.9
        threads.active_threads()
    assert threads.active_threads() == 1 and threads.blas_num_threads() == 1
    assert len(threads.chunk_bounds(1000)) == 1
    assert len(threads.reduction_bounds(1000)) == 8         # cut for the setting, not the load
    for _ in range(4):                                      # they stop
        clock["wall"] += 1.0
        threads.active_threads()
    assert threads.active_threads() == 2 and threads.blas_num_threads() == 2


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.delenv("MINITUNE_NUM_THREADS", raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert threads._default_threads() == 3
    monkeypatch.setenv("MINITUNE_NUM_THREADS", "1")
    assert threads._default_threads() == 1


def test_a_forked_child_computes_with_a_pool_of_its_own(restore_threads):
    """After fork only the forking thread exists: the child must not wait for the parent's
    pool threads (the hang this guards against took the crash-injection tests, which fork)."""
    threads.set_num_threads(2)

    def kernel(c, lo, hi, out):
        out[c] = hi - lo

    bounds = threads.reduction_bounds(1000)
    partial = np.zeros(len(bounds))
    threads.parallel_for(kernel, 1000, partial, bounds=bounds)   # the parent's pool starts
    pid = os.fork()
    if pid == 0:                                            # the child: exit 0 on success
        code = 1
        try:
            partial[:] = 0
            threads.parallel_for(kernel, 1000, partial, bounds=bounds)
            code = 0 if partial.sum() == 1000 else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child hung in parallel_for")


def _openblas_libs():
    return [lib for lib in threads._blas().select(internal_api="openblas").lib_controllers
            if getattr(lib, "threading_layer", None) == "pthreads"]


def test_shorten_blas_spin_restarts_openblas_with_the_short_timeout(restore_threads):
    import ctypes
    libs = _openblas_libs()
    if not libs:
        pytest.skip("numpy's BLAS is not OpenBLAS with pthreads")
    threads.set_num_threads(2)
    try:
        assert threads.shorten_blas_spin(12) == len(libs)
        assert "OPENBLAS_THREAD_TIMEOUT" not in os.environ        # not left for children
        for lib in libs:
            assert ctypes.CDLL(lib.filepath).openblas_thread_timeout() == 12
        rng = np.random.default_rng(0)                            # the workers come back
        a, b = rng.standard_normal((800, 600)), rng.standard_normal((600, 700))   # threaded
        expected = np.einsum("ik,kj->ij", a, b)
        for _ in range(3):
            np.testing.assert_allclose(a @ b, expected, rtol=1e-10, atol=1e-10)
    finally:
        threads.shorten_blas_spin()


def test_shorten_blas_spin_leaves_a_users_setting(monkeypatch):
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "20")
    assert threads.shorten_blas_spin() == 0
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT")
    monkeypatch.setenv("MINITUNE_BLAS_SPIN", "0")
    assert threads.shorten_blas_spin() == 0


def test_minitune_imports_and_trains_without_threadpoolctl_or_numba():
    """tools/gpu_check.sh runs a checkout from PYTHONPATH on a machine that may lack the CPU
    extras: without threadpoolctl (and numba) the references run, the BLAS keeps its threads."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['threadpoolctl'] = None; sys.modules['numba'] = None\n"
            "import numpy as np, minitune as mt, minitune.functional as F\n"
            "from minitune.cpu import threads\n"
            "threads.set_num_threads(2)\n"
            "x = mt.tensor(np.ones((4, 3)), requires_grad=True)\n"
            "w = mt.tensor(np.ones((2, 3)), requires_grad=True)\n"
            "F.cross_entropy(F.gelu(F.linear(x, w)), np.array([0, 1, 1, 0])).backward()\n"
            "print(sorted(mt.cpu.FUSED), threads.blas_num_threads(), w.grad.shape)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "1", "(2,", "3)"]


def busy_clock(monkeypatch):
    """A machine whose other processes keep ``clock["others"]`` cores busy, advanced by hand."""
    clock = {"wall": 100.0, "busy": 1000.0, "others": 0.0}
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(threads.time, "process_time", lambda: 5.0)
    monkeypatch.setattr(threads, "_machine_busy_seconds", lambda: clock["busy"])

    def advance():
        clock["wall"] += 1.0
        clock["busy"] += clock["others"]
    return clock, advance


def test_a_load_change_mid_reduction_neither_overruns_nor_changes_the_sum(restore_threads,
                                                                         monkeypatch):
    """Reductions size partial[] from reduction_bounds and hand parallel_for the same chunks:
    the load changing between the two (the thread count going up) must not make more chunks
    than partial rows -- numba writes past an array's end unchecked -- and the chunks, so
    the sum's bits, must not depend on the load."""
    threads.set_num_threads(2)
    threads.set_adaptive(True)
    clock, advance = busy_clock(monkeypatch)
    clock["others"] = 1.9
    for _ in range(4):
        advance()
        threads.active_threads()
    assert threads.active_threads() == 1
    bounds = threads.reduction_bounds(1000, 10)
    clock["others"] = 0.0                                 # the others stop before the call
    for _ in range(4):
        advance()
        threads.active_threads()
    assert threads.active_threads() == 2
    seen = []
    threads.parallel_for(lambda c, lo, hi: seen.append((c, lo, hi)), 1000, bounds=bounds)
    assert sorted(seen) == [(c, lo, hi) for c, (lo, hi) in enumerate(bounds)]
    assert bounds == threads.reduction_bounds(1000, 10)


def test_blas_takes_a_thread_count_that_changed_inside_single_threaded_blas(restore_threads,
                                                                            monkeypatch):
    """Inside the block BLAS stays at one thread even if the load changes the count; when it
    ends BLAS gets the count now in force, not the one from before the block."""
    threads.set_num_threads(2)
    threads.set_adaptive(True)
    clock, advance = busy_clock(monkeypatch)
    assert threads.active_threads() == 2 and threads.blas_num_threads() == 2
    def load_changes_inside_the_block(others):
        clock["others"] = others
        with threads.single_threaded_blas():
            for _ in range(4):                            # readings settle on the new load
                advance()
                threads.active_threads()
            assert threads.blas_num_threads() == 1
            return threads.active_threads()

    assert load_changes_inside_the_block(1.9) == 1
    assert threads.blas_num_threads() == 1                # the busy machine's count
    assert load_changes_inside_the_block(0.0) == 2
    assert threads.blas_num_threads() == 2


@pytest.mark.parametrize("n", [0, 1, 7, 122, 230, 4096, 19_999])
@pytest.mark.parametrize("parts", [1, 2, 3, 8, 14, 64])
def test_even_edges_cut_range_n_into_parts_that_differ_by_at_most_one(n, parts):
    edges = threads.even_edges(n, parts)
    assert len(edges) == parts + 1 and edges[0] == 0 and edges[-1] == n
    sizes = [hi - lo for lo, hi in zip(edges[:-1], edges[1:])]
    assert min(sizes) >= 0 and max(sizes) - min(sizes) <= 1
    assert all(isinstance(e, int) for e in edges)
