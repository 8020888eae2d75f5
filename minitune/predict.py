"""Using a fine-tuned model: load it (from a run directory or a model directory), label raw
texts, score a labelled file, write predictions as JSON lines or CSV.

    model, tokenizer = load_finetuned("runs/sst2")          # runs/sst2/best
    predict_texts(model, tokenizer, ["a gorgeous, witty film"])
    [{"label": "1", "probability": 0.98, "probabilities": {"0": 0.02, "1": 0.98}}]

A model trained by minitune carries in its config.json the --max-len and the columns it was
trained with; scoring and prediction reuse them unless told otherwise.
"""
import csv
import json
import sys
from pathlib import Path

from . import data as D
from .data.readers import _codec
from .backend import resolve_device
from .models import BertConfig
from .tokenizer import Tokenizer
from .train.checkpoints import run_model_dir
from .train.evaluation import evaluate, id2label_of, predict_texts, trained_max_length
from .train.tasks import task_of, task_of_architecture

__all__ = ["load_finetuned", "predict_texts", "evaluate_file", "trained_max_length",
           "trained_columns", "write_predictions", "record_ids"]


def load_finetuned(path, warn=True, device="cpu"):
    """The model and tokenizer of a run directory (its best/, else last/ with a warning) or of
    a model directory written by ``minitune train`` / ``save_pretrained``.

    device: "cpu", "cuda" or "auto" (``backend.resolve_device``): where the model computes.
    Returns (model in eval mode, tokenizer)."""
    from .io import resolve_model_dir
    model_dir, warning = run_model_dir(resolve_model_dir(path))
    if warning and warn:
        print(f"warning: {warning}", file=sys.stderr)
    config = BertConfig.from_json_file(model_dir / "config.json")
    architecture = (config.extra.get("architectures") or ["BertForSequenceClassification"])[0]
    task = task_of_architecture(architecture, model_dir / "config.json")
    model = task.model_class.from_pretrained(model_dir).to(resolve_device(device))
    model.name_or_path = str(model_dir)
    return model, Tokenizer.from_pretrained(model_dir)


def trained_columns(model):
    """(text, text pair, label) column names the model was fine-tuned with (None: default)."""
    saved = model.config.extra.get("minitune_columns") or {}
    return saved.get("text"), saved.get("text_pair"), saved.get("label")


def evaluate_file(model, tokenizer, path, columns=(None, None, None), max_len=None,
                  batch_size=128, header=None, encoding="utf-8"):
    """Score a labelled file in the training format. ``columns`` = (text, text pair, label);
    each one left None is the column the model was trained with; ``header``: does a TSV/CSV
    file have a header line (None: detect it). Returns (scores, report)."""
    task, id2label = task_of(model), id2label_of(model)
    columns = tuple(given or saved for given, saved in zip(columns, trained_columns(model)))
    raw = task.read(path, columns, header, encoding)
    examples, _ = task.encode(tokenizer, raw, id2label, max_len or trained_max_length(model))
    scores, predictions = evaluate(model, task, raw, examples, id2label, batch_size,
                                   tokenizer.pad_token_id)
    return scores, task.report(raw, predictions)


def write_predictions(out, texts, predictions, path=None, fmt=None, ids=None):
    """Write one record per text to ``out`` (a text stream): JSON lines, CSV, or CLUENER.

    ``fmt`` "jsonl", "csv" or "cluener"; default: CSV when ``path`` ends in .csv, else JSON
    lines. CSV columns: text, label, probability, p(<label>)... (classify); text, words
    (word/TAG ...), entities (TYPE:start-end ...) (ner). CLUENER (ner): {"id", "text",
    "label": {type: {entity: [[start, end]]}}}, ends inclusive, ``ids`` (one per text, None
    for none) kept.
    """
    fmt = fmt or ("csv" if path is not None and str(path).lower().endswith(".csv") else "jsonl")
    if fmt == "cluener":
        if predictions and "entities" not in predictions[0]:
            raise ValueError("--output-format cluener writes entity spans; this model "
                             "classifies texts")
        for text, pred, record_id in zip(texts, predictions, ids or [None] * len(texts)):
            spans = [(e["type"], e["start"], e["end"]) for e in pred["entities"]]
            record = D.cluener_record(text, spans, record_id)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    if fmt == "jsonl":
        for text, pred in zip(texts, predictions):
            out.write(json.dumps({"text": text, **pred}, ensure_ascii=False) + "\n")
        return
    writer = csv.writer(out)
    if predictions and "label" in predictions[0]:
        labels = list(predictions[0]["probabilities"])
        writer.writerow(["text", "label", "probability"] + [f"p({label})" for label in labels])
        for text, p in zip(texts, predictions):
            writer.writerow([text, p["label"], f"{p['probability']:.6f}"]
                            + [f"{p['probabilities'][label]:.6f}" for label in labels])
        return
    writer.writerow(["text", "words", "entities"])
    for text, p in zip(texts, predictions):
        writer.writerow([text, " ".join(f"{w['word']}/{w['tag']}" for w in p["words"]),
                         " ".join(f"{e['type']}:{e['start']}-{e['end']}" for e in p["entities"])])


def open_output(path):
    """A text stream for ``path`` (stdout when None); CSV needs newline=''."""
    if path is None:
        return sys.stdout
    return open(Path(path), "w", encoding="utf-8", newline="")


def record_ids(path, encoding="utf-8"):
    """The "id" of each record of a JSON-lines file (None where absent; CLUENER test files
    number their records), in the order ``read_texts`` reads them (which has checked the
    file: JSON objects, one per non-blank line, in ``encoding``)."""
    with open(path, encoding=_codec(encoding)) as f:
        return [json.loads(line).get("id") for line in f if line.strip()]
