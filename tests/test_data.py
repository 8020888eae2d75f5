"""Readers, label maps, encoding and the DataLoader (minitune/data.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitune import data
from minitune.data import IGNORE_INDEX, DataLoader

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SST2 = SHARED_DATA / "sst2"
CONLL = SHARED_DATA / "conll2003"
CONLL_ORDER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def write(tmp_path, name, text, newline="\n"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


# ----------------------------------------------------------------- classification readers


def test_tsv_keeps_quotes_and_reads_crlf(tmp_path):
    path = write(tmp_path, "a.tsv", 'label\ttext\n1\t"quoted" start\n\n0\tit \'s a "bad" film\n',
                 newline="\r\n")
    d = data.read_classification(path)
    assert d.texts == ['"quoted" start', 'it \'s a "bad" film']
    assert d.labels == ["1", "0"]
    assert d.lines == [2, 4]
    assert d.text_pairs is None and len(d) == 2 and d.path == str(path)


@pytest.mark.parametrize("header", ["label\tsentence", "sentence\tlabel", "label\tcontent"])
def test_tsv_default_text_columns(tmp_path, header):
    cols = header.split("\t")
    row = "\t".join("1" if c == "label" else "fine film" for c in cols)
    d = data.read_classification(write(tmp_path, "a.tsv", f"{header}\n{row}\n"))
    assert d.texts == ["fine film"] and d.labels == ["1"]


def test_tsv_pairs_and_named_columns(tmp_path):
    path = write(tmp_path, "p.tsv", "id\tsentence1\tsentence2\tgold\n7\ta cat\ta dog\tno\n")
    d = data.read_classification(path, label_column="gold")
    assert (d.texts, d.text_pairs, d.labels) == (["a cat"], ["a dog"], ["no"])
    d = data.read_classification(path, text_column="sentence2", text_pair_column="sentence1",
                                 label_column="gold")
    assert (d.texts, d.text_pairs) == (["a dog"], ["a cat"])


def test_csv_quoting_and_line_numbers(tmp_path):
    path = write(tmp_path, "a.csv",
                 'text,label\n"one, two",pos\n"spans\ntwo lines",neg\nplain,pos\n')
    d = data.read_classification(path)
    assert d.texts == ["one, two", "spans\ntwo lines", "plain"]
    assert d.labels == ["pos", "neg", "pos"]
    assert d.lines == [2, 3, 5]


def test_csv_error_names_the_starting_line(tmp_path):
    path = write(tmp_path, "a.csv", 'text,label\n"a\nb",1\nonly one field\n')
    with pytest.raises(ValueError, match=r"a\.csv:4: expected 2 columns \(text, label\), "
                                         r"found 1: 'only one field'"):
        data.read_classification(path)


def test_jsonl(tmp_path):
    rows = [{"sentence": "good", "label": 1}, {"sentence": "bad", "label": 0, "extra": 3}]
    path = write(tmp_path, "a.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    d = data.read_classification(path)
    assert d.texts == ["good", "bad"] and d.labels == ["1", "0"] and d.lines == [1, 2]


@pytest.mark.parametrize("name, text, message", [
    ("a.tsv", "label\ttext\n1\tok\n\tno label here\n",
     r"a\.tsv:3: missing label \(column 'label'\): '\\tno label here'"),
    ("a.tsv", "label\ttext\n1\tok\n1\ttoo\tmany\n",
     r"a\.tsv:3: expected 2 columns \(label, text\), found 3: '1\\ttoo\\tmany'"),
    ("a.tsv", "label\ttext\n0 no tab\n", r"a\.tsv:2: expected 2 columns .*found 1: '0 no tab'"),
    ("a.tsv", "", r"a\.tsv: no examples"),
    ("a.tsv", "label\ttext\n\n", r"a\.tsv: no examples"),
    ("a.tsv", "label\tid\treview\n1\t2\tok\n",
     r"a\.tsv:1 \(header\): no text column .*columns found: 'label', 'id', 'review'"),
    ("a.tsv", "polarity\ttext\n1\tok\n",
     r"a\.tsv:1 \(header\): no label column 'label' \(columns found: 'polarity', 'text'\)"),
    ("a.jsonl", '{"text": "x", "label": 1}\n{"text": "y"}\n',
     r"a\.jsonl:2: missing label \(key 'label'\): '\{\"text\": \"y\"\}'"),
    ("a.jsonl", '{"text": "x", "label": 1}\n{"text": "y", label: 1}\n',
     r"a\.jsonl:2: invalid JSON"),
    ("a.jsonl", "\n", r"a\.jsonl: no examples"),
    ("a.xml", "<x/>", r"unknown file type '\.xml'"),
])
def test_classification_errors(tmp_path, name, text, message):
    with pytest.raises(ValueError, match=message):
        data.read_classification(write(tmp_path, name, text))


def test_named_column_missing(tmp_path):
    path = write(tmp_path, "a.tsv", "label\ttext\n1\tok\n")
    with pytest.raises(ValueError, match=r"no text column 'review' \(columns found: 'label', "
                                         r"'text'\)"):
        data.read_classification(path, text_column="review")


@pytest.mark.skipif(not SST2.is_dir(), reason=f"SST-2 not found at {SST2}")
def test_shared_sst2_reads_with_defaults():
    train = data.read_classification(SST2 / "train.tsv")
    dev = data.read_classification(SST2 / "dev.tsv")
    assert (len(train), len(dev)) == (67349, 872)
    assert train.texts[0] == "hide new secretions from the parental units"
    assert not any("\r" in t or "\t" in t for t in train.texts)
    id2label = data.build_label_map(train.labels)
    assert id2label == ["0", "1"]
    data.check_labels(dev, id2label)


# ----------------------------------------------------------------- CoNLL reader

CONLL_TEXT = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O

Peter B-PER
Blackburn I-PER

Alice I-PER
Bob B-PER
Paris I-LOC
"""


