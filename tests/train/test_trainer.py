"""The Trainer end to end on a tiny random BERT (fast, no real checkpoint): training,
checkpoints, resume from anywhere, gradient accumulation, early stopping, callbacks."""
import json

import numpy as np
import pytest

from minitune.data import read_classification
from minitune.io import read_safetensors
from minitune.models import BertForSequenceClassification
from minitune.testing import assert_close
from minitune.tokenizer import Tokenizer
from minitune.train import Callback, RunDirError, TrainArgs, Trainer, TrainingError, train
from pipeline_helpers import InterruptAt, save_tiny_bert, train_args


args = train_args          # the quick run of the tiny BERT (pipeline_helpers)


def final_weights(run_dir):
    return read_safetensors(run_dir / "last" / "model.safetensors")


def log_lines(run_dir, kind):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["type"] == kind]


def test_training_writes_metrics_checkpoints_and_learns(tiny_model_dir, sentiment_files, tmp_path):
    result = train(args(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=12, lr=3e-3))
    out = tmp_path / "run"
    steps = log_lines(out, "train")
    assert [r["step"] for r in steps] == list(range(1, 61))
    assert len(log_lines(out, "eval")) == 12                      # once per epoch
    assert steps[0]["lr"] == 0.0                                  # warm-up starts at 0
    assert (out / "best" / "model.safetensors").exists()
    assert (out / "last" / "trainer_state.json").exists()
    assert result["dev"]["accuracy"] >= 0.75, result             # the task is learnable
    assert np.mean([r["loss"] for r in steps[-5:]]) < steps[0]["loss"]
    assert json.loads((out / "results.json").read_text())["steps"] == 60




def test_interrupted_run_resumed_from_another_directory_ends_with_identical_weights(
        tiny_model_dir, sentiment_files, tmp_path, monkeypatch):
    train(args(tiny_model_dir, sentiment_files, tmp_path / "a", epochs=3))

    monkeypatch.chdir(sentiment_files)            # data files given relative to here
    run = args(tiny_model_dir, sentiment_files, tmp_path / "b", epochs=3, train="train.tsv",
               dev="dev.tsv")
    with pytest.raises(KeyboardInterrupt):
        Trainer(run, callbacks=[InterruptAt(7)]).fit()
    state = json.loads((tmp_path / "b" / "last" / "trainer_state.json").read_text())
    assert state["step"] == 7                     # the step finished, then saved
    assert state["args"]["train"] == str(sentiment_files / "train.tsv")   # stored absolute

    monkeypatch.chdir(tmp_path)                   # the relative names mean nothing here
    train(TrainArgs(out="b", resume=True, progress=False))

    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert_close(b[k], a[k], rtol=0, atol=0, msg=k)           # bit for bit
    assert [r["step"] for r in log_lines(tmp_path / "b", "train")] == list(range(1, 16))


def test_resume_names_what_is_missing(tiny_model_dir, sentiment_files, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="empty holds no run to continue .it is empty.; start "
                                          "one with --train FILE"):
        Trainer(TrainArgs(out=str(tmp_path / "empty"), resume=True))
    with pytest.raises(RunDirError, match="nothere does not exist"):
        Trainer(TrainArgs(out=str(tmp_path / "nothere"), resume=True))
    moved = tmp_path / "moved.tsv"
    moved.write_text((sentiment_files / "train.tsv").read_text())
    train(args(tiny_model_dir, sentiment_files, tmp_path / "run", train=str(moved), max_steps=2))
    moved.unlink()
    with pytest.raises(RunDirError, match=r"the run's --train file .*moved\.tsv \(saved in "
                                          r".*trainer_state\.json\) does not exist"):
        Trainer(TrainArgs(out=str(tmp_path / "run"), resume=True))


def test_nan_loss_stops_with_the_step_and_keeps_the_checkpoint(
        tiny_model_dir, sentiment_files, tmp_path, monkeypatch):
    from minitune.tensor import Tensor
    real_item = Tensor.item
    calls = {"n": 0}

    def item(self):
        calls["n"] += 1
        return float("nan") if calls["n"] == 5 else real_item(self)

    monkeypatch.setattr(Tensor, "item", item)
    with pytest.raises(TrainingError, match="loss is nan at step 5"):
        train(args(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=2))
    state = json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())
    assert state["step"] == 3                 # the save at step 3 is intact


def test_output_directory_of_another_run_is_refused(tiny_model_dir, sentiment_files, tmp_path):
    a = args(tiny_model_dir, sentiment_files, tmp_path / "run", max_steps=2)
    train(a)
    with pytest.raises(RunDirError, match="--overwrite"):
        train(a)
    a.overwrite = True
    train(a)


def test_max_len_above_position_limit_is_an_error(tiny_model_dir, sentiment_files, tmp_path):
    with pytest.raises(ValueError, match="max_position_embeddings=32"):
        train(args(tiny_model_dir, sentiment_files, tmp_path / "run", max_len=64))


