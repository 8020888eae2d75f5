"""GPU benchmark: minitune on CuPy against PyTorch on the same GPU, for a MiniLM-shaped BERT.

Model: BertForSequenceClassification with all-MiniLM-L6-v2's shapes (6 layers, H 384, 12 heads,
I 1536, V 30522, P 512) and 2 classes, random weights (seed 0), float32. Both sides get the same
weights and the same device-resident batch. Dropout is off on both sides: minitune draws its
dropout masks on the host, so with dropout on this would time numpy's RNG, not the GPU.

Measured, with the two frameworks alternating iteration by iteration (interleaved, so clock and
thermal drift hit both alike), each iteration timed between two device synchronisations:
    train_step  forward + backward + AdamW step at B=32, T=128
    forward     forward only (no graph) at B=64, T=128
TF32 is off on both sides (CUPY_TF32=0; torch fp32 matmul precision "ieee"/"highest"): both do
full-FP32 GEMMs in cuBLAS. The PyTorch side is a hand-written BERT with the same math as
minitune's (explicit attention matmul -> softmax -> matmul, as Hugging Face's "eager"
attention) and torch.optim.AdamW with its default CUDA implementation (foreach).
As a sanity check the two models' losses are compared at every training step (same weights,
same updates: they must agree to float32 rounding).

Usage (from the repo root):
    PYTHONPATH=. python benchmarks/bench_gpu.py [--json out.json] [--iters 10] [--warmup 2]
        [--budget-s 60]
It exits with status 2 and a one-line message when no CUDA device is visible to CuPy.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

# Before anything imports cupy: full-FP32 GEMMs (CuPy reads this once, at import).
os.environ["CUPY_TF32"] = "0"

import numpy as np  # noqa: E402

from minitune import backend, no_grad  # noqa: E402

CONFIG = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
              intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2,
              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
              id2label={0: "NEG", 1: "POS"})
LR, WEIGHT_DECAY = 1e-4, 0.01


def gpu_bench_parser(doc, rounds, budget_s):
    """The options every interleaved GPU benchmark (bench_kernels, bench_gemm, bench_step) has:
    --json, --rounds, --budget-s and --dry-run (a tiny case through the same code on the CPU)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--rounds", type=int, default=rounds, help="interleaved rounds per case")
    ap.add_argument("--budget-s", type=float, default=budget_s,
                    help="stop timing early once the whole run has taken this long")
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU needed: run each case once on the CPU, to check the script")
    return ap


