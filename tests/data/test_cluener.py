"""minitune.data.cluener: CLUENER span JSON -> character BIO -> spans, words by BERT's rule,
errors with file and line, overlaps reported; on the shared CLUENER files when present."""
import json
import re

import pytest
from paths import SHARED_DATA

from minitune.data import check_labels, cluener_record, read_cluener, read_labelled
from minitune.data.words import spans_inside_words
from minitune.metrics import get_entities

RECORDS = [
    {"text": "浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读。",
     "label": {"name": {"叶老桂": [[9, 11]]}, "company": {"浙商银行": [[0, 3]]}}},
    {"text": "Q：暴雪公司对《FarmVille》这类游戏有何评价？",
     "label": {"game": {"《FarmVille》": [[7, 17]]}, "company": {"暴雪公司": [[2, 5]]}}},
    {"text": "生生不息CSOL生化狂潮让你填弹狂扫", "label": {"game": {"CSOL生化狂潮": [[4, 11]]}}},
    {"text": "没有实体的句子。", "label": {}},
]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path


def gold_spans(record):
    """A record's label as a set of (type, start, end exclusive)."""
    return {(t, s, e + 1) for t, ents in record["label"].items()
            for positions in ents.values() for s, e in positions}


def canonical(record):
    """A record with each entity's positions sorted (files list them in any order)."""
    label = {t: {name: sorted(positions) for name, positions in ents.items()}
             for t, ents in record["label"].items()}
    return {**record, "label": label}


def test_words_tags_and_record_round_trip(tmp_path):
    data = read_cluener(write_jsonl(tmp_path / "train.json", RECORDS))
    words, tags = data[0]
    assert words[:4] == list("浙商银行") and len(words) == len(RECORDS[0]["text"])
    assert tags[:5] == ["B-company", "I-company", "I-company", "I-company", "O"]
    assert tags[9:12] == ["B-name", "I-name", "I-name"]
    words, tags = data[1]
    assert words[7:10] == ["《", "FarmVille", "》"]
    assert tags[7:10] == ["B-game", "I-game", "I-game"]
    assert data.lines == [1, 2, 3, 4] and data.dropped == []
    for i, record in enumerate(RECORDS):
        assert cluener_record(data.texts[i], data.spans[i]) == canonical(record)


def test_read_labelled_picks_the_cluener_reader_for_json(tmp_path):
    data = read_labelled(write_jsonl(tmp_path / "dev.jsonl", RECORDS), "ner")
    assert data[2][1][4:6] == ["B-game", "I-game"]  # 'CSOL' is one word


def test_scores_compare_characters(tmp_path):
    """Predicted word tags go back to character spans before they are scored."""
    data = read_cluener(write_jsonl(tmp_path / "dev.json", RECORDS[2:3]))
    words = data[0][0]
    pred = ["O"] * len(words)
    pred[4:6] = ["B-game", "I-game"]         # 'CSOL' '生': stops 3 characters short
    gold, scored = data.scored_tags([pred])
    assert len(gold[0]) == len(scored[0]) == len(data.texts[0])
    assert get_entities(gold) == [("game", 4, 11)] and get_entities(scored) == [("game", 4, 8)]


def test_overlapping_spans_are_reported_not_silently_dropped(tmp_path):
    record = {"text": "《招商银行：投资永隆银行浮亏》",
              "label": {"book": {"《招商银行：投资永隆银行浮亏》": [[0, 14]]},
                        "company": {"招商银行": [[1, 4]], "永隆银行": [[8, 11]]}}}
    data = read_cluener(write_jsonl(tmp_path / "t.json", [RECORDS[0], record]))
    assert data.spans[1] == [("book", 0, 15)]
    assert len(data.dropped) == 2
    assert data.dropped[0].startswith(f"{tmp_path / 't.json'}:2: overlapping span company "
                                      "[1, 5) '招商银行' left out (it overlaps book [0, 15)")


