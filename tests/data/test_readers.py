"""The readers (minitune/data/readers.py): TSV, CSV and JSON lines with their columns, CoNLL,
and errors that name file, line and the flag to use.
"""
import io
import json
import sys
import pytest
from minitune import DataError, data
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


# ----------------------------------------------------------------- header-less TSV/CSV

CHNSENTICORP = SHARED_DATA / "chnsenticorp"


def test_headerless_tsv_is_detected_text_then_label(tmp_path):
    """ChnSentiCorp's layout: text<TAB>label, no header, string labels."""
    path = write(tmp_path, "a.tsv", "房间太小。其他的都一般。\tnegative\n"
                                    "15.4寸笔记本的键盘确实爽\tpositive\n\n"
                                    "服务一般\tnegative\n")
    got = data.read_classification(path)
    assert got.texts[0] == "房间太小。其他的都一般。"
    assert got.labels == ["negative", "positive", "negative"]
    assert got.lines == [1, 2, 4]


def test_headerless_label_first_and_csv(tmp_path):
    tsv = write(tmp_path, "a.tsv", "1\ta gorgeous film\n0\tdull\n1\tgreat fun\n")
    assert data.read_classification(tsv).labels == ["1", "0", "1"]
    csv = write(tmp_path, "a.csv", '"好, 很好",pos\n差,neg\n不错,pos\n很差,neg\n')
    got = data.read_classification(csv)
    assert got.texts == ["好, 很好", "差", "不错", "很差"]
    assert got.labels == ["pos", "neg", "pos", "neg"]


def test_header_choice_overrides_detection(tmp_path):
    # The first line's label ('rare') occurs nowhere else: it looks like a header.
    path = write(tmp_path, "a.tsv", "一句\trare\n二句\tpos\n三句\tpos\n")
    with pytest.raises(ValueError, match=r"a\.tsv:1 \(header\): no label column 'label' .*"
                                         r"if line 1 is data, not a header, pass --header no"):
        data.read_classification(path)
    got = data.read_classification(path, header=False)
    assert got.labels == ["rare", "pos", "pos"] and got.lines == [1, 2, 3]
    got = data.read_classification(path, header=False, text_column="1", label_column="0")
    assert got.labels == ["一句", "二句", "三句"]
    assert data.read_labelled(path, "classify", header=False).labels[0] == "rare"


def test_headerless_file_with_three_columns_needs_names(tmp_path):
    path = write(tmp_path, "a.tsv", "7\tgood\tpos\n8\tbad\tneg\n")
    with pytest.raises(ValueError, match=r"no header: columns 0, 1, 2\): no label column"):
        data.read_classification(path, header=False)
    got = data.read_classification(path, header=False, text_column="1", label_column="2")
    assert got.texts == ["good", "bad"]


@pytest.mark.skipif(not CHNSENTICORP.is_dir(), reason=f"ChnSentiCorp not found at {CHNSENTICORP}")
def test_shared_chnsenticorp_reads_with_defaults():
    train = data.read_classification(CHNSENTICORP / "train.tsv")
    dev = data.read_classification(CHNSENTICORP / "dev.tsv")
    assert (len(train), len(dev)) == (9600, 1200)
    assert set(train.labels) == set(dev.labels) == {"positive", "negative"}
    assert train.texts[0].startswith("选择珠江花园的原因就是方便") and train.lines[0] == 1
    assert data.build_label_map(train.labels) == ["negative", "positive"]


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


