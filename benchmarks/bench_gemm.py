"""minitune's GEMM kernels against cuBLAS on one GPU, at the shapes of BERT's Linear layers.

    M = B * T = 4096 rows; K (in) and N (out) in {384, 768, 1536, 3072}:
    MiniLM (384, 1536) and BERT-base (768, 3072) projections and feed-forward halves.

Sides, each timed with CUDA events over `reps` calls, rounds interleaved (order alternating;
bench_kernels.time_interleaved),
reported as median and minimum per-call time, achieved TFLOP/s (2 M N K per call) and the
median of the per-round ratios minitune / cuBLAS ("pct_of_cublas" = 100 / that ratio):

  fp32   variant 4 of kernels/matmul.cu (the plan's tile and split)   vs cupy.matmul with
         CUPY_TF32=0 (cuBLAS SGEMM, full float32)
  tf32   kernels/matmul_tc.cu, TF32 tensor cores (float32 in and out)  vs torch.matmul on
         float32 with TF32 allowed (cuBLAS, TF32 tensor cores)
  bf16   kernels/matmul_tc.cu, BF16 tensor cores (float32 in and out, rounded on loading)
         vs torch.matmul on bfloat16 tensors (cuBLAS; it reads and writes half the bytes)

Layouts: NT (Linear forward, x W^T) at all 16 shapes; NN (gx = gy W) and TN (gW = gy^T x, M
and N the layer's sizes, K = 4096) at the four square ones. Variants 1-3 (matmul.cu's header)
at 4096 x 768 x 768 NT, to show what each step of the tiling buys.

Usage (repo root, on a GPU machine; exits 2 without a device):
    PYTHONPATH=. python benchmarks/bench_gemm.py [--json out.json] [--rounds 5] [--reps 10]
        [--budget-s 60] [--precisions fp32,tf32,bf16]
    PYTHONPATH=. python benchmarks/bench_gemm.py --dry-run     (no GPU: every case once at tiny
        shapes in the CPU emulator, fp32 only, to check the script itself)
"""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("CUPY_TF32", "0")                   # cuBLAS SGEMM in full float32

import numpy as np  # noqa: E402

from minitune import backend  # noqa: E402
from minitune.cuda import matmul as mm  # noqa: E402

SIZES = (384, 768, 1536, 3072)
M = 4096
PEAK_TFLOPS = {"fp32": 67.0, "tf32": 494.0, "bf16": 989.0}   # H200 dense, no sparsity
LAYOUTS = {"nt": (False, True), "nn": (False, False), "tn": (True, False)}


def cases(full=True):
    """(name, layout, M, N, K) of every timed product."""
    if not full:
        return [("nt 37x29x19", "nt", 37, 29, 19), ("nn 20x36x12", "nn", 20, 36, 12),
                ("tn 33x17x40", "tn", 33, 17, 40)]
    out = [(f"nt {M}x{n}x{k}", "nt", M, n, k) for k in SIZES for n in SIZES]
    for h in SIZES:
        out.append((f"nn {M}x{h}x{h}", "nn", M, h, h))
        out.append((f"tn {h}x{h}x{M}", "tn", h, h, M))
    return out


def operands(xp, layout, m, n, k):
    ta, tb = LAYOUTS[layout]
    rng = np.random.default_rng(0)
    a = rng.normal(size=(k, m) if ta else (m, k)).astype(np.float32)
    b = rng.normal(size=(n, k) if tb else (k, n)).astype(np.float32)
    return xp.asarray(a), xp.asarray(b), ta, tb


