"""Write the Chinese-checkpoint fixtures used by tests/models/test_bert_chinese_parity.py.

A tiny random Chinese BERT, shipped the way many Chinese checkpoints are (bert-base-chinese,
hfl/chinese-roberta-wwm-ext, MacBERT): ``config.json``, ``pytorch_model.bin`` with the
pre-training heads (``cls.*``), ``vocab.txt`` and a ``tokenizer_config.json`` -- and no
``tokenizer.json``, so a tokenizer must be built from the vocabulary. Its vocabulary is
laid out like bert-base-chinese's 21,128 entries ([PAD], [unused1..99], [UNK], [CLS], [SEP],
[MASK], <S>, <T>, single characters, then "##" pieces), but holds only the characters of
the shared Chinese data (ChnSentiCorp, CLUENER) that occur at least MIN_COUNT times, so the
rarer ones become [UNK] as in real use.

Then transformers (BertTokenizerFast, BertForSequenceClassification,
BertForTokenClassification) records what minitune must reproduce:

    tiny_chinese_bert/              the checkpoint (vocab.txt only, no tokenizer.json)
    chinese_ids.npz                 for every text of the four shared Chinese files: an
                                    8-byte BLAKE2b digest of its ids ([CLS] ... [SEP], no
                                    truncation, int32 little-endian) and its length
    chinese_tokenizer_cases.json    ids, tokens and word_ids of hand-picked texts (mixed
                                    scripts, full-width forms, accents, [UNK]) under each
                                    tokenizer_config.json variant, and of the first texts of
                                    each shared file
    tiny_chinese_outputs.npz        float64 logits, loss and every parameter's gradient of a
                                    sentence classifier (K=2) and a character-level token
                                    classifier (K=21, CLUENER's BIO tags) on real texts

Run from the repository root in the reference environment (``make refenv``):

    .refenv/bin/python tools/make_chinese_fixtures.py

The shared data is read from ../shared/data (beside the repository).
"""

import hashlib
import json
import os
import sys
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported

import numpy as np
import torch
import transformers
from make_hf_fixtures import check_sizes, spread_weights  # tools/ is on sys.path
from transformers import (BertConfig, BertForPreTraining, BertForSequenceClassification,
                          BertForTokenClassification, BertTokenizerFast)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MODEL_DIR = FIXTURES / "tiny_chinese_bert"
DATA = ROOT.parent / "shared" / "data"
MIN_COUNT = 3  # characters rarer than this in the shared data are left out: [UNK]

# The four shared Chinese files, as (fixture key, path under DATA, format).
SHARED_FILES = (
    ("chnsenticorp_train", "chnsenticorp/train.tsv", "tsv"),
    ("chnsenticorp_dev", "chnsenticorp/dev.tsv", "tsv"),
    ("cluener_train", "cluener/train.json", "json"),
    ("cluener_dev", "cluener/dev.json", "json"),
)

TINY_CONFIG = {
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "pad_token_id": 0,
}
# Keys bert-base-chinese's config.json carries that BERT itself does not use.
CHINESE_CONFIG_EXTRAS = {
    "directionality": "bidi", "pooler_fc_size": 768, "pooler_num_attention_heads": 12,
    "pooler_num_fc_layers": 3, "pooler_size_per_head": 128, "pooler_type": "first_token_transform",
}
TOKENIZER_CONFIG = {"do_lower_case": True, "tokenize_chinese_chars": True,
                    "model_max_length": 512}
