"""The training step on one GPU: minitune (its own kernels and GEMM, the step as a CUDA graph)
against PyTorch eager on the same GPU, in float32 and bf16.

Phases (random weights, seed 0; dropout 0.1 in training; batch of full-length rows; AdamW):
  minilm_fp32_32x128   MiniLM shape (6 x 384, 12 heads, I 1536): minitune graphed (what
                       `minitune train --device cuda` runs) / minitune eager (kernels on, no
                       graph) / PyTorch eager, TF32 off everywhere
  minilm_bf16_32x128   minitune graphed --precision bf16 / PyTorch under
                       torch.autocast(dtype=torch.bfloat16)
  bert_base_fp32_32x128, bert_base_bf16_32x128   BERT-base shape (12 x 768, I 3072): graphed /
                       PyTorch eager (autocast for bf16)
  forward_64x128       MiniLM eval forward (no graph): minitune eager / PyTorch eager, fp32
Each phase alternates the sides step by step (order reversed every round); a step is timed on
the host clock from a synchronised device to the loss read on the host, which every side does.
Reported: median and minimum per side, the median of per-round ratios minitune / PyTorch,
achieved TFLOP/s of the step (6 x tokens x layer parameters + attention's 12 B NH T^2 HS per
layer, i.e. 3 x the forward) against the H200's dense peak for the precision (67 TFLOP/s
fp32 on CUDA cores, 989 bf16), and peak memory per side (CuPy: the growth of the default pool
plus the graphs' own pool; PyTorch: max_memory_allocated growth).

Usage (repo root, GPU machine; exits 2 without a device):
    PYTHONPATH=. python benchmarks/bench_step.py [--json out.json] [--rounds 8] [--budget-s 90]
        [--phases minilm_fp32,forward,minilm_bf16,bert_base_fp32,bert_base_bf16]
        [--blocked-attention]
    PYTHONPATH=. python benchmarks/bench_step.py --dry-run   (no GPU: a tiny model through the
        same code on the CPU, once)
"""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("CUPY_TF32", "0")

import numpy as np  # noqa: E402

from minitune import amp, backend, no_grad  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_gpu  # noqa: E402

