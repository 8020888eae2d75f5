"""Evaluation metrics: accuracy, precision/recall/F1, entity-level (span) F1, text reports.

Classification metrics follow scikit-learn's definitions (a zero denominator gives 0,
which is what scikit-learn returns, with a warning, under its default
``zero_division="warn"``). Span metrics follow seqeval's default, conlleval-like mode:
entities are read off IOB/IOBES tags leniently (an ``I-X`` with no ``B-X`` before it
still opens an entity, a change of type closes one), and an entity counts as correct
when its type, first and last position all match. Both are checked against numbers
produced by the libraries themselves (tests/fixtures/metric_cases.json); neither is
needed to run minitune.
"""

from collections import Counter

import numpy as np

__all__ = [
    "accuracy",
    "precision_recall_f1",
    "classification_report",
    "get_entities",
    "span_precision_recall_f1",
    "span_f1",
    "ner_classification_report",
]


def _as_list(values, name):
    if isinstance(values, np.ndarray):
        return values.tolist()
    try:
        return list(values)
    except TypeError:
        raise TypeError(f"{name} must be a sequence, got {type(values).__name__}") from None


def _check_same_length(y_true, y_pred):
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")


def _divide(num, den):
    """num / den elementwise, 0 where den == 0 (scikit-learn's default zero-division result)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _prf_from_counts(tp, n_pred, n_true):
    """Per-class precision, recall, F1 from counts (arrays of shape (K,))."""
    tp = np.asarray(tp, dtype=np.float64)
    n_pred = np.asarray(n_pred, dtype=np.float64)
    n_true = np.asarray(n_true, dtype=np.float64)
    precision = _divide(tp, n_pred)
    recall = _divide(tp, n_true)
    # F1 = 2PR / (P + R) = 2 tp / (n_pred + n_true); the count form has no 0/0 when tp = 0.
    f1 = _divide(2.0 * tp, n_pred + n_true)
    return precision, recall, f1


def _average(tp, n_pred, n_true, average):
    """Reduce per-class counts (K,) to scores according to `average`.

    Returns (precision, recall, f1): floats for "micro"/"macro"/"weighted", arrays of
    shape (K,) for None.
    """
    if average == "micro":
        p, r, f = _prf_from_counts(np.sum(tp), np.sum(n_pred), np.sum(n_true))
        return float(p), float(r), float(f)
    p, r, f = _prf_from_counts(tp, n_pred, n_true)
    if average is None:
        return p, r, f
    if len(p) == 0:
        return 0.0, 0.0, 0.0
    if average == "macro":
        return float(p.mean()), float(r.mean()), float(f.mean())
    if average == "weighted":
        w = np.asarray(n_true, dtype=np.float64)
        if w.sum() == 0:
            return 0.0, 0.0, 0.0
        return (float(np.average(p, weights=w)), float(np.average(r, weights=w)),
                float(np.average(f, weights=w)))
    raise ValueError(
        f"average must be 'binary', 'micro', 'macro', 'weighted' or None, got {average!r}")


# ----------------------------------------------------------------- classification


def accuracy(y_true, y_pred):
    """Fraction of positions where y_pred equals y_true. Both of shape (N,)."""
    y_true = np.asarray(_as_list(y_true, "y_true"))
    y_pred = np.asarray(_as_list(y_pred, "y_pred"))
    _check_same_length(y_true, y_pred)
    if len(y_true) == 0:
        raise ValueError("accuracy of zero examples is undefined")
    return float(np.mean(y_true == y_pred))


def _class_counts(y_true, y_pred, labels):
    """Per-label true positives, predicted counts and true counts, arrays of shape (K,)."""
    true_count = Counter(y_true)
    pred_count = Counter(y_pred)
    hit_count = Counter(t for t, p in zip(y_true, y_pred) if t == p)
    tp = np.array([hit_count[c] for c in labels], dtype=np.int64)
    n_pred = np.array([pred_count[c] for c in labels], dtype=np.int64)
    n_true = np.array([true_count[c] for c in labels], dtype=np.int64)
    return tp, n_pred, n_true


def _sorted_labels(values):
    try:
        return sorted(set(values))
    except TypeError:
        raise TypeError("labels mix types that cannot be sorted; pass labels=[...]") from None


def precision_recall_f1(y_true, y_pred, average="binary", pos_label=1, labels=None):
    """Precision, recall and F1 of class predictions, as scikit-learn's
    ``precision_recall_fscore_support`` (without the support).

    Args:
        y_true, y_pred: class labels (ints or strings), shape (N,).
        average: "binary" (scores of `pos_label` only; at most two distinct labels),
            "micro" (global counts), "macro" (unweighted mean over labels), "weighted"
            (mean weighted by true count), or None (per-label arrays of shape (K,)).
        pos_label: the positive class for average="binary".
        labels: the labels to score, in order; default: sorted union of y_true and y_pred.

    Returns:
        (precision, recall, f1): floats, or arrays of shape (K,) for average=None.
        A ratio with a zero denominator is 0.
    """
    y_true = _as_list(y_true, "y_true")
    y_pred = _as_list(y_pred, "y_pred")
    _check_same_length(y_true, y_pred)
    present = _sorted_labels(list(y_true) + list(y_pred))
    if average == "binary":
        if len(present) > 2:
            raise ValueError(
                f"average='binary' needs at most two distinct labels, found {len(present)}: "
                f"{present}; use average='macro' or 'micro'")
        if pos_label not in present and len(present) == 2:
            raise ValueError(f"pos_label={pos_label!r} is not one of the labels {present}")
        labels = [pos_label]
        average = "micro"
    elif labels is None:
        labels = present
    tp, n_pred, n_true = _class_counts(y_true, y_pred, labels)
    return _average(tp, n_pred, n_true, average)


def _report_table(rows, digits):
    """Header and per-class rows of the text table both reports share.

    rows: list of (name, precision, recall, f1, support). The name column is as wide as
    the longest name, at least len("weighted avg") and `digits`.

    Returns (lines, row_fmt, width): the caller appends its average rows with row_fmt.
    """
    width = max([len(r[0]) for r in rows] + [len("weighted avg"), digits])
    head = "{:>{w}s} ".format("", w=width) + "".join(
        " {:>9}".format(h) for h in ("precision", "recall", "f1-score", "support"))
    row_fmt = "{:>{w}s} " + " {:>9.{d}f}" * 3 + " {:>9}\n"
    lines = [head + "\n\n"]
    for name, p, r, f, s in rows:
        lines.append(row_fmt.format(name, p, r, f, s, w=width, d=digits))
    lines.append("\n")
    return lines, row_fmt, width


def classification_report(y_true, y_pred, target_names=None, labels=None, digits=4):
    """Per-class precision/recall/F1/support table, laid out like scikit-learn's.

    Args:
        y_true, y_pred: class labels, shape (N,).
        target_names: display name per label (same order as `labels`).
        labels: labels to report; default: sorted union of y_true and y_pred.
        digits: decimals shown.

    Returns:
        The report as a string (rows for each class, then "accuracy" when every
        present label is reported, else "micro avg"; then "macro avg", "weighted avg").
    """
    y_true = _as_list(y_true, "y_true")
    y_pred = _as_list(y_pred, "y_pred")
    _check_same_length(y_true, y_pred)
    present = _sorted_labels(list(y_true) + list(y_pred))
    labels_given = labels is not None
    labels = list(labels) if labels_given else present
    if target_names is None:
        target_names = [str(c) for c in labels]
    elif len(target_names) != len(labels):
        raise ValueError(
            f"{len(target_names)} target_names for {len(labels)} labels {labels}")
    tp, n_pred, n_true = _class_counts(y_true, y_pred, labels)
    p, r, f = _average(tp, n_pred, n_true, None)
    rows = [(str(n), p[i], r[i], f[i], int(n_true[i])) for i, n in enumerate(target_names)]
    total = int(n_true.sum())
    micro_is_accuracy = not labels_given or set(labels) >= set(present)

    lines, row_fmt, width = _report_table(rows, digits)
    for average in ("micro", "macro", "weighted"):
        ap, ar, af = _average(tp, n_pred, n_true, average)
        if average == "micro" and micro_is_accuracy:
            acc_fmt = "{:>{w}s} " + " {:>9.{d}}" * 2 + " {:>9.{d}f}" + " {:>9}\n"
            lines.append(acc_fmt.format("accuracy", "", "", af, total, w=width, d=digits))
            continue
        lines.append(row_fmt.format(f"{average} avg", ap, ar, af, total, w=width, d=digits))
    return "".join(lines)


# ----------------------------------------------------------------- entity spans


def _split_tag(tag):
    """'B-PER' -> ('B', 'PER'). As conlleval/seqeval: the prefix is the first character,
    the type is what follows the first '-' after it ('_' when there is none)."""
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"a tag must be a non-empty string, got {tag!r}")
    entity_type = tag[1:].split("-", 1)[-1]
    return tag[0], entity_type or "_"


def _ends_entity(prev_prefix, prefix, prev_type, entity_type):
    """Does the entity open at the previous tag end before the current one?"""
    if prev_prefix in ("E", "S"):  # single-token / last-token tags always close
        return True
    if prev_prefix in ("B", "I") and prefix in ("B", "S", "O"):
        return True
    # Any change of type closes an open entity (lenient: no error for I-X after B-Y).
    return prev_prefix not in ("O", ".") and prev_type != entity_type


def _starts_entity(prev_prefix, prefix, prev_type, entity_type):
    """Does a new entity open at the current tag?"""
    if prefix in ("B", "S"):
        return True
    # Lenient: I-X / E-X after O (or after a closed entity) opens an entity.
    if prefix in ("I", "E") and prev_prefix in ("E", "S", "O"):
        return True
    return prefix not in ("O", ".") and prev_type != entity_type


def get_entities(tags):
    """Entities in a tag sequence, as seqeval's default (non-strict) ``get_entities``.

    Args:
        tags: a list of tags ('O', 'B-PER', 'I-PER', also E-/S- tags), or a list of such
            lists (sentences). Sentences are concatenated with an 'O' after each one, so
            positions count across sentences and no entity spans two sentences.

    Returns:
        list of (type, first, last) with inclusive token positions, in order of end.
    """
    tags = _as_list(tags, "tags")
    if any(isinstance(t, (list, tuple, np.ndarray)) for t in tags):
        flat = []
        for sentence in tags:
            flat.extend(_as_list(sentence, "sentence"))
            flat.append("O")
        tags = flat
    entities = []
    prev_prefix, prev_type, start = "O", "", 0
    for i, tag in enumerate(tags + ["O"]):  # the final 'O' closes a trailing entity
        prefix, entity_type = _split_tag(tag)
        if _ends_entity(prev_prefix, prefix, prev_type, entity_type):
            entities.append((prev_type, start, i - 1))
        if _starts_entity(prev_prefix, prefix, prev_type, entity_type):
            start = i
        prev_prefix, prev_type = prefix, entity_type
    return entities


def _check_sentences(y_true, y_pred):
    y_true = _as_list(y_true, "y_true")
    y_pred = _as_list(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} sentences but y_pred has {len(y_pred)}")
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} true tags but {len(p)} predicted tags")
    return y_true, y_pred


def _span_counts(y_true, y_pred):
    """Per-type counts over entity types sorted by name: (types, tp, n_pred, n_true)."""
    y_true, y_pred = _check_sentences(y_true, y_pred)
    true_spans = set(get_entities(y_true))
    pred_spans = set(get_entities(y_pred))
    types = sorted({e[0] for e in true_spans} | {e[0] for e in pred_spans})
    tp = Counter(e[0] for e in true_spans & pred_spans)
    n_pred = Counter(e[0] for e in pred_spans)
    n_true = Counter(e[0] for e in true_spans)
    as_array = lambda c: np.array([c[t] for t in types], dtype=np.int64)  # noqa: E731
    return types, as_array(tp), as_array(n_pred), as_array(n_true)


def span_precision_recall_f1(y_true, y_pred, average="micro"):
    """Entity-level precision, recall, F1 as seqeval's default mode.

    Args:
        y_true, y_pred: lists of tag lists (one per sentence, equal lengths).
        average: "micro" (seqeval's f1_score default), "macro", "weighted", or None
            (per-type arrays of shape (K,), types sorted by name).

    Returns:
        (precision, recall, f1); 0 where a denominator is 0 (also the macro average
        when there is no entity at all, where seqeval gives nan).
    """
    _, tp, n_pred, n_true = _span_counts(y_true, y_pred)
    return _average(tp, n_pred, n_true, average)


def span_f1(y_true, y_pred):
    """Entity-level micro F1, equal to ``seqeval.metrics.f1_score(y_true, y_pred)``."""
    return span_precision_recall_f1(y_true, y_pred)[2]


def ner_classification_report(y_true, y_pred, digits=4):
    """Per-entity-type table laid out like seqeval's ``classification_report``:
    one row per type, then micro, macro and weighted averages."""
    types, tp, n_pred, n_true = _span_counts(y_true, y_pred)
    p, r, f = _average(tp, n_pred, n_true, None)
    rows = [(t, p[i], r[i], f[i], int(n_true[i])) for i, t in enumerate(types)]
    lines, row_fmt, width = _report_table(rows, digits)
    total = int(n_true.sum())
    for average in ("micro", "macro", "weighted"):
        ap, ar, af = _average(tp, n_pred, n_true, average)
        lines.append(row_fmt.format(f"{average} avg", ap, ar, af, total, w=width, d=digits))
    return "".join(lines)

