"""Readers of fine-tuning files: text classification (TSV, CSV, JSON lines) and CoNLL NER.

``read_labelled(path, task, ...)`` is the one entry point the pipeline uses: it picks the
reader for the task and the file's format. Errors name the file and line
(``path:line: what is wrong: 'the line'``) and, for columns, the flag that names them.

CoNLL and the reference protocol: the reference trains on the tags exactly as written in the
file; ``read_conll`` rewrites an ``I-X`` that opens an entity as ``B-X`` (IOB1 -> IOB2), which
changes 267 tags of the CoNLL-2003 training file (entity F1 is unaffected: seqeval reads both
spellings as the same entities). Pass ``to_iob2=False`` to train on the raw tags as the
reference does.
"""

import codecs
import contextlib
import csv
import functools
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..io.json_io import DuplicateKey, first_undecodable, refuse_duplicate_keys

TEXT_COLUMNS = ("text", "sentence", "sentence1", "content")
PAIR_COLUMNS = ("text_pair", "sentence2")
NER_TAG = re.compile(r"^(O|[BI]-\S+)$")
# CoNLL columns are separated by ASCII spaces and tabs; a token may hold other Unicode
# spaces (a non-breaking space inside "10\u00a0000"), which str.split() would cut at.
ASCII_SPACE = re.compile(r"[ \t\n\r\f\v]+")


def read_labelled(path, task, text_column=None, text_pair_column=None, label_column=None,
                  header=None, encoding="utf-8"):
    """Read a labelled file of ``task`` ("classify" or "ner"), choosing the reader by task and
    file format: ClassificationData (TSV/CSV/JSON lines), SpanData (NER as CLUENER span
    JSON lines: .json, .jsonl) or ConllData (NER as CoNLL columns: any other name)."""
    if task == "ner":
        if FORMATS.get(Path(str(path)).suffix.lower()) == "jsonl":
            from .cluener import read_cluener  # cluener.py builds on this module
            return read_cluener(path, encoding=encoding)
        return read_conll(path, encoding=encoding)
    return read_classification(path, text_column, text_pair_column, label_column, header,
                               encoding=encoding)


def _show(line, limit=200):
    """A line for an error message: quoted, shortened when long."""
    line = line.rstrip("\r\n")
    if len(line) > limit:
        line = line[:limit] + "..."
    return repr(line)


def _line_error(path, lineno, what, line):
    return DataError(f"{path}:{lineno}: {what}: {_show(line)}")


def _named_decoding_errors(reader):
    """Turn a UnicodeDecodeError anywhere in ``reader(path, ..., *, encoding=...)`` into a
    DataError naming the file, the line of the first bad byte and the --encoding flag (the
    readers take ``encoding`` by keyword only, so this sees the one in force)."""
    @functools.wraps(reader)
    def wrapped(path, *args, **kwargs):
        try:
            return reader(path, *args, **kwargs)
        except UnicodeDecodeError as e:
            encoding = kwargs.get("encoding") or "utf-8"
            raise DataError(f"{_decoding_error_place(path, encoding)}: not {encoding} text "
                            f"({e.reason} at byte {e.object[e.start:e.start + 1]!r}); give the "
                            "file's encoding with --encoding (e.g. --encoding latin-1)") from None
    return wrapped


def _decoding_error_place(path, encoding):
    """``path:line`` of the first byte that does not decode (``path`` alone for stdin)."""
    if str(path) == "-":
        return "stdin"
    with open(path, "rb") as f:
        found = first_undecodable(f.read(), _codec(encoding))
    return f"{path}:{found[0]}" if found else str(path)


def _codec(encoding):
    """The codec to read with: UTF-8 skips a byte-order mark; unknown names are an error."""
    try:
        name = codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise DataError(f"unknown text encoding {encoding!r} (--encoding); e.g. utf-8, latin-1, "
                        "cp1252, gb18030") from None
    return "utf-8-sig" if name == "utf-8" else name


# ----------------------------------------------------------------- classification files


@dataclass
class ClassificationData:
    """Texts with string labels, as read from a file.

    Attributes:
        texts: N strings.
        labels: N label strings (as written in the file; map them with a label map).
        text_pairs: N second segments (sentence-pair tasks), or None.
        lines: N source line numbers (1-based) for error messages.
        path: the file read.
    """

    texts: list
    labels: list
    text_pairs: list = None
    lines: list = field(default_factory=list)
    path: str = ""

    def __len__(self):
        return len(self.texts)

    def select(self, indices):
        """A new ClassificationData with the examples at `indices`, in that order."""
        pick = lambda values: None if values is None else [values[i] for i in indices]  # noqa: E731
        return ClassificationData(pick(self.texts), pick(self.labels), pick(self.text_pairs),
                                  pick(self.lines) if self.lines else [], self.path)


