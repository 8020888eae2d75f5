"""Prediction on Chinese text (minitune/predict.py): one tag per Chinese character, entity
offsets that index the text exactly, CLUENER-format output; checked on every sentence of the
shared CLUENER dev file with a stand-in model that predicts the gold tags."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
from paths import FIXTURES, SHARED_DATA

from minitune import Tensor, Tokenizer, cli
from minitune.data import encode_ner, read_cluener
from minitune.data.words import spans_inside_words
from minitune.models import BertForTokenClassification
from minitune.predict import predict_texts

CHINESE_BERT = FIXTURES / "tiny_chinese_bert"
TYPES = ["address", "book", "company", "game", "government", "movie", "name", "organization",
         "position", "scene"]
ID2LABEL = ["O"] + [f"{p}-{t}" for t in TYPES for p in "BI"]


def is_cjk(c):
    return 0x4E00 <= ord(c) <= 0x9FFF or 0x3400 <= ord(c) <= 0x4DBF or 0x20000 <= ord(c)


class GoldTagger(BertForTokenClassification):
    """Stands in for a fine-tuned NER model: at each word's first sub-token it predicts the
    gold tag, looked up by the sentence's input ids."""

    @classmethod
    def of(cls, tokenizer, data):
        model = cls.from_pretrained(CHINESE_BERT, id2label=ID2LABEL)
        examples, n_truncated = encode_ner(tokenizer, data, ID2LABEL, max_length=512)
        assert n_truncated == 0
        model.gold = {}
        for example in examples:
            key = tuple(example["input_ids"])
            assert model.gold.setdefault(key, example["labels"]) == example["labels"]
        return model

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        logits = np.zeros(input_ids.shape + (len(ID2LABEL),))
        for b, n in enumerate(attention_mask.sum(1)):
            for pos, label in enumerate(self.gold[tuple(input_ids[b, :n].tolist())]):
                if label >= 0:
                    logits[b, pos, label] = 1.0
        return SimpleNamespace(logits=Tensor(logits))


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path


def test_mixed_text_entities_index_the_original_text(tmp_path):
    text = "据新华社，iPhone5s在北京售价５９９９元。"
    data = read_cluener(write_jsonl(tmp_path / "x.json", [{"text": text, "label": {
        "company": {"新华社": [[1, 3]]}, "address": {"北京": [[14, 15]]}}}]))
    tok = Tokenizer.from_pretrained(CHINESE_BERT)
    [result] = predict_texts(GoldTagger.of(tok, data), tok, [text], max_len=64)
    words = [w["word"] for w in result["words"]]
    assert words[:5] == ["据", "新", "华", "社", "，"]
    assert "iPhone5s" in words and "５９９９" in words
    assert all(text[w["start"]:w["end"]] == w["word"] for w in result["words"])
    assert result["entities"] == [
        {"type": "company", "text": "新华社", "start": 1, "end": 4},
        {"type": "address", "text": "北京", "start": 14, "end": 16}]


def test_every_cluener_dev_sentence_with_gold_predictions():
    """On all 1,000 dev sentences: one tag per Chinese character, and the entities are the
    gold spans -- all of them but the 6 whose edge lies inside a BERT word (CPL2011)."""
    path = SHARED_DATA / "cluener" / "dev.json"
    if not path.is_file():
        pytest.skip(f"shared data not found: {path}")
    data = read_cluener(path)
    tok = Tokenizer.from_pretrained(CHINESE_BERT)
    results = predict_texts(GoldTagger.of(tok, data), tok, data.texts, max_len=512)
    n_unreachable = 0
    for i, (text, result) in enumerate(zip(data.texts, results)):
        words = [w["word"] for w in result["words"]]
        assert all(text[w["start"]:w["end"]] == w["word"] for w in result["words"])
        assert sum(len(w) == 1 for w in words) >= sum(map(is_cjk, text))
        assert all(len(w) == 1 for w in words if any(map(is_cjk, w))), words
        got = {(e["type"], e["start"], e["end"]) for e in result["entities"]}
        for e in result["entities"]:
            assert text[e["start"]:e["end"]] == e["text"]
        gold = set(data.spans[i])
        unreachable = set(spans_inside_words(data.spans[i], data.word_spans[i]))
        assert gold - got == unreachable, f"line {data.lines[i]}: {text}"
        n_unreachable += len(unreachable)
    assert n_unreachable == 6


def test_cli_predict_writes_cluener_that_reads_back(tmp_path):
    """A (random) character-level NER model on the Chinese checkpoint: --output-format cluener
    output is valid CLUENER (read_cluener accepts it) and keeps ids and texts."""
    model = BertForTokenClassification.from_pretrained(CHINESE_BERT, id2label=ID2LABEL, seed=3)
    model.save_pretrained(tmp_path / "model", tokenizer=Tokenizer.from_pretrained(CHINESE_BERT))
    records = [{"id": 7, "text": "浙商银行企业信贷部叶老桂博士则从另一个角度解读。"},
               {"id": 8, "text": "《FarmVille》是Zynga的游戏，售价９９元。"}]
    inputs = write_jsonl(tmp_path / "test.json", records)
    out = tmp_path / "pred.json"
    assert cli.main(["predict", "--model", str(tmp_path / "model"), "--input", str(inputs),
                     "--output", str(out), "--output-format", "cluener"]) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["text"]) for r in lines] == [(r["id"], r["text"]) for r in records]
    n_entities = sum(len(p) for r in lines for e in r["label"].values() for p in e.values())
    assert n_entities > 0, "a random model should still predict some entities"
    back = read_cluener(out)  # checks every span's offsets against its entity text
    assert back.ids == [7, 8] and back.dropped == []
