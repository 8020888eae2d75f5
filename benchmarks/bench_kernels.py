"""minitune's CUDA kernels against the unfused CuPy path and PyTorch's own ops, on one GPU.

Part 1, each kernel at BERT shapes (float32, TF32 off everywhere):
    kernel   minitune's launcher (minitune/cuda/*.py -> kernels/*.cu); for attention,
             variants 2-4 of attention.cu, and beside them (HS = 64 cases)
    blocked  its register-blocked variants 5-7 (ratios blocked/kernel, blocked/torch)
    cupy     the op's reference (minitune/ops, minitune/optim) on cupy arrays: what runs with
             the kernels switched off (MINITUNE_FUSED=0)
    torch    PyTorch's op for the same work: F.scaled_dot_product_attention (float32, with the
             mask and dropout; the backend PyTorch picks), F.layer_norm(x + r), F.gelu(x + b),
             F.cross_entropy, F.embedding's backward, F.dropout, AdamW(fused=True)
Each round runs every side once (order alternating), each timed with CUDA events around
`reps` calls; reported: median and minimum per-call time, the median of the per-round ratios
kernel/cupy and kernel/torch, and achieved GB/s (memory-bound kernels: the bytes the fused
kernel must move, counted once) or TFLOP/s (attention: 4 B NH T^2 HS forward, 2.5x that
backward) against the H200's peaks (4.8 TB/s HBM3e; 67 TFLOP/s FP32 without tensor cores).

Part 2, the MiniLM-shaped training step (32 x 128, dropout 0.1) and forward (64 x 128):
kernels on vs off vs PyTorch eager (the same hand-written BERT as benchmarks/bench_gpu.py,
with dropout), interleaved; peak memory per side (CuPy: the pool's bytes after one step from
an empty pool; PyTorch: max_memory_allocated and max_memory_reserved).

Usage (repo root, on a GPU machine; exits 2 without a device):
    PYTHONPATH=. python benchmarks/bench_kernels.py [--json out.json] [--rounds 7]
        [--budget-s 150] [--only attention,layer_norm,...] [--skip-model]
    PYTHONPATH=. python benchmarks/bench_kernels.py --dry-run
        (no GPU: runs every kernel case once at tiny shapes in the CPU emulator, to check
        the script itself)
"""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("CUPY_TF32", "0")              # full-FP32 GEMMs in cuBLAS

import numpy as np  # noqa: E402

from minitune import backend, dispatch, no_grad  # noqa: E402
from minitune import cuda as mt_cuda  # noqa: E402
from minitune.ops import loss as ref_loss  # noqa: E402
from minitune.ops import nn as ref_nn  # noqa: E402
from minitune.optim import adam as ref_adam  # noqa: E402

PEAK_GBPS = 4800.0                  # H200 HBM3e
PEAK_FP32_TFLOPS = 67.0             # H200 FP32 (CUDA cores)
MINILM_PARAMS = [(30522, 384), (512, 384), (2, 384), (384,), (384,)] + 6 * [
    (384, 384), (384,), (384, 384), (384,), (384, 384), (384,), (384, 384), (384,), (384,),
    (384,), (1536, 384), (1536,), (384, 1536), (384,), (384,), (384,)] + [(384, 384), (384,)]


# --------------------------------------------------------------------------- kernel cases