def sides_for(cupy, torch, precision, layout, m, n, k, variant=4):
    """{"minitune": fn, "cublas": fn} for one product."""
    xp = np if cupy is None else cupy
    a, b, ta, tb = operands(xp, layout, m, n, k)

    def ours():
        mm.gemm(a, b, ta, tb, precision=precision, variant=variant)

    sides = {"minitune": ours}
    if cupy is None:
        return sides
    if precision == "fp32":
        sides["cublas"] = lambda: (a.T if ta else a) @ (b.T if tb else b)
    elif torch is not None:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        ta_, tb_ = (torch.as_tensor(x).to(dtype) for x in (a, b))

        def cublas():
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
            (ta_.T if ta else ta_) @ (tb_.T if tb else tb_)
        sides["cublas"] = cublas
    return sides


def summarize(times, m, n, k, precision):
    tflop = 2.0 * m * n * k / 1e12
    out = {}
    for name, t in times.items():
        if t:
            best = min(t)
            out[name] = {"median_ms": round(statistics.median(t), 4), "min_ms": round(best, 4),
                         "TFLOP_per_s": round(tflop / (best / 1e3), 2),
                         "pct_of_peak": round(100 * tflop / (best / 1e3) /
                                              PEAK_TFLOPS[precision], 1)}
    if times.get("cublas") and times.get("minitune"):
        r = min(len(times["cublas"]), len(times["minitune"]))
        ratio = statistics.median([a / b for a, b in zip(times["minitune"][:r],
                                                         times["cublas"][:r])])
        out["ratio_minitune_over_cublas_median"] = round(ratio, 3)
        out["pct_of_cublas"] = round(100.0 / ratio, 1)
    return out


def dry_run():
    for precision in ("fp32", "bf16"):
        for name, layout, m, n, k in cases(full=False):
            for variant in ((1, 2, 4) if precision == "fp32" else (4,)):
                sides_for(None, None, precision, layout, m, n, k, variant)["minitune"]()
            print(f"dry run ok: {precision} {name}")
    return 0


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_gpu
    ap = bench_gpu.gpu_bench_parser(__doc__, rounds=5, budget_s=60.0)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--precisions", default="fp32,tf32,bf16")
    args = ap.parse_args()
    if args.dry_run:
        return dry_run()
    if not backend.gpu_available():
        return bench_gpu.no_device("bench_gemm")
    import cupy
    from bench_kernels import time_interleaved
    t0 = time.perf_counter()
    deadline = t0 + args.budget_s
    report = {"device": bench_gpu._device_name(cupy), "peak_TFLOP_per_s": PEAK_TFLOPS,
              "versions": {"cupy": cupy.__version__}, "tf32": {"CUPY_TF32":
                                                               os.environ["CUPY_TF32"]},
              "products": {}}
    torch = bench_gpu._import_torch(report)

    def save():
        report["elapsed_s"] = round(time.perf_counter() - t0, 1)
        if args.json:
            bench_gpu.save_report(args.json, report)

    todo = [(p, name, layout, m, n, k, 4) for p in args.precisions.split(",")
            for name, layout, m, n, k in cases()]
    todo += [("fp32", f"variant {v} nt {M}x768x768", "nt", M, 768, 768, v) for v in (1, 2, 3)]
    failed = False
    for precision, name, layout, m, n, k, variant in todo:
        key = f"{precision} {name}"
        if time.perf_counter() > deadline:
            report["products"][key] = "skipped: out of time"
            continue
        try:
            sides = sides_for(cupy, torch, precision, layout, m, n, k, variant)
            if variant != 4:
                sides.pop("cublas", None)
            result = summarize(time_interleaved(cupy, sides, args.rounds, args.reps,
                                                deadline), m, n, k, precision)
        except Exception as e:                       # one failing case must not hide the rest
            result, failed = {"error": f"{type(e).__name__}: {e}"}, True
        report["products"][key] = result
        print(key, json.dumps(result))
        save()
    fp32 = [r["pct_of_cublas"] for k, r in report["products"].items()
            if k.startswith("fp32 ") and isinstance(r, dict) and "pct_of_cublas" in r]
    if fp32:
        report["fp32_pct_of_cublas_min_median"] = [min(fp32), statistics.median(fp32)]
    save()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
