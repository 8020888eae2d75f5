"""TrainArgs / EvalArgs / PredictArgs: every range is checked, and the message names the flag."""
import dataclasses

import pytest

from minitune.train import EvalArgs, PredictArgs, TrainArgs
from minitune.train.args import value_type


@pytest.mark.parametrize("field, value, message", [
    ("max_grad_norm", -1.0, "--max-grad-norm must be > 0, got -1.0"),
    ("max_grad_norm", 0.0, "--max-grad-norm must be > 0"),
    ("max_steps", 0, "--max-steps must be >= 1, got 0"),
    ("max_steps", -1, "--max-steps must be >= 1, got -1"),
    ("weight_decay", -1.0, "--weight-decay must be >= 0, got -1.0"),
    ("max_len", 1, "--max-len must be >= 3, got 1"),
    ("epochs", 0.0, "--epochs must be > 0"),
    ("lr", float("nan"), "--lr must be a finite number, got nan"),
    ("lr", float("inf"), "--lr must be a finite number"),
    ("warmup_ratio", 1.5, "--warmup-ratio must be <= 1, got 1.5"),
    ("warmup_ratio", -0.1, "--warmup-ratio must be >= 0"),
    ("batch_size", 0, "--batch-size must be >= 1"),
    ("grad_accum_steps", 0, "--grad-accum-steps must be >= 1"),
    ("eval_batch_size", 0, "--eval-batch-size must be >= 1"),
    ("seed", -3, "--seed must be >= 0"),
    ("max_train_examples", 0, "--max-train-examples must be >= 1"),
    ("eval_steps", 0, "--eval-steps must be >= 1"),
    ("save_steps", -1, "--save-steps must be >= 0"),
    ("log_every", 0, "--log-every must be >= 1"),
    ("early_stopping_patience", 0, "--early-stopping-patience must be >= 1"),
    ("task", "tagging", "--task must be one of classify, ner, got 'tagging'"),
    ("batch_size", "32", "--batch-size must be int, got '32'"),
    ("batch_size", True, "--batch-size must be int, got True"),
])
def test_every_out_of_range_value_names_its_flag(field, value, message):
    args = TrainArgs(train="train.tsv", dev="dev.tsv", **{field: value})
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        args.validate()


def test_every_numeric_option_has_a_range():
    for cls in (TrainArgs, EvalArgs, PredictArgs):
        for f in dataclasses.fields(cls):
            if value_type(cls, f) in (int, float):
                m = f.metadata
                assert any(m[k] is not None for k in ("min", "above", "max")), f.name


def test_defaults_validate_and_ints_are_accepted_for_floats():
    args = TrainArgs(train="train.tsv", epochs=2, lr=1)
    assert args.validate() is args and args.epochs == 2.0 and isinstance(args.lr, float)
    assert args.changed() == {"train": "train.tsv", "epochs": 2.0, "lr": 1.0}


def test_rules_across_fields():
    with pytest.raises(ValueError, match="a training file is required: --train FILE"):
        TrainArgs().validate()
    TrainArgs(resume=True).validate()
    TrainArgs().validate(have_train_data=True)
    with pytest.raises(ValueError, match="--early-stopping-patience needs --dev FILE"):
        TrainArgs(train="t.tsv", early_stopping_patience=2).validate()
    with pytest.raises(ValueError, match="--model is required"):
        EvalArgs(data="dev.tsv").validate()
    with pytest.raises(ValueError, match="not both"):
        PredictArgs(model="m", texts=["a"], input="x.txt").validate()
    with pytest.raises(ValueError, match="--output out.xml: the file name must end in .jsonl "
                                         "or .csv"):
        PredictArgs(model="m", output="out.xml").validate()