def attention_case(xp, torch, B, NH, T, HS, p, blocked=False):
    """Forward + backward of attention with BERT's padding mask and dropout p: "kernel" is
    variants 2-4, "blocked" (with ``blocked``) the register-blocked 5-7 (attention.cu)."""
    rng = np.random.default_rng(0)
    q, k, v, g = (xp.asarray(rng.normal(size=(B, NH, T, HS)).astype(np.float32))
                  for _ in range(4))
    lengths = rng.integers(T // 2, T + 1, size=B)
    bias_h = ((np.arange(T)[None] >= lengths[:, None]) * np.finfo(np.float32).min)
    bias = xp.asarray(bias_h.astype(np.float32)[:, None, None, :])
    scale = 1.0 / np.sqrt(HS)

    def kernels(forward_variant, backward_variant):
        def run():
            out, saved = mt_cuda.attention.forward(q, k, v, bias, scale, p,
                                                   np.random.default_rng(1),
                                                   variant=forward_variant)
            mt_cuda.attention.backward(g, saved, variant=backward_variant)
        return run

    def cupy():
        out, saved = ref_nn.attention_forward(q, k, v, bias, scale, p, np.random.default_rng(1))
        ref_nn.attention_backward(g, saved)

    sides = {"kernel": kernels(2, 3)}
    if blocked:
        sides["blocked"] = kernels(5, 6)
    sides["cupy"] = cupy
    if torch is not None:
        tq, tk, tv = (torch.as_tensor(a).requires_grad_() for a in (q, k, v))
        tb, tg = torch.as_tensor(bias), torch.as_tensor(g)

        def torch_op():
            out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=tb,
                                                                   dropout_p=p, scale=scale)
            out.backward(tg)
        sides["torch"] = torch_op
    flops = 3.5 * 4 * B * NH * T * T * HS
    # the CuPy path draws its dropout mask on the host (~1 s at T = 512): one call a sample
    return sides, {"tflop": flops / 1e12, "reps": 1 if T * T * B * NH > 2**25 else None}


def attention_forward_variants(xp, torch, B, NH, T, HS, blocked=False):
    """Forward only, no dropout: variant 2 (tiled, "kernel") against variant 1 (naive), with
    ``blocked`` variant 5 (register-blocked), and torch."""
    rng = np.random.default_rng(0)
    q, k, v = (xp.asarray(rng.normal(size=(B, NH, T, HS)).astype(np.float32)) for _ in range(3))
    scale = 1.0 / np.sqrt(HS)

    def variant(number):
        return lambda: mt_cuda.attention.forward(q, k, v, None, scale, 0.0, None, variant=number)

    sides = {"kernel": variant(2), "naive": variant(1)}
    if blocked:
        sides["blocked"] = variant(5)
    sides["cupy"] = lambda: ref_nn.attention_forward(q, k, v, None, scale, 0.0, None)
    if torch is not None:
        tq, tk, tv = (torch.as_tensor(a) for a in (q, k, v))
        sides["torch"] = lambda: torch.nn.functional.scaled_dot_product_attention(
            tq, tk, tv, scale=scale)
    return sides, {"tflop": 4 * B * NH * T * T * HS / 1e12}


def layer_norm_case(xp, torch, N, H):
    rng = np.random.default_rng(0)
    x, r, g = (xp.asarray(rng.normal(size=(N, H)).astype(np.float32)) for _ in range(3))
    w, b = (xp.asarray(rng.normal(size=H).astype(np.float32)) for _ in range(2))

    def kernel():
        y, saved = mt_cuda.layer_norm.forward(x, w, b, 1e-12, r)
        mt_cuda.layer_norm.backward(g, saved)

    def cupy():
        y, saved = ref_nn.layer_norm_forward(x, w, b, 1e-12, r)
        ref_nn.layer_norm_backward(g, saved)

    sides = {"kernel": kernel, "cupy": cupy}
    if torch is not None:
        tx, tr, tw, tb = (torch.as_tensor(a).requires_grad_() for a in (x, r, w, b))
        tg = torch.as_tensor(g)

        def torch_op():
            torch.nn.functional.layer_norm(tx + tr, (H,), tw, tb, 1e-12).backward(tg)
        sides["torch"] = torch_op
    # forward reads x, r, writes y, u; backward reads gy, u, writes gx (+ small partials)
    return sides, {"gbytes": 7 * N * H * 4 / 1e9}


