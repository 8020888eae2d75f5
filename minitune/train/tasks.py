"""The two fine-tuning tasks, each in one place: its model class, its files, how its examples
are encoded, scored and predicted.

    classify   one label per text (or text pair): BertForSequenceClassification, accuracy
    ner        one tag per word (CoNLL, CLUENER):  BertForTokenClassification, entity F1

Everything that differs between the tasks lives here, so the Trainer, ``minitune eval`` and
``minitune predict`` have no ``if task == ...`` of their own.
"""
import sys

import numpy as np

from .. import data as D
from .. import metrics as M
from ..models import BertForSequenceClassification, BertForTokenClassification


def softmax(logits):
    """Row-wise softmax of a NumPy array (..., K), computed after subtracting the max."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class ClassifyTask:
    """One label per text: the [CLS] state goes through a linear head (K classes)."""

    name = "classify"
    model_class = BertForSequenceClassification
    main_metric = "accuracy"

    def read(self, path, columns, header=None, encoding="utf-8"):
        """A labelled file (TSV/CSV/JSON lines); ``columns`` = (text, text pair, label);
        ``header``: does a TSV/CSV file have a header line (None: detect it)."""
        return D.read_labelled(path, self.name, *columns, header=header, encoding=encoding)

    def labels(self, raw):
        return raw.labels

    def encode(self, tokenizer, raw, id2label, max_len):
        """(examples with label ids, number of truncated examples: not counted here)."""
        return D.encode_classification(tokenizer, raw, id2label, max_len), 0

    def predict(self, logits, example, id2label):
        """logits (K,) of one example -> {"label", "probability", "probabilities"}."""
        probs = softmax(logits.astype(np.float64))
        k = int(probs.argmax())
        return {"label": id2label[k], "probability": float(probs[k]),
                "probabilities": {id2label[i]: float(p) for i, p in enumerate(probs)}}

    def metrics(self, raw, predictions, id2label):
        """accuracy, macro F1 (and binary F1 of the second label when there are two)."""
        true = raw.labels
        pred = [p["label"] for p in predictions]
        result = {"accuracy": M.accuracy(true, pred),
                  "macro_f1": M.precision_recall_f1(true, pred, average="macro")[2]}
        if len(id2label) == 2:
            result["f1"] = M.precision_recall_f1(true, pred, average="binary",
                                                 pos_label=id2label[1])[2]
        return result

    def report(self, raw, predictions):
        return M.classification_report(raw.labels, [p["label"] for p in predictions], digits=4)


class NerTask:
    """One tag per word: every token's state goes through a linear head, and each word takes
    the tag predicted at its first sub-token."""

    name = "ner"
    model_class = BertForTokenClassification
    main_metric = "f1"

    def read(self, path, columns, header=None, encoding="utf-8"):
        """A CoNLL file, or CLUENER span JSON lines (.json/.jsonl); columns do not apply.
        Overlapping spans left out of a CLUENER file are printed (not silently dropped)."""
        raw = D.read_labelled(path, self.name, encoding=encoding)
        for message in getattr(raw, "dropped", ()):
            print(message, file=sys.stderr)
        return raw

    def labels(self, raw):
        return [tag for _, tags in raw for tag in tags]

    def encode(self, tokenizer, raw, id2label, max_len):
        return D.encode_ner(tokenizer, raw, id2label, max_len)

    def predict(self, logits, example, id2label):
        """logits (T, K) of one example -> {"tags": one tag per word}."""
        return {"tags": D.word_tags(logits.argmax(-1), example, id2label)}

    def metrics(self, raw, predictions, id2label):
        """Entity-level precision/recall/F1 (seqeval's default) and token accuracy, over
        words (CoNLL) or characters (CLUENER: ``SpanData.scored_tags``)."""
        true, pred = raw.scored_tags([p["tags"] for p in predictions])
        p, r, f = M.span_precision_recall_f1(true, pred)
        return {"precision": p, "recall": r, "f1": f,
                "token_accuracy": M.accuracy([t for s in true for t in s],
                                             [t for s in pred for t in s])}

    def report(self, raw, predictions):
        return M.ner_classification_report(*raw.scored_tags([p["tags"] for p in predictions]),
                                           digits=4)


TASKS = {task.name: task for task in (ClassifyTask(), NerTask())}


def task_of(model):
    """The task a fine-tuned model was trained for, from its class."""
    for task in TASKS.values():
        if isinstance(model, task.model_class):
            return task
    raise ValueError(f"{type(model).__name__} is not a fine-tuned task model; expected one of "
                     f"{[t.model_class.__name__ for t in TASKS.values()]}")


def task_of_architecture(architecture, where):
    """The task of a config.json "architectures" entry (``where`` names the file in errors)."""
    for task in TASKS.values():
        if task.model_class.__name__ == architecture:
            return task
    raise ValueError(f"{where}: architecture {architecture!r} is not a fine-tuned classifier; "
                     f"expected one of {[t.model_class.__name__ for t in TASKS.values()]}")