def test_conll_reads_one_character_per_line(tmp_path):
    """MSRA / People's Daily layout: one character and its tag per line (tab or space)."""
    sents = data.read_conll(write(tmp_path, "msra.txt", "中\tB-ORG\n共\tI-ORG\n中\tI-ORG\n"
                                  "央\tI-ORG\n致\tO\n电\tO\n。\tO\n\n"
                                  "张 B-PER\n三 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n"))
    assert list(sents) == [(list("中共中央致电。"), ["B-ORG"] + ["I-ORG"] * 3 + ["O"] * 3),
                           (list("张三在北京"), ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"])]
    assert sents.lines == [1, 9]


@pytest.mark.skipif(not (SHARED_DATA / "cluener").is_dir(), reason="shared CLUENER not found")
def test_conll_one_character_per_line_agrees_with_the_cluener_reader(tmp_path):
    """The shared CLUENER dev file written one character per line (whitespace characters
    left out, as such files do) reads back as the character tags of the span reader."""
    spans = data.read_cluener(SHARED_DATA / "cluener" / "dev.json")
    gold = [spans.char_tags(i) for i in range(len(spans))]
    lines = []
    for text, tags in zip(spans.texts, gold):
        lines += [f"{c}\t{t}\n" for c, t in zip(text, tags) if not c.isspace()] + ["\n"]
    sents = data.read_conll(write(tmp_path, "dev.char.txt", "".join(lines)))
    assert len(sents) == len(spans) == 1000
    for (chars, tags), text, want in zip(sents, spans.texts, gold):
        kept = [i for i, c in enumerate(text) if not c.isspace()]
        assert chars == [text[i] for i in kept]
        assert tags == [want[i] for i in kept]


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


# --- hostile and awkward files: every problem is a DataError naming file and line ---------

def write_bytes(tmp_path, name, raw):
    path = tmp_path / name
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_line_numbers_with_any_line_ending(tmp_path, newline):
    rows = ["label\ttext", "1\tgood", "0\tbad", "1"]
    path = write_bytes(tmp_path, "a.tsv", newline.join(rows).encode() + newline.encode())
    with pytest.raises(DataError, match=r"a\.tsv:4: expected 2 columns"):
        data.read_classification(path)
    rows = ["label,text", '1,"multi', 'line"', "0,bad", "1"]
    path = write_bytes(tmp_path, "a.csv", newline.join(rows).encode() + newline.encode())
    with pytest.raises(DataError, match=r"a\.csv:5: expected 2 columns"):
        data.read_classification(path)
    sentences = ["john B-PER", "smith", ""]
    path = write_bytes(tmp_path, "a.txt", newline.join(sentences).encode())
    with pytest.raises(DataError, match=r"a\.txt:2: expected 'token TAG'"):
        data.read_conll(path)


def test_non_utf8_names_file_and_line_and_encoding_reads_it(tmp_path):
    path = write_bytes(tmp_path, "a.tsv", b"label\ttext\n1\tgood\n0\tcaf\xe9 noir\n")
    with pytest.raises(DataError, match=r"a\.tsv:3: not utf-8 text .* --encoding"):
        data.read_classification(path)
    assert data.read_classification(path, encoding="latin-1").texts == ["good", "café noir"]
    conll = write_bytes(tmp_path, "a.txt", b"caf\xe9 O\n\n")
    with pytest.raises(DataError, match=r"a\.txt:1: not utf-8"):
        data.read_conll(conll)
    assert data.read_conll(conll, encoding="cp1252")[0] == (["café"], ["O"])
    with pytest.raises(DataError, match="unknown text encoding 'klingon'"):
        data.read_classification(path, encoding="klingon")



class BytesStdin:
    """sys.stdin as a pipe gives it: text on top of a byte buffer, in the C locale's codec
    (which would turn a bad byte into a surrogate rather than fail)."""

    def __init__(self, raw):
        self.buffer = io.BytesIO(raw)


def test_stdin_is_read_with_encoding_and_bad_bytes_are_an_error(monkeypatch):
    monkeypatch.setattr(sys, "stdin", BytesStdin(b"good\r\ncaf\xe9 noir\n"))
    with pytest.raises(DataError, match=r"^stdin: not utf-8 text .* --encoding"):
        data.read_texts("-")
    monkeypatch.setattr(sys, "stdin", BytesStdin(b"good\r\ncaf\xe9 noir\n"))
    assert data.read_texts("-", encoding="latin-1") == (["good", "café noir"], None)
    monkeypatch.setattr(sys, "stdin", BytesStdin(b"\xef\xbb\xbflabel,text\n1,caf\xc3\xa9\n"))
    assert data.read_texts("-", fmt="csv") == (["café"], None)      # a UTF-8 BOM is skipped

def test_csv_fields_of_any_length_and_unterminated_quotes(tmp_path):
    long_text = "word " * 100_000                                   # 500 KB in one field
    path = write_bytes(tmp_path, "a.csv", f'label,text\n1,"{long_text}"\n'.encode())
    assert data.read_classification(path).texts == [long_text]
    path = write_bytes(tmp_path, "b.csv", b'label,text\n1,good\n0,"bad\n1,fine\n0,dull\n')
    with pytest.raises(DataError, match=r'b\.csv:3: a quoted field begins on this line '
                                             r'and is never closed'):
        data.read_classification(path)
    path = write_bytes(tmp_path, "c.csv", b'label,text\n1,"say ""hi""\nthere"\n0,"open\n')
    with pytest.raises(DataError, match=r"c\.csv:4: a quoted field begins"):
        data.read_classification(path)


def test_duplicate_columns_and_keys_are_refused(tmp_path):
    path = write_bytes(tmp_path, "a.tsv", b"text\tlabel\ttext\nx\t1\ty\n")
    with pytest.raises(DataError, match=r"a\.tsv:1: column name\(s\) 'text' appear more"):
        data.read_classification(path)
    path = write_bytes(tmp_path, "a.jsonl", b'{"text": "a", "label": 1, "text": "b"}\n')
    with pytest.raises(DataError, match=r"a\.jsonl:1: key 'text' appears more than once"):
        data.read_classification(path)


def test_conll_splits_on_ascii_whitespace_only(tmp_path):
    path = write_bytes(tmp_path, "a.txt", "10\u00a0000 O\nParis\u3000Texas B-LOC\n\n".encode())
    assert data.read_conll(path)[0] == (["10\u00a0000", "Paris\u3000Texas"], ["O", "B-LOC"])
