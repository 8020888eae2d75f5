"""The fused float32 bias + GELU kernel (minitune/cpu/gelu.py) against its version at another
git revision: speed, interleaved in one process, and accuracy against the float64 GELU.

The other revision's gelu.py and vecmath.py are taken from git (``git show REV:...``) into a
temporary package that shares this checkout's thread pool; the two kernels then run
alternately on the same (N, I) arrays, forward and backward, at 1 and 2 threads. Printed: the
median and minimum ns per element of each, and the median of the per-round ratios this/other.
Then the max |error| of y and of dy/du against the float64 GELU (library erf) on every 1e-5
of [-10, 10] and on 4 M normal draws of scale 4. With ``--forward-pairs N``, also MiniLM's eval
forward (B 64 x T 128, bench_bert.py's, at --threads) with each kernel in turn as
``cpu.FUSED["gelu"]``, N pairs in alternating order: the median per-pair ratio this/other.

    .venv/bin/python benchmarks/bench_gelu.py [--against main] [--rounds 15] [--rows 8192]
                                              [--forward-pairs 12 --threads 2]
"""
import argparse
import importlib
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minitune import cpu, dispatch  # noqa: E402
from minitune.cpu import gelu, threads  # noqa: E402
from minitune.ops.nn import erf  # noqa: E402


def kernel_at(rev, tmp):
    """minitune/cpu/gelu.py as it was at ``rev``, importable (with that revision's vecmath)."""
    pkg = Path(tmp) / "gelu_at_rev"
    pkg.mkdir()
    for name in ("gelu.py", "vecmath.py"):
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:minitune/cpu/{name}"],
                              check=True, capture_output=True, text=True).stdout
        (pkg / name).write_text(text)
    (pkg / "__init__.py").write_text("")
    (pkg / "threads.py").write_text("from minitune.cpu.threads import *  # noqa\n")
    sys.path.insert(0, tmp)
    return importlib.import_module("gelu_at_rev.gelu")


def time_pair(kernels, x, b, gy, rounds):
    """{(name, 'fwd'|'bwd'): [seconds per round]}, the kernels alternating within a round."""
    saved = {k: m.gelu_forward(x, b)[1] for k, m in kernels.items()}
    t = {(k, p): [] for k in kernels for p in ("fwd", "bwd")}
    for _ in range(rounds):
        for k, m in kernels.items():
            t0 = time.perf_counter()
            m.gelu_forward(x, b)
            t[k, "fwd"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            m.gelu_backward(gy, saved[k])
            t[k, "bwd"].append(time.perf_counter() - t0)
    return t


def max_errors(module):
    """max |error| of y and dy/du against the float64 GELU, float32 inputs in [-10, 10]."""
    grid = np.arange(-10.0, 10.0, 1e-5)
    draws = np.random.default_rng(0).standard_normal(4_000_000) * 4
    x = np.concatenate([grid, draws]).astype(np.float32).reshape(-1, 1000)
    u = x.astype(np.float64)
    cdf = 0.5 * (1.0 + erf(u / math.sqrt(2.0)))
    y, saved = module.gelu_forward(x)
    gx, _ = module.gelu_backward(np.ones_like(x), saved)
    dydu = cdf + u * np.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)
    return np.max(np.abs(y - u * cdf)), np.max(np.abs(gx - dydu))


def forward_pairs(kernels, pairs, n_threads):
    """{name: [seconds per eval forward of MiniLM]} with each kernel as the fused GELU."""
    from bench_bert import minitune_runner, synthetic_batch
    threads.set_num_threads(n_threads)
    step, _ = minitune_runner("fwd", "seq", synthetic_batch("seq", 64, 128, 30522))
    impls = {k: dispatch.Implementation("gelu", supports=m.supports, forward=m.gelu_forward,
                                        backward=m.gelu_backward) for k, m in kernels.items()}
    names = list(impls)
    t = {k: [] for k in names}
    try:
        for i in range(pairs + 1):                        # the first pair is a warm-up
            for k in (names if i % 2 == 0 else names[::-1]):
                cpu.FUSED["gelu"] = impls[k]
                t0 = time.perf_counter()
                step()
                if i:
                    t[k].append(time.perf_counter() - t0)
    finally:
        cpu.FUSED["gelu"] = impls["this"]
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", default="main", help="git revision to compare with")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--rows", type=int, default=8192, help="N (I is 1536, MiniLM's)")
    ap.add_argument("--forward-pairs", type=int, default=0,
                    help="also time MiniLM's eval forward with each kernel, this many pairs")
    ap.add_argument("--threads", type=int, default=2, help="for --forward-pairs")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, 1536), dtype=np.float32) * 2
    b = rng.standard_normal(1536, dtype=np.float32)
    gy = rng.standard_normal(x.shape, dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        kernels = {"this": gelu, args.against: kernel_at(args.against, tmp)}
        for m in kernels.values():                       # compile (or load) both first
            m.gelu_backward(gy[:16], m.gelu_forward(x[:16], b)[1])
        threads.set_adaptive(False)
        print(f"bias + GELU, float32, {args.rows} x 1536, {args.rounds} rounds; ns per element")
        for n in (1, 2):
            threads.set_num_threads(n)
            t = time_pair(kernels, x, b, gy, args.rounds)
            for p in ("fwd", "bwd"):
                cols = [f"{k} {np.median(t[k, p]) * 1e9 / x.size:.3f} "
                        f"(min {np.min(t[k, p]) * 1e9 / x.size:.3f})" for k in kernels]
                ratio = np.median(np.array(t["this", p]) / np.array(t[args.against, p]))
                print(f"  {n} thread(s) {p}: " + ", ".join(cols) + f"; this/other {ratio:.3f}")
        for k, m in kernels.items():
            ey, eg = max_errors(m)
            print(f"max |error| vs float64 GELU, {k}: y {ey:.3e}, dy/du {eg:.3e}")
        if args.forward_pairs:
            t = forward_pairs(kernels, args.forward_pairs, args.threads)
            r = np.array(t["this"]) / np.array(t[args.against])
            print(f"MiniLM eval forward 64 x 128, {args.threads} threads, {args.forward_pairs} "
                  f"pairs: this {np.median(t['this']):.3f} s (min {np.min(t['this']):.3f}), "
                  f"{args.against} {np.median(t[args.against]):.3f} s "
                  f"(min {np.min(t[args.against]):.3f}); median ratio {np.median(r):.3f} "
                  f"({r.min():.3f}..{r.max():.3f})")


if __name__ == "__main__":
    main()
