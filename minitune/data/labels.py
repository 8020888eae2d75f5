"""Label maps: the id <-> label order of a run, and a clear error for labels the map does not
know (naming file and line)."""
import re

from .readers import NER_TAG, ClassificationData

CONLL_TYPES = ("PER", "ORG", "LOC", "MISC")  # the reference's label order for CoNLL-2003
_INTEGER = re.compile(r"^[+-]?\d+$")


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
    if all(NER_TAG.match(x) for x in seen):
        types = {x[2:] for x in seen if x != "O"}
        if types <= set(CONLL_TYPES):
            types = [t for t in CONLL_TYPES if t in types]
        else:
            types = sorted(types)
        return ["O"] + [p + t for t in types for p in ("B-", "I-")]
    if all(_INTEGER.match(x) for x in seen):
        return sorted(seen, key=int)
    return sorted(seen)


def as_label2id(label_map):
    """A label -> id dict from either a dict (returned as is) or the id2label list."""
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
    label2id = as_label2id(label2id)
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
        if hasattr(labels, "location"):
            where = labels.location(i, j)
        elif lines is not None:
            where = f"line {lines[i] + (j or 0)}"
        else:
            where = f"example {i}" + ("" if j is None else f", token {j}")
        parts.append(f"{label!r} (first at {where})")
    raise ValueError(f"{path}: labels never seen in training: {', '.join(parts)}; "
                     f"known labels: {list(label2id)}")