def gelu_case(xp, torch, N, width):
    rng = np.random.default_rng(0)
    x, g = (xp.asarray(rng.normal(size=(N, width)).astype(np.float32)) for _ in range(2))
    b = xp.asarray(rng.normal(size=width).astype(np.float32))

    def kernel():
        y, saved = mt_cuda.gelu.forward(x, b)
        mt_cuda.gelu.backward(g, saved)

    def cupy():
        y, saved = ref_nn.gelu_forward(x, b)
        ref_nn.gelu_backward(g, saved)

    sides = {"kernel": kernel, "cupy": cupy}
    if torch is not None:
        tx, tb = (torch.as_tensor(a).requires_grad_() for a in (x, b))
        tg = torch.as_tensor(g)

        def torch_op():
            torch.nn.functional.gelu(tx + tb).backward(tg)
        sides["torch"] = torch_op
    return sides, {"gbytes": 5 * N * width * 4 / 1e9}      # fwd: x -> y; bwd: gy, x -> gx


def cross_entropy_case(xp, torch, N, K):
    rng = np.random.default_rng(0)
    z = xp.asarray(rng.normal(size=(N, K)).astype(np.float32))
    t_h = rng.integers(0, K, size=N)
    t_h[::7] = -100
    t = xp.asarray(t_h)
    one = xp.asarray(np.float32(1.0))

    def kernel():
        loss, saved = mt_cuda.cross_entropy.forward(z, t, -100, "mean")
        mt_cuda.cross_entropy.backward(one, saved)

    def cupy():
        loss, saved = ref_loss.cross_entropy_forward(z, t, -100, "mean")
        ref_loss.cross_entropy_backward(one, saved)

    sides = {"kernel": kernel, "cupy": cupy}
    if torch is not None:
        tz, tt = torch.as_tensor(z).requires_grad_(), torch.as_tensor(t)

        def torch_op():
            torch.nn.functional.cross_entropy(tz, tt, ignore_index=-100).backward()
        sides["torch"] = torch_op
    return sides, {"gbytes": 3 * N * K * 4 / 1e9}      # fwd: z; bwd: z -> g


def embedding_case(xp, torch, B, T, V, H):
    rng = np.random.default_rng(0)
    ids = xp.asarray(rng.integers(0, V, size=(B, T)))
    w = xp.asarray(rng.normal(size=(V, H)).astype(np.float32))
    g = xp.asarray(rng.normal(size=(B, T, H)).astype(np.float32))

    def kernel():
        y, saved = mt_cuda.embedding.forward(ids, w)
        mt_cuda.embedding.backward(g, saved)

    def cupy():
        y, saved = ref_nn.embedding_forward(ids, w)
        ref_nn.embedding_backward(g, saved)

    sides = {"kernel": kernel, "cupy": cupy}
    if torch is not None:
        tw, ti, tg = torch.as_tensor(w).requires_grad_(), torch.as_tensor(ids), torch.as_tensor(g)

        def torch_op():
            torch.nn.functional.embedding(ti, tw).backward(tg)
            tw.grad = None
        sides["torch"] = torch_op
    # gather: y; scatter: gy in, used rows of gw out, and the zero fill of gw (V x H)
    return sides, {"gbytes": (3 * B * T * H + V * H) * 4 / 1e9}


def dropout_case(xp, torch, N, H, p):
    rng = np.random.default_rng(0)
    x, g = (xp.asarray(rng.normal(size=(N, H)).astype(np.float32)) for _ in range(2))

    def kernel():
        y, saved = mt_cuda.dropout.forward(x, p, np.random.default_rng(1))
        mt_cuda.dropout.backward(g, saved)

    def cupy():
        y, saved = ref_nn.dropout_forward(x, p, np.random.default_rng(1))
        ref_nn.dropout_backward(g, saved)

    sides = {"kernel": kernel, "cupy": cupy}
    if torch is not None:
        tx, tg = torch.as_tensor(x).requires_grad_(), torch.as_tensor(g)

        def torch_op():
            torch.nn.functional.dropout(tx, p, training=True).backward(tg)
        sides["torch"] = torch_op
    return sides, {"gbytes": 4 * N * H * 4 / 1e9}