def save_report(path, report):
    """Write ``report`` as JSON to ``path`` (the benchmarks rewrite it after every case, so a
    run stopped by a timeout still leaves what it measured)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)


def no_device(name):
    """The one-line message and exit status 2 of a GPU benchmark run without a device."""
    print(f"{name}: no CUDA device visible to CuPy; use --dry-run on a CPU machine",
          file=sys.stderr)
    return 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write the report here (also rewritten after each phase)")
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per side and phase")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations per side first")
    ap.add_argument("--budget-s", type=float, default=60.0,
                    help="stop timing a phase early once the whole run has taken this long")
    args = ap.parse_args()
    t_start = time.perf_counter()

    if not backend.gpu_available():
        cupy_state = "installed" if backend._import_cupy() is not None else "not installed"
        print(f"bench_gpu: no CUDA device visible to CuPy (cupy {cupy_state}; "
              f"minitune.backend.gpu_available() is False). This benchmark runs only on a GPU "
              f"machine.", file=sys.stderr)
        return 2
    import cupy

    report = {"config": {k: v for k, v in CONFIG.items() if k != "id2label"},
              "num_labels": 2, "dtype": "float32", "dropout": 0.0, "lr": LR,
              "weight_decay": WEIGHT_DECAY, "iters": args.iters, "warmup": args.warmup,
              "versions": {"python": platform.python_version(), "numpy": np.__version__,
                           "cupy": cupy.__version__},
              "tf32": {"CUPY_TF32": os.environ.get("CUPY_TF32")},
              "device": _device_name(cupy)}

    def save():
        report["elapsed_s"] = round(time.perf_counter() - t_start, 2)
        if args.json:
            save_report(args.json, report)

    torch = _import_torch(report)
    save()

    from minitune.models.bert import BertConfig, BertForSequenceClassification
    from minitune.optim import AdamW

    model = BertForSequenceClassification(BertConfig(**CONFIG), seed=0).to("gpu")
    opt = AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    host_weights = {n: backend.asnumpy(p.data) for n, p in model.named_parameters()}

    rng = np.random.default_rng(0)
    train_batch = _batch(rng, 32, 128)
    fwd_batch = _batch(rng, 64, 128)
    mt_train = {k: cupy.asarray(v) for k, v in train_batch.items()}
    mt_fwd = {k: cupy.asarray(v) for k, v in fwd_batch.items() if k != "labels"}

    def mt_step():
        out = model(**mt_train)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        return out.loss.item()               # synchronises

    def mt_forward():
        with no_grad():
            out = model(**mt_fwd)
        cupy.cuda.Device().synchronize()
        return out.logits

    sides = {"minitune_cupy": (mt_step, mt_forward, cupy.cuda.Device().synchronize)}
    if torch is not None:
        t_step, t_forward = _torch_side(torch, host_weights, train_batch, fwd_batch)
        sides["torch"] = (t_step, t_forward, torch.cuda.synchronize)

    # ---- phase 1: training step, with the loss cross-check
    losses = {name: [] for name in sides}

    def train_fn(name):
        def run():
            losses[name].append(sides[name][0]())
        return run

    report["train_step_32x128"] = _interleaved(
        {n: train_fn(n) for n in sides}, {n: s[2] for n, s in sides.items()},
        args, t_start)
    report["train_step_32x128"]["losses"] = losses
    if "torch" in losses:
        n = min(len(losses["torch"]), len(losses["minitune_cupy"]))
        report["train_step_32x128"]["loss_max_abs_diff_vs_torch"] = max(
            abs(a - b) for a, b in zip(losses["torch"][:n], losses["minitune_cupy"][:n]))
    save()

    # ---- phase 2: forward only
    report["forward_64x128"] = _interleaved(
        {n: s[1] for n, s in sides.items()}, {n: s[2] for n, s in sides.items()},
        args, t_start)
    if torch is not None:
        a = backend.asnumpy(mt_forward().data)
        b = sides["torch"][1]().detach().cpu().numpy()
        report["forward_64x128"]["logits_max_abs_diff_vs_torch"] = float(np.abs(a - b).max())
    pool = cupy.get_default_memory_pool()
    report["memory"] = {"cupy_pool_total_bytes": int(pool.total_bytes())}
    if torch is not None:
        report["memory"]["torch_max_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
    save()
    _print_summary(report)
    return 0


def _device_name(cupy):
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def _batch(rng, B, T):
    """Full-length rows of random ids (no padding), segment B after the middle, binary labels."""
    return {"input_ids": rng.integers(1000, CONFIG["vocab_size"], (B, T)),
            "token_type_ids": (np.arange(T)[None, :] >= T // 2).repeat(B, 0).astype(np.int64),
            "attention_mask": np.ones((B, T), dtype=np.int64),
            "labels": rng.integers(0, 2, B)}


def _interleaved(fns, syncs, args, t_start):
    """Warm up each side, then alternate timed iterations; returns per-side stats in ms."""
    for _ in range(args.warmup):
        for name, fn in fns.items():
            fn()
    times = {name: [] for name in fns}
    for i in range(args.iters):
        if i >= 3 and time.perf_counter() - t_start > args.budget_s:
            break                             # out of time: keep what was measured
        for name, fn in (list(fns.items()) if i % 2 == 0 else list(fns.items())[::-1]):
            syncs[name]()
            t0 = time.perf_counter()
            fn()
            syncs[name]()
            times[name].append((time.perf_counter() - t0) * 1e3)
    out = {name: {"min_ms": round(min(t), 3), "median_ms": round(statistics.median(t), 3),
                  "all_ms": [round(x, 3) for x in t]} for name, t in times.items() if t}
    if "torch" in out and "minitune_cupy" in out:
        out["ratio_median_minitune_over_torch"] = round(
            out["minitune_cupy"]["median_ms"] / out["torch"]["median_ms"], 3)
        out["ratio_min_minitune_over_torch"] = round(
            out["minitune_cupy"]["min_ms"] / out["torch"]["min_ms"], 3)
    return out


def _import_torch(report):
    """torch with TF32 off, or None (recorded in the report) when it is absent or has no CUDA."""
    try:
        import torch
    except ImportError:
        report["versions"]["torch"] = None
        return None
    report["versions"]["torch"] = torch.__version__
    if not torch.cuda.is_available():
        report["versions"]["torch"] += " (no CUDA: skipped)"
        return None
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):               # torch >= 2.9
        matmul.fp32_precision = "ieee"
        report["tf32"]["torch_matmul_fp32_precision"] = matmul.fp32_precision
    else:
        matmul.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        report["tf32"]["torch_matmul_allow_tf32"] = matmul.allow_tf32
    return torch


def _torch_side(torch, host_weights, train_batch, fwd_batch, dropout=0.0, config=None,
                amp_dtype=None, device="cuda"):
    """The same model in plain PyTorch: returns (train_step, forward) closures. ``dropout``:
    BERT's dropout probability in the training step (benchmarks/bench_kernels.py uses 0.1);
    ``config``: the model's sizes (default CONFIG); ``amp_dtype``: run the step's forward and
    loss under ``torch.autocast("cuda", amp_dtype)`` (benchmarks/bench_step.py's bf16);
    ``device``: "cpu" checks the code on a machine without a GPU."""
    import torch.nn.functional as tF
    config = config or CONFIG
    dev = torch.device(device)
    P = {n: torch.tensor(w, device=dev, requires_grad=True) for n, w in host_weights.items()}
    opt = torch.optim.AdamW(list(P.values()), lr=LR, weight_decay=WEIGHT_DECAY)
    H, NH = config["hidden_size"], config["num_attention_heads"]
    HS, eps = H // NH, 1e-12

    def lin(x, name):
        return tF.linear(x, P[name + ".weight"], P[name + ".bias"])

    def ln(x, name):
        return tF.layer_norm(x, (H,), P[name + ".weight"], P[name + ".bias"], eps)

    def logits_of(ids, types, mask, drop_p=0.0):
        B, T = ids.shape

        def drop(t):
            return tF.dropout(t, drop_p, training=True) if drop_p else t
        e = "bert.embeddings."
        x = (tF.embedding(ids, P[e + "word_embeddings.weight"])
             + tF.embedding(torch.arange(T, device=dev), P[e + "position_embeddings.weight"])
             + tF.embedding(types, P[e + "token_type_embeddings.weight"]))
        x = drop(ln(x, e + "LayerNorm"))
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for i in range(config["num_hidden_layers"]):
            p = f"bert.encoder.layer.{i}."

            def heads(t):
                return t.view(B, T, NH, HS).transpose(1, 2)          # (B, NH, T, HS)
            q, k, v = (heads(lin(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
            probs = drop(torch.softmax(q @ k.transpose(-1, -2) * (1.0 / HS ** 0.5) + bias,
                                       dim=-1))
            ctx = (probs @ v).transpose(1, 2).reshape(B, T, H)
            x = ln(drop(lin(ctx, p + "attention.output.dense")) + x,
                   p + "attention.output.LayerNorm")
            h = tF.gelu(lin(x, p + "intermediate.dense"))             # exact (erf) GELU
            x = ln(drop(lin(h, p + "output.dense")) + x, p + "output.LayerNorm")
        pooled = torch.tanh(lin(x[:, 0], "bert.pooler.dense"))
        return lin(drop(pooled), "classifier")

    def to_dev(batch):
        return {k: torch.as_tensor(v, device=dev) for k, v in batch.items()}

    tr, fw = to_dev(train_batch), to_dev(fwd_batch)

    def step():
        with torch.autocast(dev.type, dtype=amp_dtype or torch.bfloat16,
                            enabled=amp_dtype is not None):
            logits = logits_of(tr["input_ids"], tr["token_type_ids"], tr["attention_mask"],
                               dropout)
            loss = tF.cross_entropy(logits, tr["labels"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()                    # synchronises

    def forward():
        with torch.no_grad():
            out = logits_of(fw["input_ids"], fw["token_type_ids"], fw["attention_mask"])
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return out

    return step, forward


def _print_summary(report):
    for phase in ("train_step_32x128", "forward_64x128"):
        r = report.get(phase, {})
        parts = [f"{name} min {s['min_ms']:.1f} ms, median {s['median_ms']:.1f} ms"
                 for name, s in r.items() if isinstance(s, dict) and "min_ms" in s]
        ratio = r.get("ratio_median_minitune_over_torch")
        print(f"{phase}: " + "; ".join(parts)
              + (f"; minitune/torch (median) {ratio:.2f}x" if ratio else ""))
    print(f"elapsed {report['elapsed_s']:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
