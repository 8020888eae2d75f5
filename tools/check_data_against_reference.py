"""Check that minitune.data feeds the model exactly what the reference scripts do.

Builds every SST2-A and CONLL-A training batch both ways (the reference helpers in
../shared/reference with the Hugging Face tokenizer; minitune's readers, Tokenizer,
subset and DataLoader) and compares input_ids, attention_mask and labels. Needs the
reference venv (torch, transformers; `make refenv`) and the shared data:

    .refenv/bin/python tools/check_data_against_reference.py [--seed 0]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(SHARED / "reference"))

import benchlib  # noqa: E402
import hf_conll  # noqa: E402
import hf_sst2  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from minitune import data  # noqa: E402
from minitune.io import resolve_model_dir  # noqa: E402
from minitune.tokenizer import Tokenizer  # noqa: E402


def same(name, ref, ours):
    if not np.array_equal(ref.numpy(), ours):
        raise SystemExit(f"MISMATCH in {name}")


def check_sst2(hf, tok, seed):
    train_tsv = SHARED / "data" / "sst2" / "train.tsv"
    texts, labels = benchlib.read_tsv(train_tsv)
    perm = np.random.default_rng(seed).permutation(len(texts))[:16000]
    ref_ids = hf([texts[i] for i in perm], truncation=True, max_length=64)["input_ids"]
    ref_labels = [labels[i] for i in perm]

    train = data.subset(data.read_classification(train_tsv), 16000, seed)
    examples = data.encode_classification(tok, train, ["0", "1"], max_length=64)
    loader = data.DataLoader(examples, 32, shuffle=False, pad_id=tok.pad_token_id)
    ref_batches = hf_sst2.batches(ref_ids, ref_labels, list(range(16000)), 32, hf.pad_token_id)
    n = 0
    for (ids, mask, y), batch in zip(ref_batches, loader, strict=True):
        same("SST2-A input_ids", ids, batch["input_ids"])
        same("SST2-A attention_mask", mask, batch["attention_mask"])
        same("SST2-A labels", y, batch["labels"])
        n += 1
    print(f"SST2-A seed {seed}: {n} batches identical")


def check_conll(hf, tok, seed, epochs=3):
    train_txt = SHARED / "data" / "conll2003" / "train.txt"
    label2id = {label: i for i, label in enumerate(benchlib.CONLL_LABELS)}
    ref, ref_trunc = hf_conll.encode(hf, benchlib.read_conll(train_txt), 128, label2id)

    # The reference trains on the tags as written: keep them (to_iob2=False).
    sentences = data.read_conll(train_txt, to_iob2=False)
    examples, n_trunc = data.encode_ner(tok, sentences, label2id, max_length=128)
    assert n_trunc == ref_trunc, (n_trunc, ref_trunc)
    loader = data.DataLoader(examples, 32, shuffle=True, seed=seed, pad_id=tok.pad_token_id)
    n = 0
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        order = np.random.default_rng(seed + epoch).permutation(len(ref))
        starts = range(0, len(order), 32)
        for s, batch in zip(starts, loader, strict=True):
            ids, mask, labels = hf_conll.make_batch([ref[i] for i in order[s:s + 32]],
                                                    hf.pad_token_id)
            same("CONLL-A input_ids", ids, batch["input_ids"])
            same("CONLL-A attention_mask", mask, batch["attention_mask"])
            same("CONLL-A labels", labels, batch["labels"])
            n += 1
    print(f"CONLL-A seed {seed}: {n} batches over {epochs} epochs identical "
          f"({n_trunc} truncated sentences)")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model_dir = str(resolve_model_dir("all-MiniLM-L6-v2"))
    hf = AutoTokenizer.from_pretrained(model_dir)
    tok = Tokenizer.from_pretrained(model_dir)
    check_sst2(hf, tok, args.seed)
    check_conll(hf, tok, args.seed)


if __name__ == "__main__":
    main()