def _pick_columns(columns, text_column, text_pair_column, label_column, where,
                  need_label=True):
    """Resolve column names against a header. Returns (text, pair or None, label).

    Without ``need_label`` (texts to predict) a label column is optional and comes back None
    when absent. A missing column's error names the flag that chooses it (``--label-column``;
    in Python the argument of the same name, ``label_column=``)."""
    found = f"columns found: {', '.join(repr(c) for c in columns)}"

    def need(name, role, option, given):
        if name not in columns:
            hint = "" if given else f"; name yours with {option}"
            raise DataError(f"{where}: no {role} column {name!r} ({found}){hint}")
        return name

    if need_label:
        label = need(label_column or "label", "label", "--label-column", label_column)
    else:                                     # texts to predict: a label column is ignored
        label = label_column or "label"
        label = label if label in columns else None
    if text_column is not None:
        text = need(text_column, "text", "--text-column", True)
    else:
        text = next((c for c in TEXT_COLUMNS if c in columns), None)
        others = [c for c in columns if c != label and c != text_pair_column]
        if text is None and len(others) == 1:
            text = others[0]  # whatever is not the label (or the pair) is the text
        if text is None:
            raise DataError(
                f"{where}: no text column (looked for {', '.join(TEXT_COLUMNS)}; {found}); "
                "name yours with --text-column")
    if text_pair_column is not None:
        pair = need(text_pair_column, "text pair", "--text-pair-column", True)
    else:
        pair = next((c for c in PAIR_COLUMNS if c in columns and c != text), None)
    return text, pair, label


@contextlib.contextmanager
def _open(path, newline=None, encoding="utf-8"):
    """A text stream of ``path``; "-" is stdin. Universal newlines turn \\r\\n and \\r
    into \\n."""
    codec = _codec(encoding)
    if str(path) == "-":
        # stdin's bytes are decoded with ``encoding`` too, strictly: Python's own sys.stdin
        # uses the locale's codec and, under the C locale, smuggles bad bytes in as surrogates
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:                      # a stream without bytes (tests' StringIO)
            yield sys.stdin
            return
        stream = io.TextIOWrapper(buffer, encoding=codec, errors="strict", newline=newline)
        try:
            yield stream
        finally:
            stream.detach()                     # leave sys.stdin's buffer open
        return
    with open(path, encoding=codec, newline=newline) as f:
        yield f


def _rows_tsv(path, encoding):
    """Yield (line number, raw line, fields) of a tab-separated file, header first.

    Fields are split on every tab with no quoting rules (SST-2 texts contain quote
    characters that csv's TSV dialect would misread)."""
    with _open(path, encoding=encoding) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if line.strip():
                yield lineno, line, line.split("\t")


def _rows_csv(path, encoding):
    """Yield (line number, raw text, fields) of a CSV file (quoted fields may span lines).

    Fields may be of any length. A quote left open at the end of the file is an error
    naming the line where that field began (csv would otherwise swallow the rest of the
    file into it), and so is other malformed quoting."""
    with _open(path, newline="", encoding=encoding) as f, _no_field_size_limit():
        lines = _Recorder(f)
        reader = csv.reader(lines, strict=True)
        start = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                if "unexpected end of data" in str(e):
                    opened = _open_quote_line(lines.since_mark, start)
                    raise DataError(f"{path}:{opened}: a quoted field begins on this line and "
                                    "is never closed (a missing \" ?): "
                                    f"{_show(lines.since_mark[opened - start])}") from None
                raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e}): "
                                f"{_show(lines.last)}") from None
            if any(x.strip() for x in row):
                yield start, ",".join(row), row
            start = reader.line_num + 1
            lines.mark()


class _Recorder:
    """An iterator over a file's lines that keeps those read since ``mark()`` (the lines of
    the CSV row being parsed, to locate an unterminated quote)."""

    def __init__(self, f):
        self._f = f
        self.since_mark, self.last = [], ""

    def __iter__(self):
        return self

    def __next__(self):
        self.last = next(self._f)
        self.since_mark.append(self.last)
        return self.last

    def mark(self):
        self.since_mark = []