# tokenizer_config.json variants checked on the hand-picked cases (None: no file at all).
CONFIG_VARIANTS = {
    "checkpoint": TOKENIZER_CONFIG,
    "no_config_file": None,
    "cased": {"do_lower_case": False},
    "lower_keep_accents": {"do_lower_case": True, "strip_accents": False},
    "cased_strip_accents": {"do_lower_case": False, "strip_accents": True},
    "no_chinese_split": {"do_lower_case": True, "tokenize_chinese_chars": False},
    "added_tokens": TOKENIZER_CONFIG,
}
# The added_tokens.json of the "added_tokens" variant: tokens after the vocabulary.
ADDED_TOKENS = ["[NEW_TOKEN]", "武当山"]
CASES = [
    "张三在北京工作。",
    "iPhone5s售价５９９９元，比去年便宜了20%！",
    "《FarmVille》和DOTA2都是游戏；Ｔｅｓｔ　ＡＢＣ（全角）",
    "Café naïve résumé ÉCOLE 东京大学 Straße",
    "我爱自然语言处理 and 東京 and 𠀋𪚥 (extension B)",
    "emoji 😀👍🏽 在这里 tab\there\u00a0nbsp\u200bzero-width",
    "“引号”‘单引号’……——【括号】〈书名〉「」『』",
    "罕见字：龘靐齉爩 and unknown ﬁ ligature",
    "",
    "   \t  ",
    "[CLS] 特殊 [SEP] 标记 [MASK] [UNK]",
    "张三丰在武当山[NEW_TOKEN]练剑",
]


def shared_texts():
    """{fixture key: [(line number, text), ...]} for the four shared Chinese files.

    ChnSentiCorp lines are ``text<TAB>label`` (no header); CLUENER lines are JSON objects
    with a "text" key. Blank lines are skipped.
    """
    out = {}
    for key, name, fmt in SHARED_FILES:
        path = DATA / name
        if not path.is_file():
            sys.exit(f"needs {path} (the shared Chinese data)")
        rows = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                text = (line.rstrip("\n").rsplit("\t", 1)[0] if fmt == "tsv"
                        else json.loads(line)["text"])
                rows.append((lineno, text))
        out[key] = rows
    return out


def ids_digest(ids):
    """8-byte BLAKE2b digest of a list of token ids (as int32 little-endian) -> uint64."""
    raw = np.asarray(ids, dtype="<i4").tobytes()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


# ----------------------------------------------------------------------------- vocabulary


def _strip_accents_lower(text):
    """What BERT's normalizer does with do_lower_case: lowercase, NFD, drop marks (Mn)."""
    return "".join(c for c in unicodedata.normalize("NFD", text.lower())
                   if unicodedata.category(c) != "Mn")


def _is_cjk(c):
    return 0x4E00 <= ord(c) <= 0x9FFF or 0x3400 <= ord(c) <= 0x4DBF


def build_vocab(texts):
    """bert-base-chinese's layout, filled from the shared texts' characters.

    Single characters seen MIN_COUNT times or more (raw and lowercased/accent-stripped
    forms), "##c" for every non-CJK one of them (so Latin words and digit runs split into
    pieces), whole ASCII words seen 20 times or more and their "##" forms.
    """
    chars, words = Counter(), Counter()
    for text in texts:
        chars.update(c for c in text if not c.isspace())
        chars.update(c for c in _strip_accents_lower(text) if not c.isspace())
        for w in "".join(c if c.isascii() and c.isalnum() else " " for c in text).split():
            words[w.lower()] += 1
    singles = sorted(c for c, n in chars.items() if n >= MIN_COUNT)
    pieces = ["##" + c for c in singles if not _is_cjk(c)]
    whole = sorted(w for w, n in words.items() if n >= 20 and len(w) > 1)
    pieces += ["##" + w for w in whole]
    specials = (["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)]
                + ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "<S>", "<T>"])
    return specials + singles + whole + pieces


# ----------------------------------------------------------------------------- checkpoint