MINILM = dict(bench_gpu.CONFIG, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
BERT_BASE = dict(MINILM, hidden_size=768, num_hidden_layers=12, intermediate_size=3072)
TINY = dict(MINILM, vocab_size=1100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64)
PEAK_TFLOPS = {"fp32": 67.0, "bf16": 989.0}


def step_tflop(config, B, T):
    """FLOPs of one training step / 1e12: 3 x (2 x tokens x layer weights + attention)."""
    H, I, L = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    per_layer = 2 * B * T * (4 * H * H + 2 * H * I) + 4 * B * T * T * H
    return 3 * L * per_layer / 1e12


class Minitune:
    """A model and AdamW on the GPU (or the CPU for --dry-run); ``graphed`` steps through
    train/graphs.py (as the Trainer does), else eager on a device-resident batch."""

    def __init__(self, config, batch, graphed, precision, device="gpu"):
        from minitune.models.bert import BertConfig, BertForSequenceClassification
        from minitune.optim import AdamW
        from minitune.train.graphs import GraphedSteps
        self.model = BertForSequenceClassification(BertConfig(**config), seed=0).to(device)
        self.opt = AdamW(self.model.parameters(), lr=bench_gpu.LR,
                         weight_decay=bench_gpu.WEIGHT_DECAY)
        self.precision, self.batch = precision, batch
        self.host_weights = {n: backend.asnumpy(p.data)
                             for n, p in self.model.named_parameters()}
        B, T = batch["input_ids"].shape
        self.graphs = GraphedSteps(self.model, self.opt, B, T, 0, enabled=graphed,
                                   backend="cuda" if device == "gpu" else "emulator")
        self.model.train()

    def step(self):
        with amp.autocast(self.precision):
            return self.graphs.step(self.batch)

    def forward(self, batch):
        dev = {k: backend.to_device(v, "gpu") for k, v in batch.items() if k != "labels"}

        def run():
            with no_grad():
                self.model.eval()
                out = self.model(**dev)
                self.model.train()
            return float(out.logits.data[0, 0])              # a host read, as PyTorch's sync
        return run


def interleaved(sides, sync, rounds, deadline):
    """{side: [ms]}: each side once per round, order alternating, after two warm-up calls."""
    for fn in sides.values():
        fn()
        fn()
    times = {name: [] for name in sides}
    for r in range(rounds):
        if r >= 3 and time.perf_counter() > deadline:
            break
        for name, fn in (list(sides.items()) if r % 2 == 0 else list(sides.items())[::-1]):
            sync()
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def summarize(times, tflop=None, precision="fp32", reference="torch"):
    out = {}
    for name, t in times.items():
        if t:
            out[name] = {"median_ms": round(statistics.median(t), 3), "min_ms": round(min(t), 3)}
            if tflop:
                achieved = tflop / (min(t) / 1e3)
                out[name]["TFLOP_per_s"] = round(achieved, 2)
                out[name]["pct_of_peak"] = round(100 * achieved / PEAK_TFLOPS[precision], 1)
    for name in times:
        if name != reference and times.get(reference) and times[name]:
            n = min(len(times[name]), len(times[reference]))
            out[f"ratio_{name}_over_{reference}_median"] = round(statistics.median(
                [a / b for a, b in zip(times[name][:n], times[reference][:n])]), 3)
    return out


class Memory:
    """Peak memory of one side: the growth of CuPy's default pool plus the graphs' own pool,
    or of PyTorch's max_memory_allocated, over building the side and three steps."""

    def __init__(self, cupy, torch):
        self.cupy, self.torch = cupy, torch

    def measure(self, build, steps=3):
        """``build() -> (step, GraphedSteps or None, "cupy" or "torch")``; (step, bytes)."""
        pool = self.cupy.get_default_memory_pool()
        self.cupy.cuda.Device().synchronize()
        pool.free_all_blocks()
        base = pool.total_bytes()
        if self.torch is not None:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
            torch_base = self.torch.cuda.memory_allocated()
        step, graphs, kind = build()
        for _ in range(steps):
            step()
        self.cupy.cuda.Device().synchronize()
        if kind == "torch":
            return step, int(self.torch.cuda.max_memory_allocated() - torch_base)
        used = pool.total_bytes() - base
        if graphs is not None and graphs.graphed.graphs:
            used += graphs.graphed.backend.pool.total_bytes()
        return step, int(used)


def train_phase(cupy, torch, config, precision, with_eager, rounds, deadline, memory):
    rng = np.random.default_rng(0)
    batch, fwd = bench_gpu._batch(rng, 32, 128), bench_gpu._batch(rng, 64, 128)
    built = {}

    def ours(graphed):
        def build():
            side = built[graphed] = Minitune(config, batch, graphed, precision)
            return side.step, side.graphs if graphed else None, "cupy"
        return build

    sides, peaks = {}, {}
    sides["minitune_graphed"], peaks["minitune_graphed"] = memory.measure(ours(True))
    if with_eager:
        sides["minitune_eager"], peaks["minitune_eager"] = memory.measure(ours(False))
    if torch is not None:
        amp_dtype = torch.bfloat16 if precision == "bf16" else None
        host = built[True].host_weights                     # the same initial weights
        sides["torch"], peaks["torch"] = memory.measure(lambda: (bench_gpu._torch_side(
            torch, host, batch, fwd, dropout=0.1, config=config, amp_dtype=amp_dtype)[0],
            None, "torch"))
    times = interleaved(sides, cupy.cuda.Device().synchronize, rounds, deadline)
    report = summarize(times, step_tflop(config, 32, 128), precision,
                       "torch" if torch is not None else None)
    report["peak_memory_bytes"] = peaks
    graphs = built[True].graphs.graphed
    report["graphs"] = {"captured": graphs.captures, "disabled_because": graphs.disabled_because}
    return report


def forward_phase(cupy, torch, rounds, deadline):
    rng = np.random.default_rng(0)
    batch, fwd = bench_gpu._batch(rng, 32, 128), bench_gpu._batch(rng, 64, 128)
    ours = Minitune(MINILM, batch, False, "fp32")
    sides = {"minitune_eager": ours.forward(fwd)}
    if torch is not None:
        t_forward = bench_gpu._torch_side(torch, ours.host_weights, batch, fwd)[1]
        sides["torch"] = lambda: float(t_forward()[0, 0])
    times = interleaved(sides, cupy.cuda.Device().synchronize, rounds, deadline)
    return summarize(times, reference="torch")


def dry_run():
    """The minitune side's code on the CPU: a tiny model, graphs off (no GPU here)."""
    rng = np.random.default_rng(0)
    batch = bench_gpu._batch(rng, 4, 16)
    batch["input_ids"] %= TINY["vocab_size"]
    for precision in ("fp32", "bf16"):
        side = Minitune(TINY, batch, False, precision, device="cpu")
        loss = side.step()
        print(f"dry run ok: {precision} step, loss {loss:.4f}, "
              f"{step_tflop(TINY, 4, 16) * 1e6:.1f} MFLOP a step")
    return 0


PHASES = ("minilm_fp32", "forward", "minilm_bf16", "bert_base_fp32", "bert_base_bf16")


def main():
    ap = bench_gpu.gpu_bench_parser(__doc__, rounds=8, budget_s=90.0)
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--blocked-attention", action="store_true",
                    help="run attention on the register-blocked kernels (variants 5-7) where the "
                         "head size allows (minitune/cuda/attention.py's USE_BLOCKED)")
    args = ap.parse_args()
    if args.blocked_attention:
        from minitune.cuda import attention
        attention.USE_BLOCKED = True
    if args.dry_run:
        return dry_run()
    if not backend.gpu_available():
        return bench_gpu.no_device("bench_step")
    import cupy
    t0 = time.perf_counter()
    report = {"device": bench_gpu._device_name(cupy), "versions": {"cupy": cupy.__version__},
              "tf32": {"CUPY_TF32": os.environ["CUPY_TF32"]}, "peak_TFLOP_per_s": PEAK_TFLOPS,
              "blocked_attention": args.blocked_attention}
    torch = bench_gpu._import_torch(report)
    memory = Memory(cupy, torch)
    phases = args.phases.split(",")
    share = args.budget_s / max(len(phases), 1)
    failed = False
    for i, phase in enumerate(phases):
        deadline = time.perf_counter() + share
        if time.perf_counter() - t0 > args.budget_s:
            report[phase] = "skipped: out of time"
            continue
        try:
            if phase == "forward":
                report["forward_64x128"] = forward_phase(cupy, torch, args.rounds, deadline)
            else:
                model, precision = phase.rsplit("_", 1)
                config = MINILM if model == "minilm" else BERT_BASE
                report[f"{phase}_32x128"] = train_phase(cupy, torch, config, precision,
                                                        phase == "minilm_fp32", args.rounds,
                                                        deadline, memory)
        except Exception as e:                       # one failing phase must not hide the rest
            report[phase] = {"error": f"{type(e).__name__}: {e}"}
            failed = True
        print(phase, json.dumps(report.get(phase) or report.get(f"{phase}_32x128") or
                                report.get("forward_64x128")))
        cupy.get_default_memory_pool().free_all_blocks()
        report["elapsed_s"] = round(time.perf_counter() - t0, 1)
        if args.json:
            bench_gpu.save_report(args.json, report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
