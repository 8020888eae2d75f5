"""Reading, encoding and batching of fine-tuning data.

Pipeline::

    train = read_classification("train.tsv")              # or read_conll("train.txt")
    id2label = build_label_map(train.labels)
    label2id = {label: i for i, label in enumerate(id2label)}
    dev = read_classification("dev.tsv")
    check_labels(dev, label2id)                           # clear error for unseen labels
    examples = encode_classification(tokenizer, train, label2id, max_length=64)
    loader = DataLoader(examples, batch_size=32, shuffle=True, seed=0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for batch in loader:                              # dict of (B, T) / (B,) int64 arrays
            ...

Reproducing the reference protocols (shared/reference/README.md):

* SST2-A: the training rows are ``default_rng(seed).permutation(67349)[:16000]``, used in
  exactly that order for one epoch, in consecutive chunks of 32::

      train = subset(read_classification(train_tsv), 16000, seed)   # or subset(examples, ...)
      loader = DataLoader(encode_classification(tok, train, label2id, 64), 32, shuffle=False)

  (``shuffle=True, seed=seed, first_epoch_in_order=True`` gives the same epoch 0 and
  reshuffles later epochs with ``default_rng(seed + e)``.)

* CONLL-A: epoch e visits the sentences in ``default_rng(seed + e).permutation(n)``, in
  consecutive chunks of 32, which is what ``DataLoader(..., shuffle=True, seed=seed)``
  does after ``set_epoch(e)``. The reference trains on the tags exactly as written in the
  file; ``read_conll`` rewrites an ``I-X`` that opens an entity as ``B-X`` (IOB1 -> IOB2),
  which changes 267 tags of the CoNLL-2003 training file (entity F1 is unaffected:
  seqeval reads both spellings as the same entities). Pass ``to_iob2=False`` to train on
  the raw tags as the reference does.

Errors name the file and line (``path:line: what is wrong: 'the line'``).
"""

import csv
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "ClassificationData",
    "ConllData",
    "read_classification",
    "read_conll",
    "build_label_map",
    "check_labels",
    "encode_classification",
    "encode_ner",
    "word_tags",
    "subset",
    "Batch",
    "DataLoader",
    "Batches",
    "IGNORE_INDEX",
]

IGNORE_INDEX = -100  # label of positions the loss skips (sub-tokens, specials, padding)

TEXT_COLUMNS = ("text", "sentence", "sentence1", "content")
PAIR_COLUMNS = ("text_pair", "sentence2")
CONLL_TYPES = ("PER", "ORG", "LOC", "MISC")  # the reference's label order for CoNLL-2003
_NER_TAG = re.compile(r"^(O|[BI]-\S+)$")
_INTEGER = re.compile(r"^[+-]?\d+$")


def _show(line, limit=200):
    """A line for an error message: quoted, shortened when long."""
    line = line.rstrip("\r\n")
    if len(line) > limit:
        line = line[:limit] + "..."
    return repr(line)


def _line_error(path, lineno, what, line):
    return ValueError(f"{path}:{lineno}: {what}: {_show(line)}")


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


def _pick_columns(columns, text_column, text_pair_column, label_column, where):
    """Resolve column names against a header. Returns (text, pair or None, label)."""
    found = f"columns found: {', '.join(repr(c) for c in columns)}"

    def need(name, role):
        if name not in columns:
            raise ValueError(f"{where}: no {role} column {name!r} ({found})")
        return name

    label = need(label_column or "label", "label")
    if text_column is not None:
        text = need(text_column, "text")
    else:
        text = next((c for c in TEXT_COLUMNS if c in columns), None)
        others = [c for c in columns if c != label and c != text_pair_column]
        if text is None and len(others) == 1:
            text = others[0]  # a two-column file: whatever is not the label is the text
        if text is None:
            raise ValueError(
                f"{where}: no text column (looked for {', '.join(TEXT_COLUMNS)}; {found}); "
                "name it with text_column=")
    if text_pair_column is not None:
        pair = need(text_pair_column, "text pair")
    else:
        pair = next((c for c in PAIR_COLUMNS if c in columns and c != text), None)
    return text, pair, label


