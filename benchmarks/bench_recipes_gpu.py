"""The fine-tuning recipes on one GPU: minitune against PyTorch + Transformers, same recipe,
same batches, same GPU -- wall time and dev score.

Recipes (docs/finetuning.md; examples/sst2.sh and examples/conll.sh hold the CPU commands):
  sst2a    all-MiniLM-L6-v2 on the seeded 16,000-example SST-2 subset, 1 epoch (500 steps),
           max length 64, batch 32, AdamW 5e-5, weight decay 0.01 (not biases/LayerNorm),
           10% warm-up then linear decay; dev accuracy
  conlla   CoNLL-2003 NER, 3 epochs, max length 128; dev entity F1
Sides:
  minitune          the Trainer (`minitune train --device cuda`): kernels, our GEMM, the step
                    as a CUDA graph; --precision fp32 and bf16
  torch             transformers' BertFor*Classification from the same model directory,
                    trained on minitune's own batches (the same order and padding), AdamW with
                    the same groups and schedule, TF32 off; fp32 and torch.autocast(bfloat16)
                    (only when torch and transformers import)
Reported per run: wall time of the training loop (steps only, and steps + dev evaluation),
median step time, the dev score. The CPU figures to compare the scores with are in
docs/results.md (seed 0: SST2-A dev accuracy 0.8624, CONLL-A entity F1 0.8867).

Usage (repo root, GPU machine):
    PYTHONPATH=. python benchmarks/bench_recipes_gpu.py --model DIR --data DIR
        [--recipes sst2a,conlla] [--precisions fp32,bf16] [--sides minitune,torch]
        [--max-steps N] [--budget-s 300] [--json out.json]
DIR for --data holds sst2/{train,dev}.tsv and conll2003/{train,dev}.txt (../shared/data's
layout); --model a BERT checkpoint directory with its tokenizer (all-MiniLM-L6-v2's).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("CUPY_TF32", "0")

import numpy as np  # noqa: E402

from minitune import backend  # noqa: E402
from minitune import data as D  # noqa: E402
from minitune.optim import warmup_steps_from_ratio  # noqa: E402
from minitune.train import TrainArgs, Trainer  # noqa: E402

RECIPES = {
    "sst2a": dict(task="classify", train="sst2/train.tsv", dev="sst2/dev.tsv",
                  max_train_examples=16000, epochs=1, max_len=64),
    "conlla": dict(task="ner", train="conll2003/train.txt", dev="conll2003/dev.txt",
                   epochs=3, max_len=128),
}
COMMON = dict(batch_size=32, lr=5e-5, warmup_ratio=0.1, weight_decay=0.01, seed=0,
              progress=False, save_steps=0)


def recipe_args(name, model, data, out, precision, max_steps, device):
    spec = dict(RECIPES[name])
    spec["train"], spec["dev"] = str(Path(data) / spec["train"]), str(Path(data) / spec["dev"])
    return TrainArgs(model=model, out=str(out), precision=precision, max_steps=max_steps,
                     overwrite=True, device=device, **COMMON, **spec)


class StepTimes:
    """A callback-free step timer: wraps Trainer.training_step."""

    def __init__(self, trainer):
        self.times, inner = [], trainer.training_step

        def timed():
            t0 = time.perf_counter()
            logs = inner()
            self.times.append(time.perf_counter() - t0)
            return logs
        trainer.training_step = timed


def minitune_run(args):
    t0 = time.perf_counter()
    trainer = Trainer(args)
    setup_s = time.perf_counter() - t0
    steps = StepTimes(trainer)
    t1 = time.perf_counter()
    result = trainer.fit()
    graphs = trainer._graphs
    return {"setup_s": round(setup_s, 2), "fit_s": round(time.perf_counter() - t1, 2),
            "steps_s": round(sum(steps.times), 2), "steps": len(steps.times),
            "median_step_ms": round(1e3 * statistics.median(steps.times), 2),
            "dev": result.get("dev"),
            "graphs": None if graphs is None else {
                "captured": graphs.graphed.captures,
                "disabled_because": graphs.graphed.disabled_because}}


def torch_run(torch, transformers, args):
    """The recipe in PyTorch + Transformers on minitune's batches (see the module docstring)."""
    trainer = Trainer(TrainArgs(**{**vars(args), "device": "cpu", "out": args.out + "-data"}))
    dev = torch.device("cuda" if args.device == "cuda" else "cpu")
    cls = (transformers.BertForSequenceClassification if args.task == "classify"
           else transformers.BertForTokenClassification)
    model = cls.from_pretrained(args.model, num_labels=len(trainer.id2label),
                                dtype=torch.float32).to(dev).train()   # float16 files too
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm"
                                                            in n)]
    rest = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=args.lr, eps=1e-8)
    total = trainer.total_steps
    warmup = warmup_steps_from_ratio(args.warmup_ratio, total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: s / max(1, warmup) if s < warmup
                                              else max(0.0, (total - s) / max(1, total - warmup)))
    amp_on = args.precision == "bf16"
    times = []
    t0 = time.perf_counter()
    for _ in range(total):
        batch = trainer._next_batches()[0]
        t = time.perf_counter()
        b = {k: torch.as_tensor(v, device=dev) for k, v in batch.items()}
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp_on):
            loss = model(**b).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        times.append(time.perf_counter() - t)
    steps_s = time.perf_counter() - t0

    scores = torch_dev_scores(torch, model, trainer, dev, amp_on)
    return {"steps_s": round(steps_s, 2), "steps": len(times),
            "fit_s": round(time.perf_counter() - t0, 2),
            "median_step_ms": round(1e3 * statistics.median(times), 2), "dev": scores}


