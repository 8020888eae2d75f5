"""CLUENER2020's span JSON: NER data as character spans, read into word BIO tags and
written back.

One JSON object per line (the CLUE benchmark's format)::

    {"id": 7, "text": "浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读。",
     "label": {"name": {"叶老桂": [[9, 11]]}, "company": {"浙商银行": [[0, 3]]}}}

``label`` maps an entity type to {entity text: [[start, end], ...]}, with character
offsets and **inclusive** ends; ``id`` is optional; test files have no ``label``.

Reading: the spans become one BIO tag per character (``words.spans_to_char_tags``), the text
is cut into words by BERT's rule (``words.split_words``: each Chinese character is a word)
and each word takes its first character's tag. The result, ``SpanData``, is a ``ConllData``
of (words, tags) sentences, so it trains like a CoNLL file, and keeps the texts, the word
offsets and the gold spans, so predictions go back to characters: evaluation scores
entities on character spans exactly as CLUENER does, and ``cluener_record`` writes them in
this same format.

Checked on reading, with file and line: the JSON, the keys' types, each span inside the
text and its text equal to the entity written beside it (an off-by-one -- exclusive ends --
shows up here). Overlapping spans cannot both be BIO tags: the longer one is kept and each
one left out is reported (``SpanData.dropped``, printed by the trainer), never silently.
"""
import json

from .readers import ConllData, _codec, _line_error, _named_decoding_errors
from .words import (char_tags_to_word_tags, span_str, spans_to_char_tags, split_words,
                    word_tags_to_spans)


class SpanData(ConllData):
    """(words, tags) sentences read from character spans, with what maps them back.

    Attributes (one item per sentence, besides ConllData's lines and path):
        texts: the texts.
        word_spans: each word's (start, end) in its text, end exclusive.
        spans: the gold entities kept, (type, start, end) with end exclusive.
        ids: the records' "id" values (None where absent).
        dropped: one message per overlapping span left out ("path:line: ...").
    """

    def __init__(self, path=""):
        super().__init__(path=path)
        self.texts, self.word_spans, self.spans, self.ids, self.dropped = [], [], [], [], []

    def add(self, text, spans, line, record_id=None):
        """Append a sentence from its text and (type, start, end) spans."""
        words = split_words(text)
        tags = char_tags_to_word_tags(spans_to_char_tags(len(text), spans), words)
        self.append(([text[s:e] for s, e in words], tags))
        self.lines.append(line)
        self.texts.append(text)
        self.word_spans.append(words)
        self.spans.append(sorted(spans, key=lambda s: (s[1], s[2])))
        self.ids.append(record_id)

    def location(self, i, j=None):
        """Where sentence i (word j) came from, for messages."""
        where = f"line {self.lines[i]}"
        return where if j is None else f"{where}, word {j} {self[i][0][j]!r}"

    def char_tags(self, i):
        """One gold BIO tag per character of sentence i."""
        return spans_to_char_tags(len(self.texts[i]), self.spans[i])

    def predicted_spans(self, i, word_tags):
        """Entities of sentence i from predicted word tags, as (type, start, end)."""
        return word_tags_to_spans(word_tags, self.word_spans[i])

    def scored_tags(self, pred_tags):
        """(gold, predicted) tags per *character*: entity scores then compare character
        spans with the file's, as CLUENER's own scoring does, so an entity whose edge lies
        inside a word (``CPL`` in ``CPL2011``) counts as missed, not as found."""
        gold = [self.char_tags(i) for i in range(len(self))]
        pred = [spans_to_char_tags(len(t), self.predicted_spans(i, tags))
                for i, (t, tags) in enumerate(zip(self.texts, pred_tags))]
        return gold, pred