def test_conll_reads_last_column_and_converts_iob1(tmp_path):
    sents = data.read_conll(write(tmp_path, "a.txt", CONLL_TEXT))
    assert list(sents) == [
        (["EU", "rejects", "German", "call"], ["B-ORG", "O", "B-MISC", "O"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
        (["Alice", "Bob", "Paris"], ["B-PER", "B-PER", "B-LOC"]),
    ]
    assert sents.lines == [3, 8, 11]
    assert sents.n_converted == 4


def test_conll_can_keep_raw_tags(tmp_path):
    sents = data.read_conll(write(tmp_path, "a.txt", CONLL_TEXT), to_iob2=False)
    assert sents[0][1] == ["I-ORG", "O", "I-MISC", "O"]
    assert sents.n_converted == 0


@pytest.mark.parametrize("text, message", [
    ("EU B-ORG\nrejects\n", r"a\.txt:2: expected 'token TAG'.*found one column: 'rejects'"),
    ("EU B-ORG\nx B_PER\n", r"a\.txt:2: unknown tag 'B_PER' \(expected O, B-TYPE or I-TYPE\)"),
    ("EU B-ORG\nx PER\n", r"a\.txt:2: unknown tag 'PER'"),
    ("-DOCSTART- O\n\n\n", r"a\.txt: no sentences"),
])
def test_conll_errors(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        data.read_conll(write(tmp_path, "a.txt", text))


def test_conll_tag_outside_label_set(tmp_path):
    path = write(tmp_path, "a.txt", "EU B-ORG\n\nx O\ny I-DATE\n")
    with pytest.raises(ValueError, match=r"a\.txt:4: tag 'I-DATE' \(read as B-DATE in IOB2\) "
                                         r"is not one of the labels"):
        data.read_conll(path, labels=["O", "B-ORG", "I-ORG"])


@pytest.mark.skipif(not CONLL.is_dir(), reason=f"CoNLL-2003 not found at {CONLL}")
def test_shared_conll():
    train = data.read_conll(CONLL / "train.txt")
    id2label = data.build_label_map([tags for _, tags in train])
    assert len(train) == 14041 and id2label == CONLL_ORDER
    dev = data.read_conll(CONLL / "dev.txt", labels=id2label)
    assert len(dev) == 3250
    data.check_labels(dev, id2label)
    raw = data.read_conll(CONLL / "train.txt", to_iob2=False)
    changed = sum(a != b for (_, t1), (_, t2) in zip(train, raw) for a, b in zip(t1, t2))
    assert changed == train.n_converted > 0


# ----------------------------------------------------------------- label maps


def test_label_map_ner_order():
    rng = np.random.default_rng(0)
    tags = list(rng.permutation(CONLL_ORDER))
    assert data.build_label_map([tags[:5], tags[5:]]) == CONLL_ORDER
    # Only B-LOC seen: I-LOC is still included so the model can predict it.
    assert data.build_label_map(["O", "B-LOC", "B-PER"]) == ["O", "B-PER", "I-PER", "B-LOC",
                                                            "I-LOC"]
    assert data.build_label_map([["B-DATE", "O", "I-ORG"]]) == ["O", "B-DATE", "I-DATE",
                                                               "B-ORG", "I-ORG"]


def test_label_map_classification_order():
    assert data.build_label_map(["1", "10", "2", "0", "1"]) == ["0", "1", "2", "10"]
    assert data.build_label_map(["pos", "neg", "neutral"]) == ["neg", "neutral", "pos"]
    assert data.build_label_map(["b", "a"], preferred_order=["b", "a", "c"]) == ["b", "a", "c"]
    with pytest.raises(ValueError, match=r"missing from preferred_order .*\['c'\]"):
        data.build_label_map(["a", "c"], preferred_order=["a", "b"])
    with pytest.raises(ValueError, match="repeats"):
        data.build_label_map(["a"], preferred_order=["a", "a"])


def test_check_labels_names_file_and_line(tmp_path):
    train = data.read_classification(write(tmp_path, "train.tsv", "label\ttext\npos\ta\nneg\tb\n"))
    dev = data.read_classification(
        write(tmp_path, "dev.tsv", "label\ttext\npos\tc\nmixed\td\nmixed\te\nodd\tf\n"))
    id2label = data.build_label_map(train.labels)
    with pytest.raises(ValueError, match=r"dev\.tsv: labels never seen in training: 'mixed' "
                                         r"\(first at line 3\), 'odd' \(first at line 5\); "
                                         r"known labels: \['neg', 'pos'\]"):
        data.check_labels(dev, id2label)
    dev_ner = data.read_conll(write(tmp_path, "dev.txt", "a O\n\nb O\nc B-DATE\n"))
    with pytest.raises(ValueError, match=r"dev\.txt: .*'B-DATE' \(first at line 4\)"):
        data.check_labels(dev_ner, CONLL_ORDER)
    with pytest.raises(ValueError, match=r"'x' \(first at example 1\)"):
        data.check_labels(["0", "x"], ["0", "1"])


# ----------------------------------------------------------------- encoding


class _Encoding(dict):
    """What a tokenizer call with padding=False returns: ragged lists and word_ids(i)."""

    def __init__(self, ids, types, word_ids):
        super().__init__(input_ids=ids, token_type_ids=types)
        self._w = word_ids

    def word_ids(self, i):
        return self._w[i]


def piece_tokenizer(texts, text_pairs=None, max_length=128, padding=True, truncation=True,
                    is_split_into_words=False):
    """A stand-in for minitune.Tokenizer: words split into pieces of up to 3 characters,
    [CLS]=101, [SEP]=102, piece id = 1000 + sum of its character codes."""
    assert padding is False and truncation is True and text_pairs is None
    ids, types, wids = [], [], []
    for i, text in enumerate(texts):
        words = text if is_split_into_words else text.split()
        pieces = [(1000 + sum(map(ord, w[k:k + 3])), j)
                  for j, w in enumerate(words) for k in range(0, len(w), 3)][: max_length - 2]
        ids.append([101] + [p for p, _ in pieces] + [102])
        wids.append([None] + [w for _, w in pieces] + [None])
        types.append([0] * len(ids[-1]))
    return _Encoding(ids, types, wids)


def test_encode_ner_labels_first_subtoken_only():
    sents = [(["Johannesburg", "is", "big"], ["B-LOC", "O", "O"]),
             (["Al", "Gore", "spoke"], ["B-PER", "I-PER", "O"])]
    examples, n_trunc = data.encode_ner(piece_tokenizer, sents, CONLL_ORDER, max_length=128)
    assert n_trunc == 0
    # "Johannesburg" -> 4 pieces: only the first carries B-LOC (id 5).
    assert examples[0]["labels"] == [-100, 5, -100, -100, -100, 0, 0, -100]
    assert examples[0]["word_ids"] == [None, 0, 0, 0, 0, 1, 2, None]
    assert examples[1]["labels"] == [-100, 1, 2, -100, 0, -100, -100]
    assert examples[1]["n_words"] == 3


def test_encode_ner_truncation_and_word_tags():
    sents = [(["aaaaaa", "b", "c", "d"], ["B-PER", "I-PER", "O", "B-LOC"]),
             (["x"], ["O"])]
    examples, n_trunc = data.encode_ner(piece_tokenizer, sents, CONLL_ORDER, max_length=5)
    assert n_trunc == 1
    assert examples[0]["labels"] == [-100, 1, -100, 2, -100]  # "c", "d" cut off
    # Predicting the gold ids back gives the gold tags, cut-off words filled with "O".
    gold = np.where(np.array(examples[0]["labels"]) < 0, 0, examples[0]["labels"])
    padded = np.concatenate([gold, [3, 3, 3]])  # padding positions are ignored
    assert data.word_tags(padded, examples[0], CONLL_ORDER) == ["B-PER", "I-PER", "O", "O"]


def test_encode_ner_rejects_unknown_tags():
    with pytest.raises(ValueError, match=r"'B-DATE' \(first at example 0, token 1\)"):
        data.encode_ner(piece_tokenizer, [(["a", "b"], ["O", "B-DATE"])], CONLL_ORDER)


def test_encode_classification(tmp_path):
    d = data.read_classification(write(tmp_path, "a.tsv", "label\ttext\n1\tgood fun\n0\tbad\n"))
    examples = data.encode_classification(piece_tokenizer, d, ["0", "1"], max_length=8)
    assert [e["label"] for e in examples] == [1, 0]
    assert examples[1]["input_ids"] == [101, 1000 + sum(map(ord, "bad")), 102]
    assert examples[1]["token_type_ids"] == [0, 0, 0]


def _real_tokenizer():
    try:
        from minitune.tokenizer import Tokenizer
        return Tokenizer.from_pretrained("all-MiniLM-L6-v2")
    except Exception as e:  # noqa: BLE001 - any failure means "not available here"
        pytest.skip(f"minitune.Tokenizer with the MiniLM package is not available: {e!r}")


def test_encode_ner_with_real_tokenizer():
    tok = _real_tokenizer()
    sents = [(["Washington", "Irving", "wrote", "Rip", "Van", "Winkle", "."],
              ["B-PER", "I-PER", "O", "B-PER", "I-PER", "I-PER", "O"]),
             (["Unbelievably", "antidisestablishmentarianism"], ["O", "B-MISC"])]
    examples, n_trunc = data.encode_ner(tok, sents, CONLL_ORDER, max_length=128)
    assert n_trunc == 0
    for (words, tags), ex in zip(sents, examples):
        ids = np.array(ex["input_ids"])
        labels = np.array(ex["labels"])
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert labels[0] == labels[-1] == IGNORE_INDEX
        first = np.flatnonzero(labels != IGNORE_INDEX)
        assert [CONLL_ORDER[i] for i in labels[first]] == tags  # one label per word
        for w, pos in enumerate(first):  # the labelled piece starts word w
            piece = tok.convert_ids_to_tokens([int(ids[pos])])[0]
            assert not piece.startswith("##") and words[w].lower().startswith(piece)
    assert len(examples[1]["input_ids"]) > 4  # the long word was split into sub-tokens
    short, n_trunc = data.encode_ner(tok, sents, CONLL_ORDER, max_length=6)
    assert n_trunc == 2 and all(len(e["input_ids"]) == 6 for e in short)


# ----------------------------------------------------------------- DataLoader


def make_examples(n, seed=0, token_labels=False, max_len=20):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(2, max_len))
        ex = {"input_ids": rng.integers(1, 500, length).tolist(),
              "token_type_ids": rng.integers(0, 2, length).tolist()}
        if token_labels:
            ex["labels"] = rng.integers(-1, 9, length).tolist()
        else:
            ex["label"] = i % 3
        out.append(ex)
    return out


def all_batches(loader):
    return [{k: v.copy() for k, v in b.items()} | {"indices": b.indices} for b in loader]


def same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_padding_and_masks():
    examples = make_examples(5, token_labels=True)
    batch = DataLoader(examples, batch_size=5, pad_id=7).collate([3, 0, 4])
    lengths = [len(examples[i]["input_ids"]) for i in (3, 0, 4)]
    T = max(lengths)
    assert batch["input_ids"].shape == (3, T)
    for row, i in enumerate((3, 0, 4)):
        n = lengths[row]
        for key, pad in (("input_ids", 7), ("token_type_ids", 0), ("labels", IGNORE_INDEX)):
            assert batch[key].dtype == np.int64
            assert batch[key][row, :n].tolist() == examples[i][key]
            assert (batch[key][row, n:] == pad).all()
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (T - n)
    np.testing.assert_array_equal(batch.indices, [3, 0, 4])


def test_sequence_labels_and_missing_token_types():
    examples = [{"input_ids": [1, 2, 3], "label": 4}, {"input_ids": [5], "label": 6}]
    batch = next(iter(DataLoader(examples, batch_size=2)))
    assert batch["labels"].tolist() == [4, 6]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert batch["input_ids"].tolist() == [[1, 2, 3], [5, 0, 0]]


def test_mismatched_label_length_is_an_error():
    examples = [{"input_ids": [1, 2], "labels": [0, 0]}, {"input_ids": [1, 2], "labels": [0]}]
    with pytest.raises(ValueError, match="example 1: labels is length 1, input_ids has length 2"):
        DataLoader(examples, batch_size=2)


def test_shuffle_order_is_the_reference_permutation():
    n, bs, seed = 103, 8, 5
    loader = DataLoader(make_examples(n), batch_size=bs, shuffle=True, seed=seed)
    assert len(loader) == 13
    for epoch in range(3):
        loader.set_epoch(epoch)
        order = np.concatenate([b.indices for b in loader])
        np.testing.assert_array_equal(order, np.random.default_rng(seed + epoch).permutation(n))
    assert loader.epoch == 3  # a finished epoch moves the loader on


def test_sst2a_order_subset_without_shuffle():
    examples = make_examples(300)
    for e in examples:
        e["id"] = id(e)
    chosen = data.subset(examples, 100, seed=3)
    perm = np.random.default_rng(3).permutation(300)[:100]
    assert [e["id"] for e in chosen] == [examples[i]["id"] for i in perm]
    loader = DataLoader(chosen, batch_size=32, shuffle=False)
    batches = list(loader)
    assert [len(b["labels"]) for b in batches] == [32, 32, 32, 4]
    np.testing.assert_array_equal(np.concatenate([b.indices for b in batches]), np.arange(100))
    np.testing.assert_array_equal(batches[0]["labels"], [examples[i]["label"] for i in perm[:32]])
    # The same epoch 0 from a shuffling loader that keeps the first epoch in order.
    keep = DataLoader(chosen, batch_size=32, shuffle=True, seed=3, first_epoch_in_order=True)
    same_batches(all_batches(keep), all_batches(DataLoader(chosen, 32)))
    np.testing.assert_array_equal(np.concatenate([b.indices for b in keep]),
                                  np.random.default_rng(3 + 1).permutation(100))
    cd = data.ClassificationData([str(i) for i in range(10)], ["0"] * 10, lines=list(range(10)))
    assert data.subset(cd, 4, seed=1).texts == [str(i) for i in
                                                np.random.default_rng(1).permutation(10)[:4]]
    with pytest.raises(ValueError, match="subset of 11 examples requested, only 10"):
        data.subset(cd, 11, seed=0)


def test_loader_is_deterministic():
    examples = make_examples(77, token_labels=True)
    for kwargs in ({"shuffle": True, "seed": 1}, {"shuffle": True, "seed": 1,
                                                    "group_by_length": True}):
        a = DataLoader(examples, batch_size=6, **kwargs)
        b = DataLoader(examples, batch_size=6, **kwargs)
        for epoch in range(2):
            a.set_epoch(epoch)
            b.set_epoch(epoch)
            same_batches(all_batches(a), all_batches(b))
    c = all_batches(DataLoader(examples, batch_size=6, shuffle=True, seed=2))
    assert not all(np.array_equal(x["indices"], y["indices"])
                   for x, y in zip(c, all_batches(DataLoader(examples, 6, True, 1))))


def test_resume_mid_epoch_gives_the_remaining_batches():
    examples = make_examples(90, token_labels=True)
    full = DataLoader(examples, batch_size=8, shuffle=True, seed=4)
    expected = []
    for epoch in range(2):
        full.set_epoch(epoch)
        expected += all_batches(full)
    run = DataLoader(examples, batch_size=8, shuffle=True, seed=4)
    seen = []
    for batch in run:
        seen.append({k: v.copy() for k, v in batch.items()} | {"indices": batch.indices})
        if len(seen) == 5:
            break
    state = json.loads(json.dumps(run.state_dict()))  # survives a JSON round trip
    assert (state["epoch"], state["position"]) == (0, 5)
    resumed = DataLoader(examples, batch_size=8, shuffle=True, seed=4)
    resumed.load_state_dict(state)
    for epoch in range(0, 2):  # the usual loop: set_epoch keeps the restored position
        resumed.set_epoch(epoch)
        seen += all_batches(resumed)
    same_batches(seen, expected)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 60), bs=st.integers(1, 9), stop=st.integers(0, 20),
       seed=st.integers(0, 5), grouped=st.booleans())