def _open_quote_line(lines, first):
    """The line (numbered from ``first``) where the quoted field still open at the end of
    ``lines`` began: CSV quoting (a quote opens a field only at its start; "" is a quote)."""
    in_quotes, at_field_start, opened = False, True, first
    for offset, line in enumerate(lines):
        i = 0
        while i < len(line):
            c = line[i]
            if in_quotes:
                if c == '"' and line[i + 1:i + 2] == '"':
                    i += 1
                elif c == '"':
                    in_quotes = False
            elif c == '"' and at_field_start:
                in_quotes, opened = True, first + offset
            at_field_start = not in_quotes and c in ",\r\n"
            i += 1
    return opened


@contextlib.contextmanager
def _no_field_size_limit():
    """csv refuses fields over 128 KiB by default; a data file's text may be longer."""
    previous = csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


# file name suffix -> format
FORMATS = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl",
           ".ndjson": "jsonl"}


def file_format(path, formats=FORMATS):
    """The format of ``path`` from its suffix, or a ValueError listing the known ones."""
    suffix = Path(str(path)).suffix.lower()
    if suffix not in formats:
        raise DataError(f"{path}: unknown file type {suffix!r}; expected "
                         f"{', '.join(sorted(set(formats)))}")
    return formats[suffix]


def _records(path, fmt, header=None, given=(), encoding="utf-8"):
    """The rows of a "tsv"/"csv" file, or of a "jsonl" file.

    A tsv/csv file has a header line or not: ``header`` True/False, or None to detect it
    (``_has_header``; ``given`` are the column names asked for). Without one, the columns are
    named by position, "0", "1", ...

    Returns (columns, records, where, named): records are (line number, raw line, {column:
    value}); ``where`` locates the column names for error messages; ``named`` is False when
    the columns are positions. Bad rows raise "path:line: ...".
    """
    if fmt == "jsonl":
        records = []
        with _open(path, encoding=encoding) as f:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    records.append((lineno, line, _json_record(path, lineno, line)))
        if not records:
            raise DataError(f"{path}: no examples (the file is empty)")
        # columns are resolved from the first record
        return list(records[0][2]), records, f"{path}:{records[0][0]}", True
    rows = list(_rows_csv(path, encoding) if fmt == "csv" else _rows_tsv(path, encoding))
    if not rows:
        raise DataError(f"{path}: no examples (the file is empty)")
    if header is None:
        header = _has_header(rows, given)
    if header:
        header_lineno, header_line = rows[0][:2]
        columns, rows, where = [h.strip() for h in rows[0][2]], rows[1:], f"{path}:1 (header)"
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise _line_error(path, header_lineno, f"column name(s) "
                              f"{', '.join(map(repr, repeated))} appear more than once in "
                              "the header", header_line)
    else:
        columns = [str(i) for i in range(len(rows[0][2]))]
        where = f"{path} (no header: columns {', '.join(columns)})"
    records = []
    for lineno, line, fields in rows:
        if len(fields) != len(columns):
            raise _line_error(path, lineno, f"expected {len(columns)} columns "
                              f"({', '.join(columns)}), found {len(fields)}", line)
        records.append((lineno, line, dict(zip(columns, fields))))
    if not records:
        raise DataError(f"{path}: no examples (only a header line)")
    return columns, records, where, header


def _has_header(rows, given):
    """Does the first of the tsv/csv ``rows`` name columns? Yes when it holds a known column
    name (or one in ``given``). A first row that names none is data when, in a two-column
    file, its value in the label column is also a label of another row: a header's column
    name is not."""
    known = {"label", *TEXT_COLUMNS, *PAIR_COLUMNS, *(c for c in given if c is not None)}
    first = [f.strip() for f in rows[0][2]]
    if known & set(first) or len(first) != 2 or len(rows) < 2:
        return True
    others = [(n, line, dict(zip("01", fields))) for n, line, fields in rows[1:]
              if len(fields) == 2]
    k = _label_position(others)
    return first[int(k)] not in {record[k].strip() for _, _, record in others}


def _label_position(records):
    """The label column, "0" or "1", of two-column header-less records: the one with fewer
    distinct values, or on a tie the one with shorter values."""
    def score(key):
        values = [record[key].strip() for _, _, record in records]
        return len(set(values)), sum(map(len, values))
    return min("01", key=score)