@_named_decoding_errors
def read_cluener(path, require_labels=True, *, encoding="utf-8"):
    """Read a CLUENER JSON-lines file (see the module docstring).

    Args:
        path: the file.
        require_labels: a record without "label" is an error (training and evaluation
            files); False reads unlabelled texts (prediction input) with no entities.
        encoding: the file's text encoding (--encoding; a UTF-8 byte-order mark is skipped).

    Returns:
        SpanData.

    Raises:
        ValueError "path:line: what is wrong: 'the line'" for bad JSON, a missing or
        mistyped key, a span outside the text or whose text differs from its entity;
        "path: no sentences" for an empty file.
    """
    path = str(path)
    data = SpanData(path)
    with open(path, encoding=_codec(encoding)) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            record = parse_record(path, lineno, line)
            if "label" not in record and require_labels:
                raise _line_error(path, lineno, 'no "label" key (a CLUENER training or '
                                  'evaluation record has one, even if empty: "label": {})',
                                  line)
            spans = _spans(path, lineno, line, record["text"], record.get("label") or {})
            kept, dropped = _resolve_overlaps(spans)
            data.dropped += [f"{path}:{lineno}: overlapping span {span_str(s)} "
                             f"{record['text'][s[1]:s[2]]!r} left out (it overlaps "
                             f"{span_str(by)} {record['text'][by[1]:by[2]]!r})"
                             for s, by in dropped]
            data.add(record["text"], kept, lineno, record.get("id"))
    if not data:
        raise ValueError(f"{path}: no sentences")
    return data


def parse_record(path, lineno, line):
    """One JSON line -> a dict with a "text" string (else an error naming file and line)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise _line_error(path, lineno, f"invalid JSON ({e.msg})", line) from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise _line_error(path, lineno, 'expected a JSON object with a "text" string', line)
    return record


def _spans(path, lineno, line, text, label):
    """The record's "label" as (type, start, end) triples, end exclusive, each checked."""
    if not isinstance(label, dict):
        raise _line_error(path, lineno, '"label" must be an object {type: {entity: '
                          '[[start, end], ...]}}', line)
    spans = set()
    for entity_type, entities in label.items():
        if not isinstance(entities, dict):
            raise _line_error(path, lineno, f'label {entity_type!r} must map entity texts '
                              'to [[start, end], ...]', line)
        for entity, positions in entities.items():
            for pos in positions if isinstance(positions, list) else [positions]:
                if not (isinstance(pos, list) and len(pos) == 2
                        and all(isinstance(x, int) for x in pos)):
                    raise _line_error(path, lineno, f"{entity_type} {entity!r}: expected "
                                      f"[start, end] integer pairs, found {pos!r}", line)
                start, last = pos
                if not 0 <= start <= last < len(text):
                    raise _line_error(path, lineno, f"{entity_type} {entity!r}: span "
                                      f"[{start}, {last}] is outside the text of {len(text)} "
                                      "characters (ends are inclusive)", line)
                if text[start:last + 1] != entity:
                    raise _line_error(path, lineno, f"{entity_type} {entity!r}: span "
                                      f"[{start}, {last}] holds {text[start:last + 1]!r}, "
                                      "not the entity (ends are inclusive)", line)
                spans.add((entity_type, start, last + 1))
    return spans


def _resolve_overlaps(spans):
    """Keep the longest of overlapping spans (then the first): (kept, [(dropped, by)])."""
    kept, dropped = [], []
    for span in sorted(spans, key=lambda s: (s[1] - s[2], s[1], s[0])):
        clash = next((k for k in kept if k[1] < span[2] and span[1] < k[2]), None)
        if clash is None:
            kept.append(span)
        else:
            dropped.append((span, clash))
    return kept, dropped


def cluener_record(text, spans, record_id=None):
    """A CLUENER JSON object for a text and its (type, start, end) spans (end exclusive):
    {"id"?, "text", "label": {type: {entity text: [[start, end inclusive], ...]}}}."""
    label = {}
    for entity_type, start, end in sorted(spans, key=lambda s: (s[1], s[2])):
        label.setdefault(entity_type, {}).setdefault(text[start:end], []).append(
            [start, end - 1])
    record = {} if record_id is None else {"id": record_id}
    record.update(text=text, label=label)
    return record