def write_checkpoint(vocab):
    """The pre-training model (encoder + cls.* heads, tied decoder) as pytorch_model.bin."""
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    for stale in MODEL_DIR.iterdir():
        stale.unlink()
    (MODEL_DIR / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    (MODEL_DIR / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2)
                                                     + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), **TINY_CONFIG)
    model = BertForPreTraining(config).float()
    spread_weights(model, seed=0)
    model.tie_weights()
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, MODEL_DIR / "pytorch_model.bin")
    cfg = config.to_dict()
    for key in ("transformers_version", "torch_dtype", "dtype"):
        cfg.pop(key, None)
    cfg.update(CHINESE_CONFIG_EXTRAS, architectures=["BertForMaskedLM"], model_type="bert")
    (MODEL_DIR / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    assert not (MODEL_DIR / "tokenizer.json").exists()


# ----------------------------------------------------------------------------- token ids


def tokenizer_for(directory):
    tok = BertTokenizerFast.from_pretrained(directory)
    assert type(tok.backend_tokenizer.model).__name__ == "WordPiece"
    return tok


def make_ids(tok, texts):
    """Per shared file: digests (N,) uint64 and lengths (N,) int32 of every text's ids."""
    rec = {}
    for key, rows in texts.items():
        enc = tok([t for _, t in rows], truncation=False, padding=False)
        ids = enc["input_ids"]
        rec[key + "/digest"] = np.array([ids_digest(r) for r in ids], dtype=np.uint64)
        rec[key + "/length"] = np.array([len(r) for r in ids], dtype=np.int32)
        rec[key + "/line"] = np.array([n for n, _ in rows], dtype=np.int32)
        n_unk = sum(r.count(tok.unk_token_id) for r in ids)
        print(f"{key}: {len(rows)} texts, {sum(map(len, ids))} tokens, {n_unk} [UNK]")
    np.savez_compressed(FIXTURES / "chinese_ids.npz", **rec)


def encode_record(tok, texts, **kwargs):
    enc = tok(texts, **kwargs)
    return {
        "input_ids": [list(map(int, r)) for r in enc["input_ids"]],
        "token_type_ids": [list(map(int, r)) for r in enc["token_type_ids"]],
        "attention_mask": [list(map(int, r)) for r in enc["attention_mask"]],
        "word_ids": [enc.word_ids(i) for i in range(len(texts))],
        "tokens": [tok.convert_ids_to_tokens(r) for r in enc["input_ids"]],
    }


def make_cases(texts, vocab, tmp_dir):
    """Hand-picked texts under each config variant, and the first shared texts."""
    doc = {"source": "tools/make_chinese_fixtures.py",
           "transformers_version": transformers.__version__, "variants": []}
    for name, config in CONFIG_VARIANTS.items():
        directory = tmp_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "vocab.txt").write_bytes((MODEL_DIR / "vocab.txt").read_bytes())
        if config is not None:
            (directory / "tokenizer_config.json").write_text(json.dumps(config))
        added = None
        if name == "added_tokens":
            added = {t: len(vocab) + i for i, t in enumerate(ADDED_TOKENS)}
            (directory / "added_tokens.json").write_text(json.dumps(added, ensure_ascii=False))
        tok = tokenizer_for(directory)
        plain = {"padding": True, "truncation": True, "max_length": 64}
        variant = {"name": name, "tokenizer_config": config, "added_tokens": added,
                   "texts": CASES, "kwargs": plain, **encode_record(tok, CASES, **plain)}
        # Every character a word (character-level NER input).
        words = [list(t.replace(" ", "")) for t in CASES[:4]]
        split = {**plain, "is_split_into_words": True}
        variant["split_words"] = {"words": words, "kwargs": split,
                                  **encode_record(tok, words, **split)}
        doc["variants"].append(variant)
    tok = tokenizer_for(MODEL_DIR)
    firsts = [t for rows in texts.values() for _, t in rows[:5]]
    kwargs = {"padding": True, "truncation": True, "max_length": 128}
    doc["shared_firsts"] = {"texts": firsts, "kwargs": kwargs,
                            **encode_record(tok, firsts, **kwargs)}
    (FIXTURES / "chinese_tokenizer_cases.json").write_text(compact_json(doc), encoding="utf-8")


def compact_json(doc):
    """A dict as JSON with one line per key, and one line per item of a list value: small
    enough to commit, still readable in a diff."""
    dump = lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":"))  # noqa: E731
    lines = []
    for key, value in doc.items():
        if isinstance(value, list):
            items = ",\n  ".join(dump(v) for v in value)
            lines.append(f"{dump(key)}: [\n  {items}\n ]")
        else:
            lines.append(f"{dump(key)}: {dump(value)}")
    return "{\n " + ",\n ".join(lines) + "\n}\n"


# ----------------------------------------------------------------------------- outputs