def _json_record(path, lineno, line):
    try:
        record = json.loads(line, object_pairs_hook=refuse_duplicate_keys)
    except json.JSONDecodeError as e:
        raise _line_error(path, lineno, f"invalid JSON ({e.msg})", line) from None
    except (DuplicateKey, RecursionError, ValueError) as e:
        what = (f"key {e.key!r} appears more than once" if isinstance(e, DuplicateKey)
                else "JSON nested too deeply" if isinstance(e, RecursionError)
                else f"unusable JSON ({e})")
        raise _line_error(path, lineno, what, line) from None

    if not isinstance(record, dict):
        raise _line_error(path, lineno, "expected a JSON object per line", line)
    return record


def _check_strings(path, lineno, line, record, keys, what):
    for key in keys:
        if key is not None and not isinstance(record.get(key), str):
            raise _line_error(path, lineno, f"{what} {key!r} must be a string", line)


@_named_decoding_errors
def read_classification(path, text_column=None, text_pair_column=None, label_column=None,
                        header=None, *, encoding="utf-8"):
    """Read a text-classification file: TSV (.tsv), CSV (.csv) or JSON lines (.jsonl/.json).

    TSV and CSV files have a header line or not (``header``: True, False, or None to detect
    it, see ``_has_header``); JSON lines are objects keyed by column name. Default columns:
    label "label"; text "text", "sentence", "sentence1" or "content" (the first present; in a
    two-column file, the column that is not the label); text pair "text_pair" or "sentence2"
    when present. Blank lines are skipped. Without a header the columns are named by
    position, "0", "1", ...; in a two-column file the label column is then the one with fewer
    distinct values, then shorter ones (ChnSentiCorp's ``text<TAB>positive``, GLUE's
    ``0<TAB>text``); else name them (``label_column="2"``).

    Returns:
        ClassificationData with N examples.

    Raises:
        DataError (a ValueError) "path:line: what is wrong: 'the line'" for a missing
        label, a wrong number of columns or bad JSON; "path: ..." for an empty file or a
        missing column (listing the columns found).
    """
    path = str(path)
    fmt = file_format(path)
    columns, records, where, named = _records(path, fmt, header,
                                              (text_column, text_pair_column, label_column),
                                              encoding)
    if not named and label_column is None and text_column is None and len(columns) == 2:
        label_column = _label_position(records)
    try:
        text_col, pair_col, label_col = _pick_columns(
            columns, text_column, text_pair_column, label_column, where)
    except ValueError as e:
        if not named or fmt == "jsonl":
            raise
        raise DataError(f"{e}; if line 1 is data, not a header, pass --header no") from None
    what = "key" if fmt == "jsonl" else "column"
    data = ClassificationData([], [], [] if pair_col else None, [], path)
    for lineno, line, record in records:
        label = record.get(label_col)
        if label is None or str(label).strip() == "":
            raise _line_error(path, lineno, f"missing label ({what} {label_col!r})", line)
        _check_strings(path, lineno, line, record, (text_col, pair_col), what)
        data.labels.append(str(label).strip())
        data.texts.append(record[text_col])
        if pair_col:
            data.text_pairs.append(record[pair_col])
        data.lines.append(lineno)
    return data


TEXT_FORMATS = {**FORMATS, ".txt": "txt", ".text": "txt", "": "txt"}


@_named_decoding_errors
def read_texts(path, text_column=None, text_pair_column=None, label_column=None, fmt=None,
               header=None, *, encoding="utf-8"):
    """Texts to label, from a file or stdin.

    Args:
        path: a file, or "-" for stdin.
        fmt: "txt" (one text per line, blank lines skipped), "tsv" / "csv" (with or without
            a header line, see ``read_classification``) or "jsonl" (a CLUENER file is one:
            its "text" is read, its "label" ignored); default: from the file name (.txt,
            .tsv, .csv, .jsonl), stdin "txt".
        text_column, text_pair_column: the columns of a tsv/csv/jsonl file (default: those
            of ``read_classification``); a label column (``label_column``, default "label")
            may be present and is ignored.

    Returns:
        (texts, text_pairs or None).
    """
    fmt = fmt or ("txt" if str(path) == "-" else file_format(path, TEXT_FORMATS))
    if fmt == "txt":
        with _open(path, encoding=encoding) as f:
            return [line.rstrip("\r\n") for line in f if line.strip()], None
    columns, records, where, named = _records(path, fmt, header,
                                              (text_column, text_pair_column, label_column),
                                              encoding)
    if not named and label_column is None and text_column is None and len(columns) == 2:
        label_column = _label_position(records)
    text_col, pair_col, _ = _pick_columns(columns, text_column, text_pair_column, label_column,
                                          where, need_label=False)
    what = "key" if fmt == "jsonl" else "column"
    texts, pairs = [], [] if pair_col else None
    for lineno, line, record in records:
        _check_strings(path, lineno, line, record, (text_col, pair_col), what)
        texts.append(record[text_col])
        if pair_col:
            pairs.append(record[pair_col])
    return texts, pairs


