"""The readers (minitune/data/readers.py): TSV, CSV and JSON lines with their columns, CoNLL,
and errors that name file, line and the flag to use.
"""
import json
import pytest
from minitune import data
from paths import SHARED_DATA, TESTS

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
     r"a\.tsv:1 \(header\): no label column 'label' \(columns found: 'polarity', 'text'\); "
     r"name yours with --label-column"),
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


def test_missing_default_column_names_the_flag(tmp_path):
    path = write(tmp_path, "a.csv", "sentiment,review\npos,fine\n")
    with pytest.raises(ValueError, match=r"no label column 'label' .*; name yours with "
                                         r"--label-column"):
        data.read_classification(path)
    with pytest.raises(ValueError, match="no text column .*name yours with --text-column"):
        data.read_classification(path, label_column="sentiment", text_pair_column="review")
    assert data.read_classification(path, "review", None, "sentiment").texts == ["fine"]


def test_read_labelled_picks_the_reader_by_task(tmp_path):
    tsv = write(tmp_path, "a.tsv", "label\ttext\n1\tok\n")
    conll = write(tmp_path, "a.txt", "Paris B-LOC\n")
    assert isinstance(data.read_labelled(tsv, "classify"), data.ClassificationData)
    assert data.read_labelled(conll, "ner") == [(["Paris"], ["B-LOC"])]


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


def test_demo_sentiment_data():
    demo = TESTS.parent / "examples" / "data"
    train = data.read_classification(demo / "sentiment_train.tsv")
    dev = data.read_classification(demo / "sentiment_dev.tsv")
    assert (len(train), len(dev)) == (400, 100)
    assert data.build_label_map(train.labels) == ["negative", "positive"]
    assert train.labels.count("positive") == 200 and dev.labels.count("positive") == 50
    assert len(set(train.texts)) == 400 and not set(train.texts) & set(dev.texts)


# ----------------------------------------------------------------- texts to label


def test_read_texts_of_each_format(tmp_path):
    assert data.read_texts(write(tmp_path, "a.txt", "one\n\ntwo \n", newline="\r\n")) == \
        (["one", "two "], None)
    csv_path = write(tmp_path, "a.csv", 'review,sentiment\n"a, quoted\ntext",pos\nb,neg\n')
    assert data.read_texts(csv_path, label_column="sentiment") == (["a, quoted\ntext", "b"],
                                                                   None)
    tsv_path = write(tmp_path, "a.tsv", "label\tsentence1\tsentence2\n1\ta\tb\n")
    assert data.read_texts(tsv_path) == (["a"], ["b"])                 # a pair, label ignored
    jsonl = write(tmp_path, "a.jsonl", '{"text": "x"}\n{"text": "y", "label": 1}\n')
    assert data.read_texts(jsonl) == (["x", "y"], None)
    assert data.read_texts(write(tmp_path, "b.dat", "text,id\nx,1\n"), fmt="csv") == (["x"], None)


@pytest.mark.parametrize("name, text, kwargs, message", [
    ("a.csv", "review,sentiment\nx,1\n", {}, r"no text column .*name yours with --text-column"),
    ("a.csv", "text\nx\n", {"text_column": "review"}, r"no text column 'review'"),
    ("a.jsonl", '{"text": 3}\n', {}, r"a\.jsonl:1: key 'text' must be a string"),
    ("a.xml", "<x/>", {}, r"unknown file type '\.xml'"),
])
def test_read_texts_errors(tmp_path, name, text, kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.read_texts(write(tmp_path, name, text), **kwargs)