def adam_case(xp, torch, shapes):
    rng = np.random.default_rng(0)
    ws, gs, ms = ([xp.asarray(rng.normal(size=s).astype(np.float32)) for s in shapes]
                  for _ in range(3))
    vs = [xp.asarray(np.abs(rng.normal(size=s)).astype(np.float32)) for s in shapes]
    hyper = dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, decoupled=True)
    work = {}

    def scratch(w):
        buf = work.get(w.shape)
        if buf is None:
            buf = work[w.shape] = xp.empty_like(w)
        return buf

    def kernel():
        mt_cuda.adam.step(ws, gs, ms, vs, [1] * len(ws), work=None, **hyper)

    def cupy():
        ref_adam.adam_update(ws, gs, ms, vs, [1] * len(ws), work=scratch, **hyper)

    sides = {"kernel": kernel, "cupy": cupy}
    if torch is not None:
        params = [torch.nn.Parameter(torch.as_tensor(w).clone()) for w in ws]
        for p_, g_ in zip(params, gs):
            p_.grad = torch.as_tensor(g_).clone()
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, fused=True)
        sides["torch"] = opt.step
    n = sum(int(np.prod(s)) for s in shapes)
    return sides, {"gbytes": 28 * n / 1e9}


def kernel_cases(xp, torch, tiny=False):
    """(name, builder) of every benchmarked case; ``tiny`` shrinks them for --dry-run."""
    if tiny:
        return [
            ("attention 2x2x37x40 p=0.1", lambda: attention_case(xp, torch, 2, 2, 37, 40, 0.1,
                                                                 blocked=True)),
            ("attention forward 2x2x37x40", lambda: attention_forward_variants(
                xp, torch, 2, 2, 37, 40, blocked=True)),
            ("layer_norm 33x70", lambda: layer_norm_case(xp, torch, 33, 70)),
            ("gelu 33x70", lambda: gelu_case(xp, torch, 33, 70)),
            ("cross_entropy 33x9", lambda: cross_entropy_case(xp, torch, 33, 9)),
            ("embedding 2x9 V50 H8", lambda: embedding_case(xp, torch, 2, 9, 50, 8)),
            ("dropout 33x70", lambda: dropout_case(xp, torch, 33, 70, 0.1)),
            ("adamw 3 params", lambda: adam_case(xp, torch, [(70, 3), (1500,), (1,)])),
        ]
    return [
        ("attention 32x12x128x32 p=0.1", lambda: attention_case(xp, torch, 32, 12, 128, 32, 0.1)),
        ("attention 32x12x512x64 p=0.1", lambda: attention_case(xp, torch, 32, 12, 512, 64, 0.1,
                                                                  blocked=True)),
        ("attention 32x12x128x64 p=0.1", lambda: attention_case(xp, torch, 32, 12, 128, 64, 0.1,
                                                                  blocked=True)),
        ("attention 32x12x128x32 p=0", lambda: attention_case(xp, torch, 32, 12, 128, 32, 0.0)),
        ("attention forward 32x12x128x32 (variants)",
         lambda: attention_forward_variants(xp, torch, 32, 12, 128, 32)),
        ("attention forward 32x12x512x64 (variants)",
         lambda: attention_forward_variants(xp, torch, 32, 12, 512, 64, blocked=True)),
        ("attention forward 32x12x128x64 (variants)",
         lambda: attention_forward_variants(xp, torch, 32, 12, 128, 64, blocked=True)),
        ("layer_norm 4096x384", lambda: layer_norm_case(xp, torch, 4096, 384)),
        ("layer_norm 4096x768", lambda: layer_norm_case(xp, torch, 4096, 768)),
        ("gelu 4096x1536", lambda: gelu_case(xp, torch, 4096, 1536)),
        ("gelu 4096x3072", lambda: gelu_case(xp, torch, 4096, 3072)),
        ("cross_entropy 4096x9", lambda: cross_entropy_case(xp, torch, 4096, 9)),
        ("cross_entropy 4096x30522", lambda: cross_entropy_case(xp, torch, 4096, 30522)),
        ("embedding 32x128 V30522 H384", lambda: embedding_case(xp, torch, 32, 128, 30522, 384)),
        ("dropout 4096x768", lambda: dropout_case(xp, torch, 4096, 768, 0.1)),
        ("adamw MiniLM (22.7M params)", lambda: adam_case(xp, torch, MINILM_PARAMS)),
    ]