def test_resume_property(n, bs, stop, seed, grouped):
    examples = make_examples(n, seed=seed)
    ref = DataLoader(examples, bs, shuffle=True, seed=seed, group_by_length=grouped)
    expected = [b.indices for _ in range(2) for b in ref]
    run = DataLoader(examples, bs, shuffle=True, seed=seed, group_by_length=grouped)
    it = iter(run)
    head = [next(it).indices for _ in range(min(stop, len(run)))]
    state = run.state_dict()
    resumed = DataLoader(examples, bs, shuffle=True, seed=seed, group_by_length=grouped)
    resumed.load_state_dict(state)
    rest = [b.indices for b in resumed]
    rest += [b.indices for b in resumed]
    got = (head + rest)[: len(expected)]
    assert len(got) == len(expected)
    for x, y in zip(got, expected):
        np.testing.assert_array_equal(x, y)


def test_load_state_checks_settings():
    loader = DataLoader(make_examples(10), batch_size=4, shuffle=True, seed=0)
    state = loader.state_dict()
    other = DataLoader(make_examples(10), batch_size=5, shuffle=True, seed=1)
    with pytest.raises(ValueError, match=r"seed: saved 0, loader has 1; batch_size: saved 4, "
                                         r"loader has 5"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="position 9 is outside 0..3"):
        loader.load_state_dict({**state, "position": 9})


