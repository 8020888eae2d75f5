"""The fine-tuning pipeline end to end on a tiny random BERT (fast, no real checkpoint):
training, checkpoints, resume, the CLI, bad input."""
import json
import signal

import numpy as np
import pytest

from minitune import cli
from minitune import train as T
from minitune.io import read_safetensors
from minitune.models import BertConfig, BertForSequenceClassification
from minitune.tokenizer import Tokenizer

WORDS = ("good great fine lovely bad awful dull poor the film plot was is not very a "
         "john smith lives in paris works at acme corp").split()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A random 2-layer BERT with a 40-word vocabulary, saved in Hugging Face format."""
    d = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + WORDS
    tok = Tokenizer.from_vocab(vocab)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=32)
    BertForSequenceClassification(config, seed=0).save_pretrained(d, tokenizer=tok)
    return d


@pytest.fixture(scope="module")
def sentiment_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    pos, neg = ["good", "great", "fine", "lovely"], ["bad", "awful", "dull", "poor"]
    rows = []
    for i in range(48):
        label = i % 2
        word = rng.choice(pos if label else neg)
        rows.append(f"{label}\tthe film was very {word} .")
    (d / "train.tsv").write_text("label\ttext\n" + "\n".join(rows[:40]) + "\n")
    (d / "dev.tsv").write_text("label\ttext\n" + "\n".join(rows[40:]) + "\n")
    return d


@pytest.fixture(scope="module")
def ner_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("conll")
    sent = ["john B-PER", "smith I-PER", "lives O", "in O", "paris B-LOC", ". O"]
    sent2 = ["acme B-ORG", "corp I-ORG", "is O", "in O", "paris B-LOC"]
    text = ("-DOCSTART- O\n\n" + "\n\n".join("\n".join(s) for s in [sent, sent2] * 6) + "\n")
    (d / "train.txt").write_text(text)
    (d / "dev.txt").write_text("\n\n".join("\n".join(s) for s in [sent, sent2]) + "\n")
    return d


def args(model_dir, files, out, **kw):
    base = dict(task="classify", model=str(model_dir), train=str(files / "train.tsv"),
                dev=str(files / "dev.tsv"), out=str(out), epochs=2, batch_size=8, lr=1e-3,
                max_len=16, progress=False, save_steps=3)
    base.update(kw)
    return T.TrainArgs(**base)


def test_training_writes_metrics_checkpoints_and_learns(tiny_model_dir, sentiment_files, tmp_path):
    result = T.train(args(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=12, lr=3e-3))
    out = tmp_path / "run"
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_lines = [r for r in log if r["type"] == "train"]
    assert [r["step"] for r in train_lines] == list(range(1, 61))
    assert sum(r["type"] == "eval" for r in log) == 12           # once per epoch
    assert train_lines[0]["lr"] == 0.0                            # warm-up starts at 0
    assert (out / "best" / "model.safetensors").exists()
    assert (out / "last" / "trainer_state.json").exists()
    assert result["dev"]["accuracy"] >= 0.75, result             # the task is learnable
    assert np.mean([r["loss"] for r in train_lines[-5:]]) < train_lines[0]["loss"]


def _final_weights(run_dir):
    return read_safetensors(run_dir / "last" / "model.safetensors")


def test_interrupted_and_resumed_run_ends_with_identical_weights(
        tiny_model_dir, sentiment_files, tmp_path, monkeypatch):
    straight = args(tiny_model_dir, sentiment_files, tmp_path / "a", epochs=3)
    T.train(straight)

    calls = {"n": 0}
    real_next = T._next_batch

    def interrupting_next(loader):
        calls["n"] += 1
        if calls["n"] == 7:                   # Ctrl-C arrives during step 7 (mid epoch 2)
            signal.raise_signal(signal.SIGINT)
        return real_next(loader)

    monkeypatch.setattr(T, "_next_batch", interrupting_next)
    with pytest.raises(KeyboardInterrupt):
        T.train(args(tiny_model_dir, sentiment_files, tmp_path / "b", epochs=3))
    state = json.loads((tmp_path / "b" / "last" / "trainer_state.json").read_text())
    assert state["step"] == 7
    monkeypatch.setattr(T, "_next_batch", real_next)
    T.train(T.TrainArgs(out=str(tmp_path / "b"), resume=True, progress=False))

    a, b = _final_weights(tmp_path / "a"), _final_weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text()
             .splitlines() if json.loads(x)["type"] == "train"]
    assert steps == list(range(1, 16))        # no step logged twice after the resume


def test_nan_loss_stops_with_the_step_and_keeps_the_checkpoint(
        tiny_model_dir, sentiment_files, tmp_path, monkeypatch):
    from minitune.tensor import Tensor
    real_item = Tensor.item
    calls = {"n": 0}

    def item(self):
        calls["n"] += 1
        return float("nan") if calls["n"] == 5 else real_item(self)

    monkeypatch.setattr(Tensor, "item", item)
    with pytest.raises(T.TrainingError, match="loss is nan at step 5"):
        T.train(args(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=2))
    state = json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())
    assert state["step"] == 3                 # the save at step 3 is intact


def test_output_directory_of_another_run_is_refused(tiny_model_dir, sentiment_files, tmp_path):
    a = args(tiny_model_dir, sentiment_files, tmp_path / "run", max_steps=2)
    T.train(a)
    with pytest.raises(T.TrainingError, match="--overwrite"):
        T.train(a)
    a.overwrite = True
    T.train(a)


def test_max_len_above_position_limit_is_an_error(tiny_model_dir, sentiment_files, tmp_path):
    with pytest.raises(ValueError, match="max_position_embeddings=32"):
        T.train(args(tiny_model_dir, sentiment_files, tmp_path / "run", max_len=64))


def test_dev_label_unseen_in_training_is_an_error(tiny_model_dir, sentiment_files, tmp_path):
    bad = tmp_path / "dev.tsv"
    bad.write_text("label\ttext\n0\tthe film was bad .\n7\tthe film was good .\n")
    with pytest.raises(ValueError, match="7"):
        T.train(args(tiny_model_dir, sentiment_files, tmp_path / "run", dev=str(bad)))


def test_cli_train_eval_predict(tiny_model_dir, sentiment_files, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["train", "--model", str(tiny_model_dir), "--train",
                   str(sentiment_files / "train.tsv"), "--dev", str(sentiment_files / "dev.tsv"),
                   "--epochs", "2", "--batch-size", "8", "--lr", "1e-3", "--max-len", "16",
                   "--out", str(out), "--no-progress"])
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert set(result["dev"]) >= {"accuracy", "macro_f1"}

    assert cli.main(["eval", "--model", str(out), "--data", str(sentiment_files / "dev.tsv")]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert "precision" in printed[0] and json.loads(printed[-1])["accuracy"] == \
        pytest.approx(result["dev"]["accuracy"])

    assert cli.main(["predict", "--model", str(out), "the film was great .", "bad"]) == 0
    preds = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [p["text"] for p in preds] == ["the film was great .", "bad"]
    assert all(p["label"] in ("0", "1") and 0.5 <= p["probability"] <= 1 for p in preds)

    assert cli.main(["train", "--model", str(tiny_model_dir), "--train", "missing.tsv",
                     "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "missing.tsv" in capsys.readouterr().err


def test_ner_training_and_entity_prediction(tiny_model_dir, ner_files, tmp_path, capsys):
    out = tmp_path / "ner"
    result = T.train(T.TrainArgs(task="ner", model=str(tiny_model_dir),
                                 train=str(ner_files / "train.txt"), dev=str(ner_files / "dev.txt"),
                                 out=str(out), epochs=15, batch_size=4, lr=3e-3, max_len=16,
                                 progress=False, save_steps=0))
    assert set(result["dev"]) >= {"precision", "recall", "f1"}
    assert result["dev"]["f1"] > 0.5, result
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert config["id2label"]["0"] == "O"
    assert cli.main(["predict", "--model", str(out), "john smith lives in paris ."]) == 0
    pred = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert pred["tags"] == ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]   # a training sentence
    assert [(e["type"], e["text"]) for e in pred["entities"]] == [("PER", "john smith"),
                                                                   ("LOC", "paris")]
    for ent in pred["entities"]:
        assert "john smith lives in paris ."[ent["start"]:ent["end"]] == ent["text"]
