"""SST2-A epoch time, minitune vs PyTorch + transformers, on the recipe's real batches.

Both sides train all-MiniLM-L6-v2 (sequence classification, AdamW, dropout on) on the same
batches of the SST2-A order (seed 0: default_rng(0).permutation(67349)[:16000], batches of 32,
truncated to 64 tokens, padded to each batch's longest). K batches spread evenly over the
epoch are timed, interleaved (minitune then torch on batch i, the reverse on batch i+1), so
machine noise hits both sides alike. Printed: per side the total and minimum step times, the
projected epoch (total x 500 / K), and the median of the per-batch ratios minitune/torch.

    .refenv/bin/python benchmarks/bench_sst2_epoch.py [--batches 40] [--threads 2]

Needs torch + transformers (not minitune dependencies) and ../shared/data/sst2.
"""
import os
import sys


def _threads(argv, default=2):
    """BLAS and OpenMP read their thread counts when loaded: set them before any import."""
    n = default
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            n = int(argv[i + 1])
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    return n


THREADS = _threads(sys.argv)

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minitune import data as D  # noqa: E402
from minitune.io import resolve_model_dir  # noqa: E402
from minitune.models import BertForSequenceClassification  # noqa: E402
from minitune.optim import AdamW, param_groups_with_weight_decay  # noqa: E402
from minitune.tokenizer import Tokenizer  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"
STEPS_PER_EPOCH = 500


def sst2a_batches(k, seed=0):
    """K batches spread evenly over the SST2-A epoch (as dicts of int64 arrays)."""
    tok = Tokenizer.from_pretrained("all-MiniLM-L6-v2")
    raw = D.read_classification(DATA)
    label2id = D.build_label_map(raw.labels)
    examples = D.subset(D.encode_classification(tok, raw, label2id, 64), 16000, seed)
    loader = D.DataLoader(examples, 32, shuffle=False)
    plan = loader.batch_indices(0)
    picks = np.linspace(0, len(plan) - 1, k).round().astype(int)
    return [loader.collate(plan[i]) for i in picks]


def minitune_step():
    model = BertForSequenceClassification.from_pretrained("all-MiniLM-L6-v2", num_labels=2)
    model.train()
    opt = AdamW(param_groups_with_weight_decay(model.named_parameters(), 0.01), lr=5e-5)

    def step(b):
        out = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], labels=b["labels"])
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        return out.loss.item()
    return step


def torch_step():
    import torch
    import transformers
    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification.from_pretrained(
        str(resolve_model_dir("all-MiniLM-L6-v2")), num_labels=2)
    model.train()
    no_decay = [n.endswith("bias") or "LayerNorm" in n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    opt = torch.optim.AdamW(
        [{"params": [p for p, s in zip(params, no_decay) if not s], "weight_decay": 0.01},
         {"params": [p for p, s in zip(params, no_decay) if s], "weight_decay": 0.0}],
        lr=5e-5, betas=(0.9, 0.999), eps=1e-8)

    def step(b):
        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in b.items()}
        out = model(**t)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.item()
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=40, help="timed batches per side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"needs {DATA} (the shared SST-2 data)")
    batches = sst2a_batches(args.batches)
    sides = {"minitune": minitune_step(), "torch": torch_step()}
    for f in sides.values():                          # warm-up: one untimed step each
        f(batches[0])
    times = {n: [] for n in sides}
    for i, b in enumerate(batches):
        for n in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
            gc.collect()      # untimed: one side's collection would scan both sides' objects
            t = time.perf_counter()
            sides[n](b)
            times[n].append(time.perf_counter() - t)
    ratios = [a / b for a, b in zip(times["minitune"], times["torch"])]
    result = {"threads": THREADS, "batches": args.batches,
              "mean_padded_len": float(np.mean([b["input_ids"].shape[1] for b in batches])),
              "ratio_median": statistics.median(ratios),
              "ratio_of_totals": sum(times["minitune"]) / sum(times["torch"])}
    for n, ts in times.items():
        result[n] = {"total_s": sum(ts), "min_s": min(ts), "median_s": statistics.median(ts),
                     "projected_epoch_s": sum(ts) * STEPS_PER_EPOCH / len(ts)}
        print(f"{n:9s} {len(ts)} steps: total {sum(ts):7.1f} s  min {min(ts):.3f} s  median "
              f"{statistics.median(ts):.3f} s  -> epoch of {STEPS_PER_EPOCH} steps "
              f"~{result[n]['projected_epoch_s']:.0f} s")
    print(f"ratio minitune/torch: median per batch {result['ratio_median']:.2f}, "
          f"of totals {result['ratio_of_totals']:.2f}  (threads {THREADS}, mean padded length "
          f"{result['mean_padded_len']:.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
