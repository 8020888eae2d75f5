"""Where a MiniLM training step's GPU time goes: each of minitune's kernels, timed on the device.

The step is bench_step.py's (MiniLM shape, random weights, dropout 0.1, batch 32 x 128, AdamW),
run eagerly (no CUDA graph) so every launch can be bracketed: a CUDA event is recorded before
and after each ``GpuRuntime.launch`` (minitune/cuda/runtime.py, the one place every kernel of
kernels/*.cu is launched), and the events' elapsed times are summed per kernel. A pair of
events around the whole step gives its device time; what the kernels do not cover is
"other": CuPy's own element-wise ops and copies (gradient accumulation, reshapes that copy,
casts) and idle gaps while the host prepares the next launch. Events between launches keep
the device busy a few microseconds longer, so the step time here is a little above
bench_step.py's eager figure.

It also checks that ``--precision bf16`` changes the arithmetic: from the same weights and
batch, five steps in fp32 and five in bf16 (graphed, as ``minitune train --device cuda``
runs them) must give different losses, within a few percent of each other.

Usage (repo root, GPU machine; exits 2 without a device):
    PYTHONPATH=. python benchmarks/profile_step_gpu.py [--json out.json] [--steps 5]
    PYTHONPATH=. python benchmarks/profile_step_gpu.py --dry-run    (tiny model, CPU emulator)
"""
import argparse
import collections
import json
import os
import sys
import time

os.environ.setdefault("CUPY_TF32", "0")

import numpy as np  # noqa: E402

from minitune import backend  # noqa: E402
from minitune.cuda import runtime  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_gpu  # noqa: E402
import bench_step  # noqa: E402


class LaunchTimer:
    """Brackets every kernel launch with two CUDA events (or, in the emulator, host clocks)."""

    def __init__(self, runtime_class, cupy=None):
        self.cls, self.cupy, self.records = runtime_class, cupy, []
        self.inner = runtime_class.launch

    def __enter__(self):
        timer = self

        def launch(rt, name, kernel, *args, **kwargs):
            if timer.cupy is None:
                t0 = time.perf_counter()
                timer.inner(rt, name, kernel, *args, **kwargs)
                timer.records.append((f"{name}:{kernel}", time.perf_counter() - t0))
                return
            start, end = timer.cupy.cuda.Event(), timer.cupy.cuda.Event()
            start.record()
            timer.inner(rt, name, kernel, *args, **kwargs)
            end.record()
            timer.records.append((f"{name}:{kernel}", (start, end)))
        self.cls.launch = launch
        return self

    def __exit__(self, *exc):
        self.cls.launch = self.inner

    def per_kernel_ms(self, steps):
        """{kernel: ms per step}, largest first; events are read after a synchronize."""
        total = collections.defaultdict(float)
        counts = collections.Counter()
        for key, t in self.records:
            if isinstance(t, tuple):
                t = self.cupy.cuda.get_elapsed_time(*t) / 1e3
            total[key] += t * 1e3 / steps
            counts[key] += 1
        return {k: {"ms": round(v, 4), "launches": counts[k] // steps}
                for k, v in sorted(total.items(), key=lambda kv: -kv[1])}


def profile(config, B, T, precision, steps, device, cupy=None):
    """Per-kernel device time of ``steps`` eager steps after two warm-up steps."""
    rng = np.random.default_rng(0)
    batch = bench_gpu._batch(rng, B, T)
    batch["input_ids"] %= config["vocab_size"]
    side = bench_step.Minitune(config, batch, False, precision, device=device)
    side.step()
    side.step()
    cls = runtime.GpuRuntime if cupy is not None else runtime.EmulatorRuntime
    with LaunchTimer(cls, cupy) as timer:
        if cupy is not None:
            cupy.cuda.Device().synchronize()
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
        t0 = time.perf_counter()
        for _ in range(steps):
            side.step()                                  # reads the loss: a host sync
        wall = (time.perf_counter() - t0) * 1e3 / steps
        if cupy is not None:
            end.record()
            end.synchronize()
            device_ms = cupy.cuda.get_elapsed_time(start, end) / steps
        else:
            device_ms = wall
    kernels = timer.per_kernel_ms(steps)
    in_kernels = sum(v["ms"] for v in kernels.values())
    return {"step_wall_ms": round(wall, 3), "step_device_ms": round(device_ms, 3),
            "kernels_ms": round(in_kernels, 3),
            "other_ms": round(device_ms - in_kernels, 3),
            "launches_per_step": sum(v["launches"] for v in kernels.values()),
            "per_kernel": kernels}


def precision_check(config, B, T, steps, device):
    """Losses of ``steps`` steps in fp32 and in bf16 from the same weights and batch."""
    rng = np.random.default_rng(1)
    batch = bench_gpu._batch(rng, B, T)
    batch["input_ids"] %= config["vocab_size"]
    graphed = device == "gpu"
    losses = {}
    for precision in ("fp32", "bf16"):
        side = bench_step.Minitune(config, batch, graphed, precision, device=device)
        losses[precision] = [float(side.step()) for _ in range(steps)]
    rel = [abs(a - b) / abs(a) for a, b in zip(losses["fp32"], losses["bf16"])]
    ok = losses["fp32"] != losses["bf16"] and max(rel) < 0.05
    return {"losses": losses, "max_relative_difference": max(rel), "ok": ok}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU needed: a tiny model through the same code in the emulator")
    args = ap.parse_args()
    if args.dry_run:
        report = {"fp32": profile(bench_step.TINY, 2, 8, "fp32", 1, "cpu"),
                  "precision_check": precision_check(bench_step.TINY, 2, 8, 2, "cpu")}
        print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "per_kernel"}
                          for k, v in report.items()}, indent=1))
        return 0 if report["precision_check"]["ok"] else 1
    if not backend.gpu_available():
        return bench_gpu.no_device("profile_step_gpu")
    import cupy
    report = {"device": bench_gpu._device_name(cupy)}
    failed = False
    for key, call in (
            ("minilm_fp32_32x128", lambda: profile(bench_step.MINILM, 32, 128, "fp32",
                                                   args.steps, "gpu", cupy)),
            ("minilm_bf16_32x128", lambda: profile(bench_step.MINILM, 32, 128, "bf16",
                                                   args.steps, "gpu", cupy)),
            ("precision_check", lambda: precision_check(bench_step.MINILM, 32, 128, 5, "gpu"))):
        try:
            report[key] = call()
            failed |= key == "precision_check" and not report[key]["ok"]
        except Exception as e:                       # one failing part must not hide the rest
            report[key] = {"error": f"{type(e).__name__}: {e}"}
            failed = True
        part = report[key]
        print(key, json.dumps({k: v for k, v in part.items() if k != "per_kernel"}))
        for name, v in list(part.get("per_kernel", {}).items())[:15]:
            print(f"  {v['ms']:8.3f} ms  x{v['launches']:<4d} {name}")
        if args.json:
            bench_gpu.save_report(args.json, report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