# ----------------------------------------------------------------- CoNLL files


class ConllData(list):
    """A list of (tokens, tags) sentences, with where they came from.

    Attributes:
        lines: the 1-based line number of each sentence's first token (token j of
            sentence i is on line lines[i] + j).
        path: the file read.
        n_converted: how many I-X tags were rewritten as B-X (IOB1 -> IOB2).
    """

    def __init__(self, sentences=(), lines=(), path="", n_converted=0):
        super().__init__(sentences)
        self.lines = list(lines)
        self.path = path
        self.n_converted = n_converted

    def location(self, i, j=None):
        """Where sentence i (token j) came from, for messages."""
        return f"line {self.lines[i] + (j or 0)}"

    def scored_tags(self, pred_tags):
        """(gold, predicted) tag sequences that entity scores compare: here the word tags
        (SpanData compares characters)."""
        return [list(tags) for _, tags in self], pred_tags


def _to_iob2(tags):
    """IOB1 -> IOB2: an I-X that opens an entity (after O, or after another type)
    becomes B-X. IOB2 input comes back unchanged. Returns (new tags, number changed)."""
    out, changed, prev_type = [], 0, None
    for tag in tags:
        entity_type = None if tag == "O" else tag[2:]
        if tag.startswith("I-") and prev_type != entity_type:
            tag = "B-" + entity_type
            changed += 1
        out.append(tag)
        prev_type = entity_type
    return out, changed


@_named_decoding_errors
def read_conll(path, labels=None, to_iob2=True, *, encoding="utf-8"):
    """Read a CoNLL-style NER file: one 'token ... TAG' per line, a blank line between
    sentences; the token is the first column and the tag the last. ``-DOCSTART-`` lines
    are skipped.

    Args:
        path: the file.
        labels: optional collection of allowed tags (e.g. the training label map);
            any other tag is an error naming its line.
        to_iob2: rewrite IOB1 tags as IOB2 (an I-X that opens an entity becomes B-X).

    Returns:
        ConllData: a list of (tokens, tags) pairs of equal-length string lists.

    Raises:
        DataError (a ValueError) "path:line: ..." for a line without a tag column, a tag
        that is not O / B-TYPE / I-TYPE, or a tag outside `labels`; "path: no sentences"
        when empty.
    """
    path = str(path)
    allowed = None if labels is None else set(labels)
    data = ConllData(path=path)
    tokens, tags, tag_lines, start = [], [], [], 0

    def finish():
        if not tokens:
            return
        new_tags, changed = _to_iob2(tags) if to_iob2 else (list(tags), 0)
        data.n_converted += changed
        if allowed is not None:
            for j, tag in enumerate(new_tags):
                if tag not in allowed:
                    lineno, line = tag_lines[j]
                    note = "" if tag == tags[j] else f" (read as {tag} in IOB2)"
                    raise _line_error(path, lineno, f"tag {tags[j]!r}{note} is not one of the "
                                      f"labels {sorted(allowed)}", line)
        data.append((list(tokens), new_tags))
        data.lines.append(start)

    with _open(path, encoding=encoding) as f:
        for lineno, line in enumerate(f, start=1):
            parts = [p for p in ASCII_SPACE.split(line) if p]
            if not parts:
                finish()
                tokens, tags, tag_lines = [], [], []
                continue
            if parts[0] == "-DOCSTART-":
                continue
            if len(parts) < 2:
                raise _line_error(path, lineno, "expected 'token TAG' (two or more "
                                  "whitespace-separated columns), found one column", line)
            tag = parts[-1]
            if not NER_TAG.match(tag):
                raise _line_error(path, lineno, f"unknown tag {tag!r} (expected O, B-TYPE or "
                                  "I-TYPE)", line)
            if not tokens:
                start = lineno
            tokens.append(parts[0])
            tags.append(tag)
            tag_lines.append((lineno, line))
    finish()
    if not data:
        raise DataError(f"{path}: no sentences")
    return data