def torch_dev_scores(torch, model, trainer, dev, amp_on):
    """The dev score of the PyTorch model, read out by minitune's task code (the same
    batching by length, the same first-sub-token rule and metrics)."""
    examples, task = trainer.examples["dev"], trainer.task
    loader = D.DataLoader(examples, trainer.args.eval_batch_size, shuffle=False,
                          group_by_length=True, pad_id=trainer.tokenizer.pad_token_id)
    predictions = [None] * len(examples)
    model.eval()
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp_on):
        for batch in loader:
            logits = model(**{k: torch.as_tensor(batch[k], device=dev) for k in
                              ("input_ids", "attention_mask", "token_type_ids")}).logits
            logits = logits.float().cpu().numpy()
            for row, i in enumerate(batch.indices):
                predictions[i] = task.predict(logits[row], examples[i], trainer.id2label)
    model.train()
    return task.metrics(trainer.raw["dev"], predictions, trainer.id2label)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--recipes", default="sst2a")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--sides", default="minitune,torch")
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--budget-s", type=float, default=300.0)
    ap.add_argument("--json")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: check the script on a machine without a GPU (use --max-steps)")
    args = ap.parse_args()
    if args.device == "cuda" and not backend.gpu_available():
        print("bench_recipes_gpu: no CUDA device visible to CuPy", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    report = {"runs": {}}
    try:
        import torch
        import transformers
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        report["versions"] = {"torch": torch.__version__,
                              "transformers": transformers.__version__}
    except ImportError as e:
        torch = transformers = None
        report["versions"] = {"torch": f"unavailable: {e}"}
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes.split(","):
            for precision in args.precisions.split(","):
                for side in args.sides.split(","):
                    key = f"{recipe} {precision} {side}"
                    if time.perf_counter() - t0 > args.budget_s:
                        report["runs"][key] = "skipped: out of time"
                        continue
                    if side == "torch" and torch is None:
                        report["runs"][key] = "skipped: torch/transformers unavailable"
                        continue
                    run = recipe_args(recipe, args.model, args.data,
                                      Path(tmp) / key.replace(" ", "-"), precision,
                                      args.max_steps, args.device)
                    try:
                        result = (minitune_run(run) if side == "minitune"
                                  else torch_run(torch, transformers, run))
                    except Exception as e:           # keep going: one run must not hide others
                        result, failed = {"error": f"{type(e).__name__}: {e}"}, True
                    report["runs"][key] = result
                    print(key, json.dumps(result), flush=True)
                    report["elapsed_s"] = round(time.perf_counter() - t0, 1)
                    if args.json:
                        Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
