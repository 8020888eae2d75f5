"""The first training steps of SST2-A in minitune and in PyTorch + transformers, side by side.

Both start from all-MiniLM-L6-v2 with the SAME classifier head (torch draws it after
torch.manual_seed(seed); minitune copies it), run with dropout off (dropout masks cannot be
shared between the libraries), and take the same batches (the SST2-A order), AdamW
(lr 5e-5, weight decay 0.01 except bias/LayerNorm) and the warm-up schedule of the 500-step
epoch. Printed: each step's loss on both sides, and after the last step the largest
parameter difference. Agreement to float32 round-off means minitune's forward, backward,
optimiser and schedule do what the reference recipe does.

    HF_HUB_OFFLINE=1 .refenv/bin/python tools/compare_first_steps.py [--steps 10]

Needs torch + transformers (not minitune dependencies) and ../shared/data/sst2.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_sst2_epoch import sst2a_batches  # noqa: E402

from minitune.io import resolve_model_dir  # noqa: E402
from minitune.models import BertForSequenceClassification  # noqa: E402
from minitune.optim import (AdamW, linear_schedule_with_warmup,  # noqa: E402
                            param_groups_with_weight_decay)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    import transformers
    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    ref = transformers.BertForSequenceClassification.from_pretrained(
        str(resolve_model_dir("all-MiniLM-L6-v2")), num_labels=2, attn_implementation="eager")
    ref.eval()                                          # dropout off; everything else trains
    no_decay = lambda n: n.endswith("bias") or "LayerNorm" in n  # noqa: E731
    named = list(ref.named_parameters())
    ref_opt = torch.optim.AdamW(
        [{"params": [p for n, p in named if not no_decay(n)], "weight_decay": 0.01},
         {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0}],
        lr=5e-5, betas=(0.9, 0.999), eps=1e-8)
    ref_sched = transformers.get_linear_schedule_with_warmup(ref_opt, 50, 500)

    model = BertForSequenceClassification.from_pretrained("all-MiniLM-L6-v2", num_labels=2)
    model.load_state_dict({"classifier.weight": ref.classifier.weight.detach().numpy(),
                           "classifier.bias": ref.classifier.bias.detach().numpy()},
                          strict=False)
    model.eval()
    opt = AdamW(param_groups_with_weight_decay(model.named_parameters(), 0.01), lr=5e-5)
    sched = linear_schedule_with_warmup(opt, 50, 500)

    batches = sst2a_batches(500, args.seed)[:args.steps]
    print("step  loss minitune   loss torch     |diff|")
    for i, b in enumerate(batches, 1):
        out = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], labels=b["labels"])
        out.loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in b.items()}
        ref_out = ref(**t)
        ref_out.loss.backward()
        ref_opt.step()
        ref_sched.step()
        ref_opt.zero_grad(set_to_none=True)
        a, r = out.loss.item(), ref_out.loss.item()
        print(f"{i:4d}  {a:.7f}     {r:.7f}     {abs(a - r):.2e}")
    ref_params = dict(ref.named_parameters())
    worst = max((float(np.abs(p.data - ref_params[n].detach().numpy()).max()), n)
                for n, p in model.named_parameters())
    print(f"after {args.steps} steps: largest parameter difference {worst[0]:.2e} ({worst[1]})")


if __name__ == "__main__":
    main()