def _rows_tsv(path):
    """Yield (line number, raw line, fields) of a tab-separated file, header first.

    Fields are split on every tab with no quoting rules (SST-2 texts contain quote
    characters that csv's TSV dialect would misread)."""
    with open(path, encoding="utf-8-sig") as f:  # universal newlines: \r\n -> \n
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if line.strip():
                yield lineno, line, line.split("\t")


def _rows_csv(path):
    """Yield (line number, raw text, fields) of a CSV file (quoted fields may span lines)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        start = 1
        for row in reader:
            if any(x.strip() for x in row):
                yield start, ",".join(row), row
            start = reader.line_num + 1


def _header_and_rows(path, rows):
    """Split a row stream into the header names and data rows."""
    try:
        _, _, header = next(rows)
    except StopIteration:
        raise ValueError(f"{path}: no examples (the file is empty)") from None
    return [h.strip() for h in header], rows


def read_classification(path, text_column=None, text_pair_column=None, label_column=None):
    """Read a text-classification file: TSV (.tsv), CSV (.csv) or JSON lines (.jsonl/.json).

    TSV and CSV files need a header line; JSON lines are objects keyed by column name.
    Default columns: label "label"; text "text", "sentence", "sentence1" or "content" (the
    first present; in a two-column file, the column that is not the label); text pair
    "text_pair" or "sentence2" when present. Blank lines are skipped.

    Returns:
        ClassificationData with N examples.

    Raises:
        ValueError "path:line: what is wrong: 'the line'" for a missing label, a wrong
        number of columns or bad JSON; "path: ..." for an empty file or a missing column
        (listing the columns found).
    """
    path = str(path)
    suffix = Path(path).suffix.lower()
    if suffix in (".tsv", ".txt"):
        columns, rows = _header_and_rows(path, _rows_tsv(path))
    elif suffix == ".csv":
        columns, rows = _header_and_rows(path, _rows_csv(path))
    elif suffix in (".jsonl", ".json", ".ndjson"):
        return _read_jsonl(path, text_column, text_pair_column, label_column)
    else:
        raise ValueError(f"{path}: unknown file type {suffix!r}; expected .tsv, .csv or .jsonl")
    where = f"{path}:1 (header)"
    text_col, pair_col, label_col = _pick_columns(
        columns, text_column, text_pair_column, label_column, where)
    i_text, i_label = columns.index(text_col), columns.index(label_col)
    i_pair = columns.index(pair_col) if pair_col else None
    data = ClassificationData([], [], [] if pair_col else None, [], path)
    for lineno, line, fields in rows:
        if len(fields) != len(columns):
            raise _line_error(path, lineno, f"expected {len(columns)} columns "
                              f"({', '.join(columns)}), found {len(fields)}", line)
        label = fields[i_label].strip()
        if not label:
            raise _line_error(path, lineno, f"missing label (column {label_col!r})", line)
        data.labels.append(label)
        data.texts.append(fields[i_text])
        if i_pair is not None:
            data.text_pairs.append(fields[i_pair])
        data.lines.append(lineno)
    if not data.texts:
        raise ValueError(f"{path}: no examples (only a header line)")
    return data


def _read_jsonl(path, text_column, text_pair_column, label_column):
    data, cols = None, None
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise _line_error(path, lineno, f"invalid JSON ({e.msg})", line) from None
            if not isinstance(record, dict):
                raise _line_error(path, lineno, "expected a JSON object per line", line)
            if cols is None:  # columns are resolved from the first record
                cols = _pick_columns(list(record), text_column, text_pair_column,
                                     label_column, f"{path}:{lineno}")
                data = ClassificationData([], [], [] if cols[1] else None, [], path)
            text_col, pair_col, label_col = cols
            label = record.get(label_col)
            if label is None or str(label).strip() == "":
                raise _line_error(path, lineno, f"missing label (key {label_col!r})", line)
            for key in (text_col, pair_col):
                if key is not None and not isinstance(record.get(key), str):
                    raise _line_error(path, lineno, f"key {key!r} must be a string", line)
            data.labels.append(str(label).strip())
            data.texts.append(record[text_col])
            if pair_col:
                data.text_pairs.append(record[pair_col])
            data.lines.append(lineno)
    if data is None:
        raise ValueError(f"{path}: no examples (the file is empty)")
    return data


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


def read_conll(path, labels=None, to_iob2=True):
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
        ValueError "path:line: ..." for a line without a tag column, a tag that is not
        O / B-TYPE / I-TYPE, or a tag outside `labels`; "path: no sentences" when empty.
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

    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
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
            if not _NER_TAG.match(tag):
                raise _line_error(path, lineno, f"unknown tag {tag!r} (expected O, B-TYPE or "
                                  "I-TYPE)", line)
            if not tokens:
                start = lineno
            tokens.append(parts[0])
            tags.append(tag)
            tag_lines.append((lineno, line))
    finish()
    if not data:
        raise ValueError(f"{path}: no sentences")
    return data


# ----------------------------------------------------------------- label maps


def _flat_labels(labels):
    """Labels as (label, example index, position in example or None) triples."""
    if isinstance(labels, ClassificationData):
        labels = labels.labels
    out = []
    for i, item in enumerate(labels):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], list):
            item = item[1]  # a (tokens, tags) sentence
        if isinstance(item, (list, tuple)):
            out.extend((tag, i, j) for j, tag in enumerate(item))
        else:
            out.append((item, i, None))
    return out


def build_label_map(labels, preferred_order=None):
    """The id -> label list for the labels seen in training.

    Args:
        labels: training labels: a flat list (classification), a list of tag lists or
            (tokens, tags) sentences (NER), or a ClassificationData.
        preferred_order: an explicit order; must contain every training label.

    Returns:
        id2label, a list of label strings. Without preferred_order:
        * NER tags (all O / B-X / I-X): O first, then B-X, I-X for each entity type (both,
          even if one never occurs in training), types in CoNLL-2003's order PER, ORG,
          LOC, MISC when they are all among those, otherwise sorted by name. For CoNLL-2003
          this is the reference's O B-PER I-PER B-ORG I-ORG B-LOC I-LOC B-MISC I-MISC.
        * integer labels ("0", "1", ...): sorted numerically;
        * other labels: sorted as strings.
    """
    seen = {str(label) for label, _, _ in _flat_labels(labels)}
    if not seen:
        raise ValueError("build_label_map: no labels given")
    if preferred_order is not None:
        order = [str(x) for x in preferred_order]
        duplicates = sorted({x for x in order if order.count(x) > 1})
        if duplicates:
            raise ValueError(f"preferred_order repeats {duplicates}")
        missing = sorted(seen - set(order))
        if missing:
            raise ValueError(f"training labels missing from preferred_order {order}: {missing}")
        return order
    if all(_NER_TAG.match(x) for x in seen):
        types = {x[2:] for x in seen if x != "O"}
        if types <= set(CONLL_TYPES):
            types = [t for t in CONLL_TYPES if t in types]
        else:
            types = sorted(types)
        return ["O"] + [p + t for t in types for p in ("B-", "I-")]
    if all(_INTEGER.match(x) for x in seen):
        return sorted(seen, key=int)
    return sorted(seen)


def _as_label2id(label_map):
    if isinstance(label_map, dict):
        return label_map
    return {label: i for i, label in enumerate(label_map)}


def check_labels(labels, label2id, path=None, lines=None):
    """Raise a clear error if `labels` holds labels the label map does not know.

    Args:
        labels: ClassificationData, ConllData (from read_conll), a flat label list or a
            list of tag lists.
        label2id: dict label -> id, or the id2label list.
        path, lines: file name and per-example line numbers for the message (taken from
            the data object when it has them).

    Raises:
        ValueError "path: labels never seen in training: 'x' (first at line 12: '...'),
        ...; known labels: [...]".
    """
    label2id = _as_label2id(label2id)
    path = path or getattr(labels, "path", "") or "<labels>"
    lines = lines if lines is not None else getattr(labels, "lines", None) or None
    unknown = {}
    for label, i, j in _flat_labels(labels):
        if str(label) not in label2id and str(label) not in unknown:
            unknown[str(label)] = (i, j)
    if not unknown:
        return
    parts = []
    for label, (i, j) in unknown.items():
        if lines is not None:
            where = f"line {lines[i] + (j or 0)}"
        else:
            where = f"example {i}" + ("" if j is None else f", token {j}")
        parts.append(f"{label!r} (first at {where})")
    raise ValueError(f"{path}: labels never seen in training: {', '.join(parts)}; "
                     f"known labels: {list(label2id)}")


# ----------------------------------------------------------------- encoding


def encode_classification(tokenizer, data, label2id, max_length=128):
    """Tokenize texts (and pairs) and map labels to ids.

    Args:
        tokenizer: a minitune.Tokenizer (WordPiece with [CLS] ... [SEP]).
        data: ClassificationData.
        label2id: dict label -> id, or the id2label list.
        max_length: longer inputs are truncated to this many tokens.

    Returns:
        list of N dicts: input_ids (list[int], length T_i <= max_length),
        token_type_ids (list[int], T_i), label (int).
    """
    label2id = _as_label2id(label2id)
    check_labels(data, label2id)
    enc = tokenizer(data.texts, data.text_pairs, max_length=max_length, padding=False,
                    truncation=True)
    ids, types = enc["input_ids"], enc["token_type_ids"]
    return [{"input_ids": list(ids[i]), "token_type_ids": list(types[i]),
             "label": label2id[data.labels[i]]} for i in range(len(data))]


def encode_ner(tokenizer, sentences, label2id, max_length=128):
    """Tokenize pre-split words and align word tags to sub-tokens.

    The first sub-token of each word carries the word's tag id; its other sub-tokens,
    [CLS] and [SEP] get IGNORE_INDEX (-100). A sentence longer than max_length sub-tokens
    is truncated: its last words get no position, so they are neither trained on nor
    predicted (word_tags fills them with 'O', as the reference evaluation does).

    Args:
        tokenizer: a minitune.Tokenizer.
        sentences: list of (tokens, tags) pairs, e.g. from read_conll.
        label2id: dict tag -> id, or the id2label list.
        max_length: maximum sub-tokens per sentence, [CLS] and [SEP] included.

    Returns:
        (examples, n_truncated): examples is a list of dicts with input_ids (T_i),
        token_type_ids (T_i), labels (T_i; tag id or -100), word_ids (T_i; word index or
        None) and n_words; n_truncated counts sentences in which some word got no
        sub-token within max_length.
    """
    label2id = _as_label2id(label2id)
    check_labels(sentences, label2id)
    words = [list(tokens) for tokens, _ in sentences]
    enc = tokenizer(words, is_split_into_words=True, max_length=max_length, padding=False,
                    truncation=True)
    examples, n_truncated = [], 0
    for i, (tokens, tags) in enumerate(sentences):
        word_ids = list(enc.word_ids(i))
        w = np.array([-1 if x is None else x for x in word_ids], dtype=np.int64)
        # A position starts a word when it has a word id that differs from its left
        # neighbour's; [CLS]/[SEP] (-1) never do.
        first = (w >= 0) & (w != np.concatenate([[-1], w[:-1]]))
        tag_ids = np.array([label2id[t] for t in tags], dtype=np.int64)
        labels = np.full(len(w), IGNORE_INDEX, dtype=np.int64)
        labels[first] = tag_ids[w[first]]
        if int(first.sum()) < len(tokens):
            n_truncated += 1
        examples.append({"input_ids": list(enc["input_ids"][i]),
                         "token_type_ids": list(enc["token_type_ids"][i]),
                         "labels": labels.tolist(), "word_ids": word_ids,
                         "n_words": len(tokens)})
    return examples, n_truncated


def word_tags(pred_ids, example, id2label, fill="O"):
    """Per-word tags from per-position predictions: each word takes the prediction at its
    first sub-token; words cut off by truncation get `fill`.

    Args:
        pred_ids: predicted label ids, shape (T,) with T >= len(example["word_ids"])
            (padding beyond the example is ignored).
        example: an encode_ner example (uses word_ids and n_words).
        id2label: the id -> label list.

    Returns:
        list of n_words tag strings.
    """
    tags = [fill] * example["n_words"]
    done = set()
    for pos, w in enumerate(example["word_ids"]):
        if w is not None and w not in done:
            tags[w] = id2label[int(pred_ids[pos])]
            done.add(w)
    return tags


def subset(examples, n, seed):
    """The SST2-A training subset: ``default_rng(seed).permutation(len(examples))[:n]``,
    in that order. Works on lists and on ClassificationData (n=None keeps all, shuffled)."""
    perm = np.random.default_rng(seed).permutation(len(examples))
    if n is not None:
        if n > len(examples):
            raise ValueError(f"subset of {n} examples requested, only {len(examples)} exist")
        perm = perm[:n]
    if isinstance(examples, ClassificationData):
        return examples.select(perm.tolist())
    return [examples[i] for i in perm]


# ----------------------------------------------------------------- batching


class Batch(dict):
    """One batch: a dict of int64 arrays (input_ids, attention_mask, token_type_ids of
    shape (B, T); labels (B,) or (B, T)) with `.indices`, the example indices (B,)."""

    indices = None


def _ragged(values, lengths):
    """Concatenate ragged int sequences (total length lengths.sum()) into one int64 array."""
    total = int(lengths.sum())
    return np.fromiter(itertools.chain.from_iterable(values), dtype=np.int64, count=total)


class DataLoader:
    """Deterministic, resumable batches of encoded examples, padded to the batch's longest.

    Epoch e visits the examples in ``np.random.default_rng(seed + e).permutation(N)`` when
    shuffle, else in their given order, in consecutive chunks of batch_size (the last one
    may be short unless drop_last). With group_by_length, each run of 50 batches' worth of
    examples is sorted by length (longest first) before it is cut into batches, so a batch
    holds similar lengths and needs less padding; with shuffle the order of those batches
    inside the run is then shuffled by the same generator.

    Iterating yields the rest of the current epoch, starting at `position`; when an epoch
    is exhausted the loader moves on to the next one. ``state_dict()`` records (epoch,
    position), so a run restored with ``load_state_dict`` continues on the very next
    batch. Use one iterator at a time.

    Args:
        examples: dicts with input_ids (list of ints), optional token_type_ids, and either
            label (int, classification) or labels (list of ints, one per token).
        batch_size: B.
        shuffle, seed: see above.
        group_by_length: sort within runs of 50 batches by length.
        pad_id: input_ids padding value (token_type_ids pad with 0, labels with -100).
        drop_last: skip the final short batch.
        first_epoch_in_order: with shuffle, epoch 0 keeps the given order and only later
            epochs are shuffled (for examples that are already a random permutation, such as
            the SST2-A subset from ``subset``).
    """

    GROUP_BATCHES = 50

    def __init__(self, examples, batch_size, shuffle=False, seed=0, group_by_length=False,
                 pad_id=0, drop_last=False, first_epoch_in_order=False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(examples) == 0:
            raise ValueError("DataLoader needs at least one example")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.group_by_length = bool(group_by_length)
        self.pad_id = int(pad_id)
        self.drop_last = bool(drop_last)
        self.first_epoch_in_order = bool(first_epoch_in_order)
        self.num_examples = len(examples)
        self.epoch = 0
        self.position = 0
        self._plan_epoch, self._plan = None, None

        # Keep all sequences as flat int64 arrays + offsets: a batch is then one gather.
        self.lengths = np.array([len(e["input_ids"]) for e in examples], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self._ids = _ragged((e["input_ids"] for e in examples), self.lengths)
        first = examples[0]
        self._types = None
        if "token_type_ids" in first:
            self._check_lengths(examples, "token_type_ids")
            self._types = _ragged((e["token_type_ids"] for e in examples), self.lengths)
        self._token_labels = self._labels = None
        if "labels" in first:
            self._check_lengths(examples, "labels")
            self._token_labels = _ragged((e["labels"] for e in examples), self.lengths)
        elif "label" in first:
            self._labels = np.array([e["label"] for e in examples], dtype=np.int64)

    def _check_lengths(self, examples, key):
        for i, e in enumerate(examples):
            if key not in e or len(e[key]) != self.lengths[i]:
                got = "missing" if key not in e else f"length {len(e[key])}"
                raise ValueError(f"example {i}: {key} is {got}, input_ids has length "
                                 f"{self.lengths[i]}")

    def __len__(self):
        if self.drop_last:
            return self.num_examples // self.batch_size
        return -(-self.num_examples // self.batch_size)

    def set_epoch(self, epoch):
        """Select epoch `epoch`'s order. The position is kept when `epoch` is already the
        current epoch (so a restored loader continues mid-epoch), else it restarts at 0."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self.position = 0

    def batch_indices(self, epoch=None):
        """The example indices of every batch of an epoch: a list of int64 arrays (B,)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._plan_epoch != epoch:
            self._plan, self._plan_epoch = self._make_plan(epoch), epoch
        return self._plan

    def _make_plan(self, epoch):
        n, bs = self.num_examples, self.batch_size
        shuffle = self.shuffle and not (self.first_epoch_in_order and epoch == 0)
        rng = np.random.default_rng(self.seed + epoch) if shuffle else None
        order = rng.permutation(n) if shuffle else np.arange(n)
        if self.drop_last:
            order = order[: len(self) * bs]
        if not self.group_by_length:
            return [order[s:s + bs] for s in range(0, len(order), bs)]
        plan = []
        run = bs * self.GROUP_BATCHES
        for s in range(0, len(order), run):
            chunk = order[s:s + run]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches = [chunk[k:k + bs] for k in range(0, len(chunk), bs)]
            if shuffle:
                batches = [batches[k] for k in rng.permutation(len(batches))]
            plan.extend(batches)
        return plan

    def _pad(self, flat, idx, width, pad_value):
        """Gather the sequences `idx` from `flat` into a (B, width) array padded with
        pad_value, and return it with the (B, width) validity mask."""
        cols = np.arange(width)
        valid = cols[None, :] < self.lengths[idx][:, None]  # (B, T)
        gather = np.where(valid, self.offsets[idx][:, None] + cols[None, :], 0)
        out = flat[gather] if flat.size else np.zeros(gather.shape, dtype=np.int64)
        out[~valid] = pad_value
        return out, valid

    def collate(self, idx):
        """The Batch of the examples at indices idx (B,)."""
        idx = np.asarray(idx, dtype=np.int64)
        width = int(self.lengths[idx].max())
        input_ids, valid = self._pad(self._ids, idx, width, self.pad_id)
        batch = Batch(input_ids=input_ids, attention_mask=valid.astype(np.int64))
        if self._types is not None:
            batch["token_type_ids"] = self._pad(self._types, idx, width, 0)[0]
        else:
            batch["token_type_ids"] = np.zeros_like(input_ids)
        if self._token_labels is not None:
            batch["labels"] = self._pad(self._token_labels, idx, width, IGNORE_INDEX)[0]
        elif self._labels is not None:
            batch["labels"] = self._labels[idx]
        batch.indices = idx
        return batch

    def __iter__(self):
        plan = self.batch_indices(self.epoch)
        while self.position < len(plan):
            idx = plan[self.position]
            self.position += 1
            yield self.collate(idx)
        self.epoch += 1
        self.position = 0

    def _config(self):
        return {"seed": self.seed, "batch_size": self.batch_size, "shuffle": self.shuffle,
                "group_by_length": self.group_by_length, "drop_last": self.drop_last,
                "first_epoch_in_order": self.first_epoch_in_order,
                "num_examples": self.num_examples}

    def state_dict(self):
        """{'epoch', 'position'} plus the settings that fix the order (checked on load)."""
        return {"epoch": self.epoch, "position": self.position, **self._config()}

    def load_state_dict(self, state):
        """Restore (epoch, position); the order-defining settings must match."""
        mismatched = [f"{k}: saved {state[k]!r}, loader has {v!r}"
                      for k, v in self._config().items() if k in state and state[k] != v]
        if mismatched:
            raise ValueError("DataLoader state does not match this loader: "
                             + "; ".join(mismatched))
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(f"DataLoader state position {position} is outside 0..{len(self)}")
        self.epoch, self.position = int(state["epoch"]), position


Batches = DataLoader
