"""A Chinese BERT checkpoint shipped as most are (vocab.txt, no tokenizer.json; pre-training
heads in pytorch_model.bin) loads, tokenizes and computes exactly as transformers does.

The fixtures come from tools/make_chinese_fixtures.py (transformers 5, BertTokenizerFast,
eager attention, float64); these tests need neither torch nor transformers. Checked:

* token ids of every text of the shared Chinese files (ChnSentiCorp, CLUENER; 21,548
  texts), through a per-text digest of transformers' ids; skipped without ../shared/data;
* ids, word_ids and tokens of hand-picked texts under each tokenizer_config.json variant
  (lower-casing, accents, Chinese splitting on and off, no config file at all, an
  added_tokens.json);
* logits, loss and the gradient of every parameter of a sentence classifier and a
  character-level token classifier built on the checkpoint, to 1e-9 relative (the bar
  of tests/models/test_bert_parity.py).
"""
import hashlib
import json
import shutil

import numpy as np
import pytest

from paths import FIXTURES, SHARED_DATA

from minitune import Tokenizer
from minitune.testing import assert_close

MODEL_DIR = FIXTURES / "tiny_chinese_bert"
SHARED_FILES = {  # fixture key -> (path under shared/data, how the text is stored)
    "chnsenticorp_train": ("chnsenticorp/train.tsv", "tsv"),
    "chnsenticorp_dev": ("chnsenticorp/dev.tsv", "tsv"),
    "cluener_train": ("cluener/train.json", "json"),
    "cluener_dev": ("cluener/dev.json", "json"),
}
RTOL = 1e-9


def load_npz(name):
    with np.load(FIXTURES / name) as z:
        return {k: z[k] for k in z.files}


def cases():
    return json.loads((FIXTURES / "chinese_tokenizer_cases.json").read_text(encoding="utf-8"))


def rows(x):
    return [[int(v) for v in row] for row in x]


# ----------------------------------------------------------------------------- tokenizer


def test_checkpoint_ships_no_tokenizer_json():
    """The point of the fixture: the tokenizer has to be built from vocab.txt."""
    assert sorted(p.name for p in MODEL_DIR.iterdir()) == [
        "config.json", "pytorch_model.bin", "tokenizer_config.json", "vocab.txt"]
    tok = Tokenizer.from_pretrained(MODEL_DIR)
    n_lines = len((MODEL_DIR / "vocab.txt").read_text(encoding="utf-8").splitlines())
    assert tok.vocab_size == len(tok) == n_lines
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id,
            tok.mask_token_id) == (0, 100, 101, 102, 103)  # bert-base-chinese's layout


def variant_tokenizer(variant, tmp_path):
    """A directory holding the fixture's vocab.txt and the variant's tokenizer_config.json."""
    directory = tmp_path / variant["name"]
    directory.mkdir()
    shutil.copy(MODEL_DIR / "vocab.txt", directory / "vocab.txt")
    if variant["tokenizer_config"] is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(variant["tokenizer_config"]))
    if variant["added_tokens"] is not None:
        (directory / "added_tokens.json").write_text(
            json.dumps(variant["added_tokens"], ensure_ascii=False), encoding="utf-8")
    return Tokenizer.from_pretrained(directory)


def assert_encoding_matches(enc, ref, what):
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert rows(enc[key]) == ref[key], (
            f"{what} {key}:\n ours {rows(enc[key])}\n   hf {ref[key]}\nhf tokens {ref['tokens']}")
    for i, want in enumerate(ref["word_ids"]):
        assert enc.word_ids(i) == want, f"{what} row {i}: word_ids"


@pytest.mark.parametrize("variant", cases()["variants"], ids=lambda v: v["name"])
def test_tokenizer_config_variants_match_hf(variant, tmp_path):
    tok = variant_tokenizer(variant, tmp_path)
    enc = tok(variant["texts"], **variant["kwargs"])
    assert_encoding_matches(enc, variant, variant["name"])
    split = variant["split_words"]
    enc = tok(split["words"], **split["kwargs"])
    assert_encoding_matches(enc, split, variant["name"] + " (one word per character)")


def test_added_tokens_must_continue_the_vocabulary(tmp_path):
    shutil.copy(MODEL_DIR / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "added_tokens.json").write_text('{"[NEW]": 99999}')
    with pytest.raises(ValueError, match=r"added_tokens.json: token '\[NEW\]' has id 99999"):
        Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "added_tokens.json").write_text('{"[NEW]": 4,}')
    with pytest.raises(ValueError,
                       match=r"added_tokens.json:1:\d+: added tokens is not valid JSON"):
        Tokenizer.from_pretrained(tmp_path)