# --------------------------------------------------------------------------- timing

def time_interleaved(cupy, sides, rounds, reps, deadline):
    """Per-call milliseconds of each side: `rounds` rounds, each side once per round (order
    alternating), timed with CUDA events over `reps` calls."""
    for fn in sides.values():                             # warm-up: compile, allocate
        fn()
    cupy.cuda.Device().synchronize()
    times = {name: [] for name in sides}
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    for r in range(rounds):
        if r >= 3 and time.perf_counter() > deadline:
            break
        order = list(sides.items()) if r % 2 == 0 else list(sides.items())[::-1]
        for name, fn in order:
            cupy.cuda.Device().synchronize()
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            end.synchronize()
            times[name].append(cupy.cuda.get_elapsed_time(start, end) / reps)
    return times


def summarize(times, work):
    out = {}
    for name, t in times.items():
        if not t:
            continue
        out[name] = {"median_ms": round(statistics.median(t), 4), "min_ms": round(min(t), 4)}
        if "gbytes" in work and name == "kernel":
            gbps = work["gbytes"] / (min(t) / 1e3)
            out[name]["GB_per_s"] = round(gbps, 1)
            out[name]["pct_of_hbm_peak"] = round(100 * gbps / PEAK_GBPS, 1)
        if "tflop" in work:
            tflops = work["tflop"] / (min(t) / 1e3)
            out[name]["TFLOP_per_s"] = round(tflops, 2)            # every side: same FLOPs
            out[name]["pct_of_fp32_peak"] = round(100 * tflops / PEAK_FP32_TFLOPS, 1)
    pairs = [("kernel", other) for other in ("cupy", "torch", "naive")]
    pairs += [("blocked", other) for other in ("kernel", "torch", "cupy")]   # attention 5-7
    for side, other in pairs:
        if side in times and other in times:
            n = min(len(times[side]), len(times[other]))
            ratios = [a / b for a, b in zip(times[side][:n], times[other][:n])]
            out[f"ratio_{side}_over_{other}_median"] = round(statistics.median(ratios), 3)
    return out


# --------------------------------------------------------------------------- the model

