"""Using a fine-tuned model (minitune/predict.py): loading a run, NER predictions as words
with tags plus entity spans, scoring a file, writing JSON lines and CSV."""
import csv
import io
import json

import pytest

from minitune.predict import (evaluate_file, load_finetuned, predict_texts, trained_columns,
                              write_predictions)
from minitune.train import TrainArgs, train

TEXT = "john smith lives in paris ."


@pytest.fixture(scope="module")
def ner_run(tiny_model_dir, ner_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ner"
    result = train(TrainArgs(task="ner", model=str(tiny_model_dir),
                             train=str(ner_files / "train.txt"), dev=str(ner_files / "dev.txt"),
                             out=str(out), epochs=15, batch_size=4, lr=3e-3, max_len=16,
                             progress=False, save_steps=0))
    assert result["dev"]["f1"] > 0.5, result
    return out


def test_ner_prediction_lists_each_word_with_its_tag_and_the_entities(ner_run):
    model, tokenizer = load_finetuned(ner_run)
    assert not model.training and model.name_or_path == str(ner_run / "best")
    config = json.loads((ner_run / "best" / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert config["id2label"]["0"] == "O" and config["minitune_max_length"] == 16
    pred, empty = predict_texts(model, tokenizer, [TEXT, ""])
    assert [(w["word"], w["tag"]) for w in pred["words"]] == [
        ("john", "B-PER"), ("smith", "I-PER"), ("lives", "O"), ("in", "O"), ("paris", "B-LOC"),
        (".", "O")]                                                   # a training sentence
    assert all(TEXT[w["start"]:w["end"]] == w["word"] for w in pred["words"])
    assert pred["entities"] == [{"type": "PER", "text": "john smith", "start": 0, "end": 10},
                                {"type": "LOC", "text": "paris", "start": 20, "end": 25}]
    assert empty == {"words": [], "entities": []}


def test_ner_scores_report_and_files(ner_run, ner_files):
    model, tokenizer = load_finetuned(ner_run)
    scores, report = evaluate_file(model, tokenizer, ner_files / "dev.txt")
    assert set(scores) == {"precision", "recall", "f1", "token_accuracy"}
    assert "PER" in report and "micro avg" in report
    assert trained_columns(model) == (None, None, None)
    preds = predict_texts(model, tokenizer, [TEXT])
    out = io.StringIO()
    write_predictions(out, [TEXT], preds, "p.csv")
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [
        ["text", "words", "entities"],
        [TEXT, "john/B-PER smith/I-PER lives/O in/O paris/B-LOC ./O", "PER:0-10 LOC:20-25"]]
    out = io.StringIO()
    write_predictions(out, [TEXT], preds)
    assert json.loads(out.getvalue()) == {"text": TEXT, **preds[0]}


def test_a_directory_without_a_model_is_explained(tmp_path):
    with pytest.raises(ValueError, match="holds no model: no config.json, and no best/ or last/"):
        load_finetuned(tmp_path)