def test_first_shared_texts_match_hf():
    ref = cases()["shared_firsts"]
    enc = Tokenizer.from_pretrained(MODEL_DIR)(ref["texts"], **ref["kwargs"])
    assert_encoding_matches(enc, ref, "first texts of the shared files")


def shared_texts(key):
    """(line number, text) of every non-blank line of a shared Chinese file."""
    name, fmt = SHARED_FILES[key]
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"shared data not found: {path} (the tests read ../shared/data beside "
                    "the repository)")
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            out.append((lineno, line.rsplit("\t", 1)[0] if fmt == "tsv"
                        else json.loads(line)["text"]))
    return path, out


def digest(ids):
    raw = np.asarray(ids, dtype="<i4").tobytes()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


@pytest.mark.parametrize("key", list(SHARED_FILES))
def test_all_shared_chinese_texts_match_hf(key):
    """Every text's ids ([CLS] ... [SEP], untruncated) hash to transformers' digest."""
    path, texts = shared_texts(key)
    ref = load_npz("chinese_ids.npz")
    assert [n for n, _ in texts] == ref[key + "/line"].tolist(), f"{path}: not the same texts"
    tok = Tokenizer.from_pretrained(MODEL_DIR)
    enc = tok([t for _, t in texts], padding=False, truncation=False, max_length=1 << 20)
    ours = np.array([digest(ids) for ids in enc["input_ids"]], dtype=np.uint64)
    bad = np.flatnonzero(ours != ref[key + "/digest"])
    if bad.size:
        i = int(bad[0])
        pytest.fail(f"{path}: {bad.size} of {len(texts)} texts tokenize differently from "
                    f"transformers; first at line {texts[i][0]}: {texts[i][1][:80]!r} -> "
                    f"{len(enc['input_ids'][i])} tokens (hf {ref[key + '/length'][i]}): "
                    f"{tok.convert_ids_to_tokens(enc['input_ids'][i])[:40]}")


# ----------------------------------------------------------------------------- model


def assert_close_scaled(actual, ref, what, floor=0.0):
    """max |actual - ref| <= RTOL * max(max |ref|, floor), as tests/models/test_bert_parity.py."""
    scale = max(float(np.max(np.abs(ref))), floor)
    assert_close(actual, ref, rtol=0.0, atol=RTOL * scale, msg=what)


def load_task_model(prefix, ref):
    """Our task model on the checkpoint, in float64, with transformers' drawn head."""
    from minitune.models import BertForSequenceClassification, BertForTokenClassification

    if prefix == "seq/":
        model = BertForSequenceClassification.from_pretrained(MODEL_DIR, num_labels=2,
                                                              dtype=np.float64)
    else:
        model = BertForTokenClassification.from_pretrained(
            MODEL_DIR, id2label=[str(t) for t in ref["tok/id2label"]], dtype=np.float64)
    params = dict(model.named_parameters())
    params["classifier.weight"].data[...] = ref[prefix + "head/weight"]
    params["classifier.bias"].data[...] = ref[prefix + "head/bias"]
    return model.eval()


@pytest.mark.parametrize("prefix", ["seq/", "tok/"])
def test_forward_and_gradients_match_hf_float64(prefix):
    ref = load_npz("tiny_chinese_outputs.npz")
    model = load_task_model(prefix, ref)
    report = model.loading_report
    assert any(k.startswith("cls.predictions") for k in report.ignored), report.summary()
    out = model(ref[prefix + "input_ids"], attention_mask=ref[prefix + "attention_mask"],
                token_type_ids=ref[prefix + "token_type_ids"], labels=ref[prefix + "labels"])
    assert_close_scaled(out.logits, ref[prefix + "logits"], prefix + "logits")
    assert_close_scaled(out.loss.data.reshape(()), ref[prefix + "loss"], prefix + "loss")

    out.loss.backward()
    params = dict(model.named_parameters())
    grad_keys = sorted(k for k in ref if k.startswith(prefix + "grad/"))
    names = {k[len(prefix + "grad/"):] for k in grad_keys}
    assert names == set(params), (
        f"missing {sorted(names - set(params))}, unexpected {sorted(set(params) - names)}")
    floor = max(float(np.max(np.abs(ref[k]))) for k in grad_keys)
    for key in grad_keys:
        name = key[len(prefix + "grad/"):]
        assert_close_scaled(params[name].grad, ref[key], f"{prefix} grad {name}", floor)