def run_float64(model, enc, labels, prefix):
    """Forward + backward in float64: inputs, logits, loss and 'grad/<name>' of every
    parameter, each key under `prefix`."""
    model = model.double().eval()
    model.zero_grad()
    t = {k: torch.from_numpy(enc[k]) for k in ("input_ids", "attention_mask", "token_type_ids")}
    out = model(**t, labels=torch.from_numpy(labels))
    out.loss.backward()
    rec = {**{k: enc[k] for k in t}, "labels": labels,
           "logits": out.logits.detach().numpy(), "loss": np.array(out.loss.item())}
    for name, p in model.named_parameters():
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        rec["grad/" + name] = grad.detach().numpy().copy()
    # The new head is drawn by transformers at load time: store it so the test can copy it.
    rec["head/weight"] = model.classifier.weight.detach().numpy().astype(np.float32)
    rec["head/bias"] = model.classifier.bias.detach().numpy().astype(np.float32)
    return {prefix + k: v for k, v in rec.items()}


def cluener_char_labels(record, label2id):
    """One BIO tag id per character of a CLUENER record (B- at a span start, I- after)."""
    tags = ["O"] * len(record["text"])
    for etype, entities in record["label"].items():
        for spans in entities.values():
            for start, end in spans:
                tags[start] = "B-" + etype
                for i in range(start + 1, end + 1):
                    tags[i] = "I-" + etype
    return [label2id[t] for t in tags]


def make_outputs(texts):
    tok = tokenizer_for(MODEL_DIR)
    rec = {}

    # Sentence classification on three ChnSentiCorp dev reviews, cut to 24 tokens.
    rows = [t for _, t in texts["chnsenticorp_dev"][:3]]
    enc = tok(rows, padding=True, truncation=True, max_length=24, return_tensors="np")
    enc = {k: enc[k].astype(np.int64) for k in enc}
    torch.manual_seed(0)
    seq = BertForSequenceClassification.from_pretrained(
        MODEL_DIR, num_labels=2, attn_implementation="eager")
    rec.update(run_float64(seq, enc, np.array([1, 0, 1], dtype=np.int64), "seq/"))

    # Character-level token classification on three CLUENER dev sentences: each character
    # a word, the first sub-token of each word labelled, the rest -100.
    types = ["address", "book", "company", "game", "government", "movie", "name",
             "organization", "position", "scene"]
    id2label = ["O"] + [f"{p}-{t}" for t in types for p in "BI"]
    label2id = {t: i for i, t in enumerate(id2label)}
    path = DATA / "cluener" / "dev.json"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:3]]
    words = [list(r["text"]) for r in records]
    enc_obj = tok(words, is_split_into_words=True, padding=True, truncation=True,
                  max_length=40, return_tensors="np")
    enc = {k: enc_obj[k].astype(np.int64) for k in ("input_ids", "attention_mask",
                                                     "token_type_ids")}
    labels = np.full(enc["input_ids"].shape, -100, dtype=np.int64)
    for i, record in enumerate(records):
        char_ids = cluener_char_labels(record, label2id)
        previous = None
        for pos, w in enumerate(enc_obj.word_ids(i)):
            if w is not None and w != previous:
                labels[i, pos] = char_ids[w]
            previous = w
    torch.manual_seed(1)
    ner = BertForTokenClassification.from_pretrained(
        MODEL_DIR, id2label=dict(enumerate(id2label)), label2id=label2id,
        attn_implementation="eager")
    rec.update(run_float64(ner, enc, labels, "tok/"))
    rec["tok/id2label"] = np.array(id2label)
    np.savez_compressed(FIXTURES / "tiny_chinese_outputs.npz", **rec)


def main():
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    texts = shared_texts()
    vocab = build_vocab(t for rows in texts.values() for _, t in rows)
    print(f"vocabulary: {len(vocab)} tokens")
    write_checkpoint(vocab)
    make_ids(tokenizer_for(MODEL_DIR), texts)
    with tempfile.TemporaryDirectory() as tmp:
        make_cases(texts, vocab, Path(tmp))
    make_outputs(texts)
    check_sizes()


if __name__ == "__main__":
    main()