def model_phase(cupy, torch, rounds, deadline):
    """MiniLM-shaped step (dropout 0.1) and forward: kernels on / off / PyTorch eager."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_gpu
    from minitune.models.bert import BertConfig, BertForSequenceClassification
    from minitune.optim import AdamW
    config = dict(bench_gpu.CONFIG, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    model = BertForSequenceClassification(BertConfig(**config), seed=0).to("gpu")
    opt = AdamW(model.parameters(), lr=bench_gpu.LR, weight_decay=bench_gpu.WEIGHT_DECAY)
    host_weights = {n: backend.asnumpy(p.data) for n, p in model.named_parameters()}
    rng = np.random.default_rng(0)
    train_batch, fwd_batch = bench_gpu._batch(rng, 32, 128), bench_gpu._batch(rng, 64, 128)
    mt_train = {k: cupy.asarray(v) for k, v in train_batch.items()}
    mt_fwd = {k: cupy.asarray(v) for k, v in fwd_batch.items() if k != "labels"}

    def step(fused):
        def run():
            with dispatch.use_fused(fused):
                model.train()
                out = model(**mt_train)
                out.loss.backward()
                opt.step()
                opt.zero_grad()
        return run

    def forward(fused):
        def run():
            with dispatch.use_fused(fused), no_grad():
                model.eval()
                model(**mt_fwd)
        return run

    steps = {"kernels_on": step(True), "kernels_off": step(False)}
    forwards = {"kernels_on": forward(True), "kernels_off": forward(False)}
    report = {"config": {k: v for k, v in config.items() if k != "id2label"}}
    memory = {}
    pool = cupy.get_default_memory_pool()
    for name, fn in steps.items():                        # peak memory: one step, empty pool
        fn()
        cupy.cuda.Device().synchronize()
        pool.free_all_blocks()
        fn()
        cupy.cuda.Device().synchronize()
        memory[f"minitune_{name}_pool_bytes"] = int(pool.total_bytes())
    if torch is not None:
        t_step, t_forward = bench_gpu._torch_side(torch, host_weights, train_batch, fwd_batch,
                                                  dropout=0.1)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t_step()
        memory["torch_max_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        memory["torch_max_reserved_bytes"] = int(torch.cuda.max_memory_reserved())
        steps["torch_eager"], forwards["torch_eager"] = t_step, t_forward
    report["peak_memory"] = memory
    for phase, fns in (("train_step_32x128_dropout0.1", steps), ("forward_64x128", forwards)):
        times = time_interleaved(cupy, fns, rounds, 1, deadline)
        r = {n: {"median_ms": round(statistics.median(t), 3), "min_ms": round(min(t), 3)}
             for n, t in times.items() if t}
        if "torch_eager" in times:
            for side in ("kernels_on", "kernels_off"):
                n = min(len(times[side]), len(times["torch_eager"]))
                r[f"ratio_{side}_over_torch_median"] = round(statistics.median(
                    [a / b for a, b in zip(times[side][:n], times["torch_eager"][:n])]), 3)
        report[phase] = r
    return report


# --------------------------------------------------------------------------- main

def dry_run():
    """Every case once, tiny shapes, numpy arrays: the kernels run in the CPU emulator."""
    for name, build in kernel_cases(np, None, tiny=True):
        sides, work = build()
        for side, fn in sides.items():
            fn()
        print(f"dry run ok: {name} ({', '.join(sides)})")
    return 0


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_gpu
    ap = bench_gpu.gpu_bench_parser(__doc__, rounds=7, budget_s=150.0)
    ap.add_argument("--reps", type=int, default=5, help="calls per timed sample (kernels)")
    ap.add_argument("--only", help="comma-separated prefixes of case names")
    ap.add_argument("--skip-model", action="store_true")
    args = ap.parse_args()
    if args.dry_run:
        return dry_run()
    if not backend.gpu_available():
        return bench_gpu.no_device("bench_kernels")
    import cupy
    t0 = time.perf_counter()
    deadline = t0 + args.budget_s
    report = {"device": bench_gpu._device_name(cupy), "peaks": {
        "hbm_GB_per_s": PEAK_GBPS, "fp32_TFLOP_per_s": PEAK_FP32_TFLOPS},
        "versions": {"cupy": cupy.__version__}, "tf32": {"CUPY_TF32": os.environ["CUPY_TF32"]},
        "kernels": {}}
    torch = bench_gpu._import_torch(report)

    def save():
        report["elapsed_s"] = round(time.perf_counter() - t0, 1)
        if args.json:
            bench_gpu.save_report(args.json, report)

    only = args.only.split(",") if args.only else None
    for name, build in kernel_cases(cupy, torch):
        if only and not any(name.startswith(o) for o in only):
            continue
        if time.perf_counter() > deadline:
            report["kernels"][name] = "skipped: out of time"
            continue
        try:
            sides, work = build()
            reps = work.get("reps") or args.reps
            result = summarize(time_interleaved(cupy, sides, args.rounds, reps, deadline), work)
        except Exception as e:                       # one failing case must not hide the rest
            result = {"error": f"{type(e).__name__}: {e}"}
        report["kernels"][name] = result
        print(name, json.dumps(result))
        save()
    if not args.skip_model:
        try:
            report["model"] = model_phase(cupy, torch, args.rounds, deadline + 60)
        except Exception as e:
            report["model"] = {"error": f"{type(e).__name__}: {e}"}
        print("model", json.dumps(report["model"]))
    save()
    failed = [n for n, r in report["kernels"].items() if isinstance(r, dict) and "error" in r]
    return 1 if failed or "error" in report.get("model", {}) else 0


if __name__ == "__main__":
    sys.exit(main())
