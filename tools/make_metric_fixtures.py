"""Write tests/fixtures/metric_cases.json: metric values computed by seqeval and scikit-learn.

minitune.metrics re-implements seqeval's default (conlleval-like) entity scoring and
scikit-learn's precision/recall/F1 and classification report; tests/test_metrics.py
compares against the numbers stored here. Needs seqeval and scikit-learn (not minitune
dependencies), e.g. the reference venv of `make refenv`:

    .refenv/bin/python tools/make_metric_fixtures.py

The cases are drawn from a fixed seed, so rerunning gives the same file.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import seqeval
import sklearn
from seqeval.metrics import classification_report as seq_report
from seqeval.metrics.sequence_labeling import precision_recall_fscore_support as seq_prfs
from seqeval.metrics.sequence_labeling import get_entities as seq_get_entities
from sklearn.metrics import accuracy_score
from sklearn.metrics import classification_report as sk_report
from sklearn.metrics import precision_recall_fscore_support as sk_prfs

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "metric_cases.json"
TYPES = ["PER", "ORG", "LOC", "MISC"]

# Hand-written sentences: (name, y_true, y_pred). Each is a list of sentences.
HAND_CASES = [
    ("exact match", [["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-LOC"]]),
    ("all O", [["O", "O", "O"], ["O"]], [["O", "O", "O"], ["O"]]),
    ("empty sentences", [[], ["B-PER"], []], [[], ["B-PER"], []]),
    ("nothing predicted", [["B-PER", "I-PER", "O"]], [["O", "O", "O"]]),
    ("nothing true", [["O", "O", "O"]], [["B-ORG", "O", "B-LOC"]]),
    ("I without B opens an entity", [["O", "I-PER", "I-PER", "O"]],
     [["O", "B-PER", "I-PER", "O"]]),
    ("type change inside entity", [["B-PER", "I-LOC", "I-LOC", "O"]],
     [["B-PER", "B-LOC", "I-LOC", "O"]]),
    ("IOB1 adjacent entities", [["I-PER", "I-PER", "B-PER", "I-PER", "O", "I-LOC"]],
     [["B-PER", "I-PER", "B-PER", "I-PER", "O", "B-LOC"]]),
    ("boundary off by one", [["B-ORG", "I-ORG", "I-ORG", "O"]],
     [["B-ORG", "I-ORG", "O", "O"]]),
    ("wrong type", [["B-ORG", "I-ORG", "O"]], [["B-LOC", "I-LOC", "O"]]),
    ("nested-looking", [["B-ORG", "B-LOC", "I-ORG", "I-ORG", "O"]],
     [["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O"]]),
    ("entity at sentence edge", [["O", "B-PER"], ["I-PER", "O"]],
     [["O", "B-PER"], ["B-PER", "O"]]),
    ("IOBES tags", [["S-PER", "B-LOC", "E-LOC", "O", "B-ORG", "I-ORG", "E-ORG"]],
     [["S-PER", "B-LOC", "I-LOC", "O", "S-ORG", "I-ORG", "E-ORG"]]),
    ("E and S without B", [["E-PER", "E-PER", "S-LOC", "I-LOC", "O"]],
     [["O", "E-PER", "S-LOC", "E-LOC", "O"]]),
    ("bare prefixes", [["B", "I", "O", "I", "B"]], [["B", "I", "I", "O", "B"]]),
    ("long types", [["B-SOME-THING", "I-SOME-THING", "O", "B-A"]],
     [["B-SOME-THING", "I-SOME-THING", "O", "B-AB"]]),
    ("odd prefixes", [["X-PER", "I-PER", "O", "B-LOC", "Z"]],
     [["B-PER", "I-PER", "O", "B-LOC", "O"]]),
    ("many types", [["B-A", "B-B", "B-C", "I-C", "B-D", "O", "B-E"]],
     [["B-A", "B-C", "B-C", "I-C", "O", "O", "B-E"]]),
]

# Single sequences for get_entities, including malformed ones.
ENTITY_SEQUENCES = [
    [],
    ["O"],
    ["B-PER"],
    ["I-PER"],
    ["I-PER", "B-PER", "I-PER", "I-LOC", "O", "I-LOC", "I-LOC"],
    ["B-PER", "I-LOC", "B-LOC", "O", "E-LOC", "S-PER", "I-PER", "E-PER"],
    ["O", "B", "I", "I", "O", "I", "B", "B"],
    ["B-X-Y", "I-X-Y", "I-X", "O"],
    [".", "B-PER", ".", "I-PER", "O"],
    ["U-PER", "L-PER", "B-LOC", "L-LOC"],
]


def random_iob2(rng, n, types, p_entity=0.3):
    """A well-formed IOB2 sentence of n tags."""
    tags = []
    while len(tags) < n:
        if rng.random() < p_entity:
            t = types[rng.integers(len(types))]
            length = int(rng.integers(1, 4))
            tags += ["B-" + t] + ["I-" + t] * (length - 1)
        else:
            tags.append("O")
    return tags[:n]


def to_iob1(tags):
    """IOB2 -> IOB1: B-X only where it follows an entity of the same type."""
    out = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-") and not (i > 0 and tags[i - 1][2:] == tag[2:]
                                          and tags[i - 1] != "O"):
            out.append("I-" + tag[2:])
        else:
            out.append(tag)
    return out


def corrupt(rng, tags, vocab, p):
    """Replace each tag by a random tag from vocab with probability p."""
    return [vocab[rng.integers(len(vocab))] if rng.random() < p else t for t in tags]


def random_seq_cases(rng, n_cases):
    cases = []
    vocab_iob = ["O"] + [p + "-" + t for t in TYPES for p in ("B", "I")]
    vocab_weird = vocab_iob + ["E-PER", "S-LOC", "B", "I", "E-ORG", "S-MISC", "X-PER"]
    for k in range(n_cases):
        n_sent = int(rng.integers(1, 7))
        lengths = [int(rng.integers(0, 15)) for _ in range(n_sent)]
        types = TYPES[: int(rng.integers(1, len(TYPES) + 1))]
        y_true = [random_iob2(rng, n, types) for n in lengths]
        kind = ["iob2", "iob1", "weird", "noisy"][k % 4]
        if kind == "iob2":
            y_pred = [corrupt(rng, s, vocab_iob, 0.15) for s in y_true]
        elif kind == "iob1":
            y_true = [to_iob1(s) for s in y_true]
            y_pred = [to_iob1(corrupt(rng, s, vocab_iob, 0.1)) for s in y_true]
        elif kind == "weird":
            y_pred = [corrupt(rng, s, vocab_weird, 0.3) for s in y_true]
        else:
            y_true = [corrupt(rng, s, vocab_iob, 0.2) for s in y_true]
            y_pred = [corrupt(rng, s, vocab_iob, 0.5) for s in y_true]
        cases.append((f"random {kind} {k}", y_true, y_pred))
    return cases


def seqeval_case(name, y_true, y_pred):
    case = {"name": name, "y_true": y_true, "y_pred": y_pred,
            "entities_true": [list(e) for e in seq_get_entities(y_true)],
            "entities_pred": [list(e) for e in seq_get_entities(y_pred)]}
    for average in ("micro", "macro", "weighted"):
        p, r, f, _ = seq_prfs(y_true, y_pred, average=average)
        case[average] = [float(p), float(r), float(f)]
    p, r, f, s = seq_prfs(y_true, y_pred, average=None)
    case["per_type"] = {"precision": [float(x) for x in p], "recall": [float(x) for x in r],
                        "f1": [float(x) for x in f], "support": [int(x) for x in s]}
    has_entities = case["entities_true"] or case["entities_pred"]
    # seqeval's report fails on inputs without any entity (max() of no names).
    case["report"] = seq_report(y_true, y_pred, digits=4) if has_entities else None
    return case


def random_class_cases(rng, n_cases):
    cases = []
    for k in range(n_cases):
        n = int(rng.integers(1, 40))
        kind = ["binary", "multiclass", "strings", "subset"][k % 4]
        if kind == "binary":
            y_true = rng.integers(0, 2, n).tolist()
            y_pred = rng.integers(0, 2, n).tolist()
        elif kind in ("multiclass", "subset"):
            k_cls = int(rng.integers(3, 6))
            y_true = rng.integers(0, k_cls, n).tolist()
            y_pred = [t if rng.random() < 0.5 else int(rng.integers(0, k_cls)) for t in y_true]
        else:
            names = ["negative", "neutral", "positive", "mixed"]
            y_true = [names[i] for i in rng.integers(0, 3, n)]
            y_pred = [t if rng.random() < 0.6 else names[rng.integers(0, 4)] for t in y_true]
        cases.append((f"random {kind} {k}", kind, y_true, y_pred))
    cases += [
        ("binary all correct", "binary", [0, 1, 1, 0], [0, 1, 1, 0]),
        ("binary never positive", "binary", [0, 1, 1, 0], [0, 0, 0, 0]),
        ("binary only negatives", "binary", [0, 0, 0], [0, 0, 0]),
        ("binary only positives", "binary", [1, 1], [1, 0]),
        ("strings binary", "strings", ["neg", "pos", "pos"], ["pos", "pos", "neg"]),
    ]
    return cases


def sklearn_case(name, kind, y_true, y_pred):
    labels = sorted(set(y_true) | set(y_pred))
    case = {"name": name, "kind": kind, "y_true": y_true, "y_pred": y_pred,
            "accuracy": float(accuracy_score(y_true, y_pred)), "labels": labels}
    for average in ("micro", "macro", "weighted"):
        p, r, f, _ = sk_prfs(y_true, y_pred, average=average)
        case[average] = [float(p), float(r), float(f)]
    p, r, f, s = sk_prfs(y_true, y_pred, average=None, labels=labels)
    case["per_label"] = {"precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(),
                         "support": s.tolist()}
    if kind == "binary" or (kind == "strings" and len(labels) <= 2):
        pos = 1 if kind == "binary" else labels[-1]
        p, r, f, _ = sk_prfs(y_true, y_pred, average="binary", pos_label=pos)
        case["binary"] = {"pos_label": pos, "prf": [float(p), float(r), float(f)]}
    if kind == "subset" and len(labels) > 2:
        sub = labels[1:]
        case["subset_labels"] = sub
        for average in ("micro", "macro"):
            p, r, f, _ = sk_prfs(y_true, y_pred, average=average, labels=sub)
            case["subset_" + average] = [float(p), float(r), float(f)]
        case["subset_report"] = sk_report(y_true, y_pred, labels=sub, digits=4)
    names = ["class_" + str(c) for c in labels]
    case["target_names"] = names
    case["report"] = sk_report(y_true, y_pred, target_names=names, digits=4)
    case["report_digits2"] = sk_report(y_true, y_pred, digits=2)
    return case


def main():
    warnings.simplefilter("ignore")  # zero-division warnings are part of the cases
    rng = np.random.default_rng(20240611)
    seq_cases = HAND_CASES + random_seq_cases(rng, 80)
    payload = {
        "generated_by": "tools/make_metric_fixtures.py",
        "seqeval_version": getattr(seqeval, "__version__", "1.2.2"),
        "sklearn_version": sklearn.__version__,
        "entities": [{"tags": s, "entities": [list(e) for e in seq_get_entities(s)]}
                     for s in ENTITY_SEQUENCES],
        "seqeval": [seqeval_case(*c) for c in seq_cases],
        "sklearn": [sklearn_case(*c) for c in random_class_cases(rng, 40)],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=None, separators=(",", ":"))
    OUT.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(text) / 1024:.0f} KiB): {len(payload['seqeval'])} seqeval cases, "
          f"{len(payload['sklearn'])} scikit-learn cases")


if __name__ == "__main__":
    main()