def test_dev_label_unseen_in_training_is_an_error(tiny_model_dir, sentiment_files, tmp_path):
    bad = tmp_path / "dev.tsv"
    bad.write_text("label\ttext\n0\tthe film was bad .\n7\tthe film was good .\n")
    with pytest.raises(ValueError, match="7"):
        train(args(tiny_model_dir, sentiment_files, tmp_path / "run", dev=str(bad)))


@pytest.fixture(scope="module")
def no_dropout_model_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert_p0"), dropout=0.0)


@pytest.mark.parametrize("task, files, batch, accum", [
    ("classify", "sentiment_files", 8, 4),       # steps of 32 (and the epoch's last 8)
    ("ner", "ner_files", 2, 3),                  # batches with 10 to 16 labelled words
])
def test_gradient_accumulation_equals_one_larger_batch(task, files, batch, accum, request,
                                                       no_dropout_model_dir, tmp_path):
    """With dropout off, grad_accum_steps k over batches of b trains the same weights as
    batches of k*b, to float32 round-off (the loss is averaged over all labelled positions of
    the step); batches of b without accumulation do not."""
    files = request.getfixturevalue(files)
    suffix = ".tsv" if task == "classify" else ".txt"

    def run(name, **kw):
        train(TrainArgs(task=task, model=str(no_dropout_model_dir),
                        train=str(files / f"train{suffix}"), out=str(tmp_path / name),
                        epochs=2, lr=1e-3, max_len=16, progress=False, **kw))
        return final_weights(tmp_path / name)

    big = run("big", batch_size=batch * accum)
    accumulated = run("accumulated", batch_size=batch, grad_accum_steps=accum)
    small = run("small", batch_size=batch)
    for k in big:
        assert_close(accumulated[k], big[k], rtol=0, atol=2e-6, msg=k)
    assert max(np.abs(small[k] - big[k]).max() for k in big) > 1e-4
    assert len(log_lines(tmp_path / "accumulated", "train")) == \
        len(log_lines(tmp_path / "big", "train"))


def test_early_stopping_after_patience_evaluations_without_improvement(
        tiny_model_dir, sentiment_files, tmp_path):
    # a learning rate too small to change any prediction: the dev score never improves
    result = train(args(tiny_model_dir, sentiment_files, tmp_path / "run", lr=1e-12,
                        eval_steps=1, early_stopping_patience=2, epochs=3))
    assert result["stopped_early"] and result["steps"] == 3 and result["best_step"] == 1
    assert [r["step"] for r in log_lines(tmp_path / "run", "eval")] == [1, 2, 3]
    state = json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["evals_since_best"] == 2      # kept for a resume


class Recorder(Callback):
    def __init__(self, stop_at):
        self.events, self.stop_at = [], stop_at

    def on_fit_start(self, trainer):
        self.events.append("start")

    def on_gradients(self, trainer):
        # between backward and the update: every trained parameter has its gradient
        assert all(p.grad is not None for p in trainer.model.parameters())
        self.events.append("gradients")

    def on_step_end(self, trainer, logs):
        self.events.append(f"step {logs['step']}")
        if logs["step"] == self.stop_at:
            trainer.should_stop = True

    def on_evaluate(self, trainer, metrics):
        self.events.append("evaluate")

    def on_save(self, trainer, path):
        self.events.append(f"save {path.name}")

    def on_fit_end(self, trainer, result):
        self.events.append(f"end {result['steps']}")


def test_callbacks_run_in_order_and_can_stop_the_run(tiny_model_dir, sentiment_files, tmp_path):
    recorder = Recorder(stop_at=6)
    result = Trainer(args(tiny_model_dir, sentiment_files, tmp_path / "run", save_steps=0),
                     callbacks=[recorder]).fit()
    expected = ["start"]
    for step in range(1, 7):
        expected += ["gradients", f"step {step}"]
        if step == 5:                                   # end of epoch 1 (5 batches of 8)
            expected += ["save best", "evaluate", "save last"]
    expected += ["save last", "end 6"]
    assert recorder.events == expected
    assert result["stopped_early"] and result["steps"] == 6


def test_trainer_from_python_objects_evaluate_and_predict(tiny_model_dir, sentiment_files,
                                                           tmp_path):
    tokenizer = Tokenizer.from_pretrained(tiny_model_dir)
    model = BertForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    data = read_classification(sentiment_files / "train.tsv")
    run = TrainArgs(out=str(tmp_path / "run"), epochs=12, batch_size=8, lr=3e-3, max_len=16,
                    progress=False)
    trainer = Trainer(run, model=model, tokenizer=tokenizer, train_data=data)
    trainer.fit()
    assert trainer.model is model and model.training           # trained in place
    scores = trainer.evaluate(str(sentiment_files / "dev.tsv"))
    assert scores["accuracy"] >= 0.75
    good, bad = trainer.predict(["the film was very lovely .", "the film was very dull ."])
    assert (good["label"], bad["label"]) == ("1", "0")
    assert sum(good["probabilities"].values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no dev data"):
        trainer.evaluate("dev")