@pytest.mark.parametrize("line,message", [
    ('{"text": "abc", "label": {"name": {"ab": [[0, 1]]}}', r":1: invalid JSON"),
    ('["abc"]', r':1: expected a JSON object with a "text" string'),
    ('{"text": "叶老桂", "label": {"name": {"叶老桂": [[0, 3]]}}}',
     r":1: name '叶老桂': span \[0, 3\] is outside the text of 3 characters"),
    ('{"text": "叶老桂说", "label": {"name": {"叶老桂": [[0, 3]]}}}',
     r":1: name '叶老桂': span \[0, 3\] holds '叶老桂说', not the entity \(ends are inclusive\)"),
    ('{"text": "叶老桂", "label": {"name": {"叶老桂": [0, 2]}}}',
     r"expected \[start, end\] integer pairs, found 0"),
    ('{"text": "叶老桂", "label": {"name": ["叶老桂"]}}', r"label 'name' must map entity texts"),
    ('{"text": "叶老桂"}', r':1: no "label" key'),
])
def test_bad_records_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.json"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message) as info:
        read_cluener(path)
    assert str(info.value).startswith(f"{path}:1: ")



def test_other_encodings_with_encoding_and_a_named_error_without(tmp_path):
    """Chinese files often come in GBK/GB18030: --encoding reads them; without it the error
    names the file and line of the first bad byte (not a bare UnicodeDecodeError)."""
    path = tmp_path / "gbk.json"
    lines = [json.dumps(r, ensure_ascii=False) for r in ({"text": "ok", "label": {}},
                                                         {"text": "叶老桂说",
                                                          "label": {"name": {"叶老桂": [[0, 2]]}}})]
    path.write_bytes("\n".join(lines).encode("gbk"))
    with pytest.raises(ValueError, match=r"gbk\.json:2: not utf-8 text .* --encoding"):
        read_cluener(path)
    data = read_labelled(path, "ner", encoding="gb18030")
    assert data.texts[1] == "叶老桂说" and data.spans[1] == [("name", 0, 3)]

def test_unlabelled_records_for_prediction(tmp_path):
    path = write_jsonl(tmp_path / "test.json", [{"id": 0, "text": "叶老桂说"}])
    data = read_cluener(path, require_labels=False)
    assert data.ids == [0] and data[0][1] == ["O"] * 4


def test_unknown_dev_label_names_line_and_word(tmp_path):
    data = read_cluener(write_jsonl(tmp_path / "dev.json", RECORDS[:2]))
    with pytest.raises(ValueError, match=r"'B-game' \(first at line 2, word 7 '《'\)"):
        check_labels(data, ["O", "B-company", "I-company", "B-name", "I-name"])


# ----------------------------------------------------------------------------- shared files


def shared_cluener(name):
    path = SHARED_DATA / "cluener" / name
    if not path.is_file():
        pytest.skip(f"shared data not found: {path}")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return read_cluener(path), records


# The one nested entity of the shared files: a book title holding two company names.
SHARED_OVERLAPS = {"train.json": [(1507, "招商银行"), (1507, "永隆银行")], "dev.json": []}
# Gold spans with an edge inside a BERT word (dev.json): no word tagging can give them.
DEV_INSIDE_WORDS = 6


@pytest.mark.parametrize("name", ["train.json", "dev.json"])
def test_shared_round_trip_reproduces_every_gold_span(name):
    """JSON -> one BIO tag per character -> spans gives back every gold span exactly; the
    only ones missing are the overlaps reported (BIO cannot hold a nested entity)."""
    data, records = shared_cluener(name)
    assert len(data) == len(records)
    dropped = [re.search(r":(\d+): overlapping span \S+ \[\d+, \d+\) '([^']*)'", m).groups()
               for m in data.dropped]
    assert [(int(line), entity) for line, entity in dropped] == SHARED_OVERLAPS[name]
    n_spans = 0
    for i, record in enumerate(records):
        gold = gold_spans(record)
        back = {(t, s, e + 1) for t, s, e in get_entities(data.char_tags(i))}
        missing = {(data.lines[i], record["text"][s:e]) for _, s, e in gold - back}
        assert missing <= set(SHARED_OVERLAPS[name]), missing
        assert back <= gold
        if not missing:
            assert cluener_record(record["text"], sorted(back)) == canonical(record)
        n_spans += len(gold)
    assert n_spans == {"train.json": 21747, "dev.json": 2225}[name]


def test_shared_dev_word_tags_give_back_the_spans():
    """Word tags (BERT's words: each Chinese character one) read back as character spans
    give every gold span of the dev file, except the few whose edge lies inside a word."""
    data, _ = shared_cluener("dev.json")
    inside = 0
    for i in range(len(data)):
        back = set(data.predicted_spans(i, data[i][1]))
        unreachable = set(spans_inside_words(data.spans[i], data.word_spans[i]))
        assert back >= set(data.spans[i]) - unreachable
        inside += len(unreachable)
    assert inside == DEV_INSIDE_WORDS
