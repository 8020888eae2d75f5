"""Autograd engine overhead: minitune against the same arithmetic written in raw NumPy.

Not a test: it prints figures and ratios and asserts nothing.

1. Big GEMM, forward + backward, float32, x (4096, 384), W (1536, 384) -- the shape of BERT's
   intermediate dense layer at 32 x 128 tokens:

       linear:  minitune  y = F.linear(x, W, b); y.backward(gy)
                numpy     y = x @ W.T + b; gx = gy @ W; gW = gy.T @ x; gb = gy.sum(0)
       matmul:  minitune  y = F.matmul(a, B); y.backward(gy)        (a (4096, 384), B (384, 1536))
                numpy     y = a @ B; ga = gy @ B.T; gB = a.T @ gy

   Both sides run in one process, interleaved pair by pair with the order alternating, so
   machine noise hits both alike. The figure to trust is the median of the per-pair ratios
   minitune / numpy (target <= 1.05); the minimum times are printed too.

2. Fixed cost of one tiny op: ``(a * b).backward()`` on one-element float32 tensors, in µs per
   forward + backward, next to the raw NumPy work it contains (target <= 20 µs).

Usage:
    python benchmarks/bench_engine.py                 # about 30 s on 2 cores
    python benchmarks/bench_engine.py --pairs 20 --threads 2
"""
import argparse
import os
import sys


def _threads_from_argv(argv, default=2):
    """--threads N, read before numpy is imported: BLAS sizes its thread pool when it loads."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
    return str(default)


_THREADS = _threads_from_argv(sys.argv)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _THREADS)

import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import minitune as mt  # noqa: E402
import minitune.functional as F  # noqa: E402

N, IN, OUT = 4096, 384, 1536


def numpy_linear(x, w, b, gy):
    y = x @ w.T
    y += b
    gx = gy @ w
    gw = gy.T @ x
    gb = gy.sum(axis=0)
    return y, gx, gw, gb


def minitune_linear(x, w, b, gy):
    x.grad = w.grad = b.grad = None
    y = F.linear(x, w, b)
    y.backward(gy)
    return y, x.grad, w.grad, b.grad


def numpy_matmul(a, bm, gy):
    y = a @ bm
    ga = gy @ bm.T
    gb = a.T @ gy
    return y, ga, gb


def minitune_matmul(a, bm, gy):
    a.grad = bm.grad = None
    y = F.matmul(a, bm)
    y.backward(gy)
    return y, a.grad, bm.grad


def _timed(fn, *args):
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def compare(name, np_fn, np_args, mt_fn, mt_args, pairs):
    """Run both sides ``pairs`` times, interleaved, and print the ratio's median and the mins."""
    np_fn(*np_args), mt_fn(*mt_args)                    # warm-up: BLAS threads, page faults
    t_np, t_mt = [], []
    for i in range(pairs):
        if i % 2 == 0:
            t_np.append(_timed(np_fn, *np_args))
            t_mt.append(_timed(mt_fn, *mt_args))
        else:
            t_mt.append(_timed(mt_fn, *mt_args))
            t_np.append(_timed(np_fn, *np_args))
    ratios = np.array(t_mt) / np.array(t_np)
    print(f"{name:8s} minitune/numpy ratio: median {np.median(ratios):.3f} "
          f"(min {ratios.min():.3f}, max {ratios.max():.3f}) | min time: numpy "
          f"{min(t_np) * 1e3:.1f} ms, minitune {min(t_mt) * 1e3:.1f} ms "
          f"(ratio of mins {min(t_mt) / min(t_np):.3f}) | {pairs} pairs")
    return float(np.median(ratios))


def check_same_results(rng):
    """Both sides compute the same numbers (so the timing compares like with like)."""
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((64, 48), (32, 48), (32,)))
    gy = rng.standard_normal((64, 32)).astype(np.float32)
    ref = numpy_linear(x, w, b, gy)
    got = minitune_linear(*(mt.tensor(a, requires_grad=True) for a in (x, w, b)), gy)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(getattr(g, "data", g), r, rtol=1e-5, atol=1e-5)


def tiny_op_overhead(repeats=7, number=20000):
    """µs per forward + backward of one Mul on (1,) tensors, and of the NumPy work inside it."""
    a = mt.tensor([1.5], requires_grad=True)
    b = mt.tensor([2.0], requires_grad=True)

    def engine():
        a.grad = b.grad = None
        (a * b).backward()

    an, bn = a.data, b.data

    def raw():
        y = an * bn
        gy = np.ones_like(y)
        return gy * bn, gy * an

    results = {}
    for name, fn in (("engine", engine), ("numpy", raw)):
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(number):
                fn()
            best = min(best, (time.perf_counter() - t) / number)
        results[name] = best * 1e6
    print(f"tiny op (a * b on (1,) float32, forward + backward): {results['engine']:.1f} µs "
          f"per call; the NumPy work inside it: {results['numpy']:.1f} µs; engine overhead "
          f"{results['engine'] - results['numpy']:.1f} µs (target <= 20 µs total)")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=15, help="interleaved pairs per GEMM case")
    parser.add_argument("--threads", default=_THREADS, help="BLAS threads (default 2)")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, BLAS threads {_THREADS}, float32, "
          f"x ({N}, {IN}), W ({OUT}, {IN})")
    rng = np.random.default_rng(0)
    check_same_results(rng)

    x = rng.standard_normal((N, IN)).astype(np.float32)
    w = rng.standard_normal((OUT, IN)).astype(np.float32) * 0.05
    b = rng.standard_normal(OUT).astype(np.float32)
    gy = rng.standard_normal((N, OUT)).astype(np.float32)
    tx, tw, tb = (mt.tensor(a, requires_grad=True) for a in (x, w, b))
    compare("linear", numpy_linear, (x, w, b, gy), minitune_linear, (tx, tw, tb, gy), args.pairs)

    bm = np.ascontiguousarray(w.T)                      # (IN, OUT)
    ta, tbm = mt.tensor(x, requires_grad=True), mt.tensor(bm, requires_grad=True)
    compare("matmul", numpy_matmul, (x, bm, gy), minitune_matmul, (ta, tbm, gy), args.pairs)

    tiny_op_overhead()


if __name__ == "__main__":
    main()
