"""Check that a directory written by minitune's save_pretrained loads in transformers and agrees.

Run by hand with the reference environment (PyTorch + transformers), from anywhere:

    HF_HUB_OFFLINE=1 .refenv/bin/python tools/check_saved_with_transformers.py OUT_DIR \
        [--text "some text" --text "another"] [--tokenizer DIR]

It loads OUT_DIR with transformers (AutoModelForSequenceClassification or
AutoModelForTokenClassification, chosen from config.json "architectures"; AutoModel for
"BertModel") and with minitune (imported from this repository), runs both in float32 on the
same token ids and prints the max abs difference of the logits (or last_hidden_state).
It exits 1 if transformers reports missing / unexpected / mismatched keys or if the
difference is above --atol (default 1e-4).

Token ids come from the tokenizer saved in OUT_DIR (or --tokenizer); without one, random
ids are drawn. If minitune's Tokenizer also loads, its ids are compared with transformers'.
"""

import argparse
import json
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

DEFAULT_TEXTS = [
    "A short one.",
    "This movie was surprisingly good, although the ending dragged on a little too long.",
    "EU rejects German call to boycott British lamb .",
    "",
]

HF_AUTO = {
    "BertForSequenceClassification": transformers.AutoModelForSequenceClassification,
    "BertForTokenClassification": transformers.AutoModelForTokenClassification,
    "BertModel": transformers.AutoModel,
}


def architecture(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    archs = config.get("architectures") or ["BertModel"]
    if archs[0] not in HF_AUTO:
        sys.exit(f"{model_dir}/config.json: architectures {archs} not one of {sorted(HF_AUTO)}")
    return archs[0], config


def token_ids(tok_dir, texts, vocab_size):
    """(input_ids, attention_mask, token_type_ids) as int64 (B, T), and the HF tokenizer or None."""
    has_tokenizer = tok_dir is not None and (
        (tok_dir / "tokenizer.json").is_file() or (tok_dir / "vocab.txt").is_file()
    )
    if has_tokenizer:
        tok = transformers.AutoTokenizer.from_pretrained(tok_dir)
        enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
        return (enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64),
                enc["token_type_ids"].astype(np.int64)), tok
    print(f"no tokenizer in {tok_dir}: using random token ids")
    rng = np.random.default_rng(0)
    lengths = [12, 7, 3]
    ids = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
    mask = np.zeros_like(ids)
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.integers(1, vocab_size, size=n)
        mask[b, :n] = 1
    return (ids, mask, np.zeros_like(ids)), None


def compare_tokenizers(tok_dir, texts, hf_ids):
    try:
        tok = minitune.Tokenizer.from_pretrained(tok_dir)
        enc = tok(texts, max_length=128, padding=True, truncation=True)
    except (OSError, ValueError, KeyError, AttributeError, ImportError) as e:  # report, go on
        print(f"minitune Tokenizer could not encode ({type(e).__name__}: {e})")
        return True
    same = np.array_equal(np.asarray(enc["input_ids"]), hf_ids)
    print(f"tokenizer: minitune ids {'==' if same else '!='} transformers ids")
    return same


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--text", action="append", help="text to encode (repeatable)")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer dir (default: model_dir)")
    parser.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args()
    model_dir = args.model_dir.resolve()
    texts = args.text or DEFAULT_TEXTS

    arch, config = architecture(model_dir)
    hf_model, info = HF_AUTO[arch].from_pretrained(
        model_dir, output_loading_info=True, attn_implementation="eager"
    )
    hf_model = hf_model.float().eval()
    problems = {k: v for k, v in info.items() if v and k != "error_msgs"}
    problems.update({"error_msgs": info["error_msgs"]} if info.get("error_msgs") else {})
    print(f"{arch} from {model_dir}: transformers loading info {problems or 'clean'}")

    tok_dir = args.tokenizer.resolve() if args.tokenizer else model_dir
    (ids, mask, types), hf_tok = token_ids(tok_dir, texts, config["vocab_size"])
    tokens_ok = compare_tokenizers(tok_dir, texts, ids) if hf_tok is not None else True

    with torch.no_grad():
        hf_out = hf_model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                          token_type_ids=torch.from_numpy(types))
    mt_model = getattr(mt_models, arch).from_pretrained(model_dir, dtype=np.float32)
    if hasattr(mt_model, "eval"):
        mt_model.eval()
    with minitune.no_grad():
        mt_out = mt_model(ids, attention_mask=mask, token_type_ids=types)

    field = "last_hidden_state" if arch == "BertModel" else "logits"
    ref = getattr(hf_out, field).numpy()
    ours = getattr(mt_out, field).numpy()
    if ours.shape != ref.shape:
        print(f"{field}: minitune shape {ours.shape} != transformers {ref.shape}")
        return 1
    worst = float(np.max(np.abs(ours - ref)))  # pad positions included: same mask math
    print(f"{field} {ref.shape}: max abs diff minitune vs transformers = {worst:.3e} "
          f"(limit {args.atol:g})")
    if problems or worst > args.atol or not tokens_ok:
        print("FAIL")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