def test_group_by_length():
    examples = make_examples(1000, max_len=60)
    bs = 4
    loader = DataLoader(examples, batch_size=bs, shuffle=True, seed=0, group_by_length=True)
    plain = DataLoader(examples, batch_size=bs, shuffle=True, seed=0)
    batches = loader.batch_indices(0)
    order = np.concatenate(batches)
    assert sorted(order.tolist()) == list(range(1000))  # every example once
    # Each run of 50 batches holds the same examples as the plain shuffled order, sorted.
    perm = np.random.default_rng(0).permutation(1000)
    run = 50 * bs
    lengths = loader.lengths
    for s in range(0, 1000, run):
        assert set(order[s:s + run].tolist()) == set(perm[s:s + run].tolist())
        chunk_batches = batches[s // bs:(s + run) // bs]
        # Sorted before cutting: ranked by length, each batch's shortest example is at
        # least as long as the next batch's longest.
        ranked = sorted(chunk_batches, key=lambda b: (-lengths[b].max(), -lengths[b].min()))
        for longer, shorter in zip(ranked, ranked[1:]):
            assert lengths[longer].min() >= lengths[shorter].max()
    pad = lambda ldr: sum(b["input_ids"].size for b in ldr)  # noqa: E731
    assert pad(loader) < 0.8 * pad(plain)
    assert not np.array_equal(loader.batch_indices(1)[0], batches[0])  # differs per epoch


def test_drop_last_and_len():
    examples = make_examples(10)
    assert len(DataLoader(examples, 4)) == 3
    loader = DataLoader(examples, 4, drop_last=True)
    assert len(loader) == 2 and [len(b["labels"]) for b in loader] == [4, 4]
    with pytest.raises(ValueError, match="at least one example"):
        DataLoader([], 4)


def test_demo_sentiment_data():
    demo = REPO / "examples" / "data"
    train = data.read_classification(demo / "sentiment_train.tsv")
    dev = data.read_classification(demo / "sentiment_dev.tsv")
    assert (len(train), len(dev)) == (400, 100)
    assert data.build_label_map(train.labels) == ["0", "1"]
    assert train.labels.count("1") == 200 and dev.labels.count("1") == 50
    assert len(set(train.texts)) == 400 and not set(train.texts) & set(dev.texts)
