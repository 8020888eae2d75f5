"""The minitune command as a user meets it: flags generated from the options dataclasses,
--help with defaults, --version, bad values, and train -> eval -> predict on a user's own CSV
files with their own column names."""
import csv
import io
import json
import sys

import pytest

from minitune import __version__, cli


def run(capsys, *argv):
    """cli.main(argv) -> (exit status, stdout, stderr)."""
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as e:                # argparse: --help, --version, a bad choice
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_help_shows_every_default_and_version(capsys):
    rc, out, _ = run(capsys, "train", "--help")
    assert rc == 0
    for text in ("--lr LR", "(default: 5e-05)", "--grad-accum-steps", "(default: 1)",
                 "--early-stopping-patience", "--no-progress", "(default: classify)"):
        assert text in " ".join(out.split()), text
    assert run(capsys, "--version")[1].strip() == f"minitune {__version__}"
    rc, out, _ = run(capsys, "predict", "--help")
    assert rc == 0 and "--input FILE" in out and "--output FILE" in out


@pytest.mark.parametrize("argv, message", [
    (["--max-grad-norm=-1"], "--max-grad-norm must be > 0, got -1.0"),
    (["--max-steps", "0"], "--max-steps must be >= 1, got 0"),
    (["--weight-decay", "-1"], "--weight-decay must be >= 0, got -1.0"),
    (["--max-len", "1"], "--max-len must be >= 3, got 1"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--epochs", "abc"], "argument --epochs: invalid float value: 'abc'"),
    (["--task", "tag"], "argument --task: invalid choice: 'tag'"),
])
def test_bad_values_exit_2_naming_the_flag(capsys, argv, message):
    rc, _, err = run(capsys, "train", "--train", "x.tsv", *argv)
    assert rc == 2 and message in err, err


def test_missing_inputs_are_explained(capsys, tmp_path, tiny_model_dir):
    rc, _, err = run(capsys, "train", "--out", tmp_path / "x")
    assert rc == 2 and "a training file is required: --train FILE" in err
    rc, _, err = run(capsys, "train", "--resume", "--out", tmp_path)
    assert rc == 2 and f"--resume: {tmp_path} holds no run to continue (it is empty)" in err
    rc, _, err = run(capsys, "train", "--train", "missing.tsv", "--out", tmp_path / "x",
                     "--model", tiny_model_dir, "--no-progress")
    assert rc == 2 and "missing.tsv" in err
    rc, _, err = run(capsys, "eval", "--data", "dev.tsv")
    assert rc == 2 and "--model is required" in err


@pytest.fixture(scope="module")
def csv_files(sentiment_files, tmp_path_factory):
    """The sentiment data as a user's CSV (columns review, sentiment; label names) and JSONL."""
    d = tmp_path_factory.mktemp("csv")
    for split in ("train", "dev"):
        lines = (sentiment_files / f"{split}.tsv").read_text().splitlines()[1:]
        rows = [(text, ["negative", "positive"][int(label)])
                for label, text in (line.split("\t") for line in lines)]
        with open(d / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([("review", "sentiment")] + rows)
        with open(d / f"{split}.jsonl", "w") as f:
            f.writelines(json.dumps({"review": t, "sentiment": s}) + "\n" for t, s in rows)
    return d


@pytest.fixture(scope="module")
def csv_run(csv_files, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "csv"
    rc = cli.main(["train", "--model", str(tiny_model_dir), "--train", str(csv_files / "train.csv"),
                   "--dev", str(csv_files / "dev.csv"), "--label-column", "sentiment",
                   "--epochs", "12", "--batch-size", "8", "--lr", "3e-3", "--max-len", "16",
                   "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def test_train_prints_the_scores_and_eval_reuses_the_runs_columns(capsys, csv_run, csv_files):
    results = json.loads((csv_run / "results.json").read_text())
    assert results["dev"]["accuracy"] >= 0.75
    # the JSONL dev file has the same columns; eval needs no --label-column again
    rc, out, _ = run(capsys, "eval", "--model", csv_run, "--data", csv_files / "dev.jsonl")
    assert rc == 0
    lines = out.strip().splitlines()
    assert "negative" in out and "positive" in out and "precision" in lines[0]
    assert json.loads(lines[-1])["accuracy"] == pytest.approx(results["dev"]["accuracy"])
    rc, _, err = run(capsys, "eval", "--model", csv_run, "--data", csv_files / "dev.jsonl",
                     "--label-column", "polarity")
    assert rc == 2 and "no label column 'polarity'" in err


def test_predict_from_arguments_files_and_stdin(capsys, csv_run, csv_files, tmp_path,
                                                monkeypatch):
    rc, out, _ = run(capsys, "predict", "--model", csv_run, "the film was very lovely .",
                     "the film was very dull .")
    preds = [json.loads(x) for x in out.splitlines()]
    assert rc == 0 and [p["label"] for p in preds] == ["positive", "negative"]
    assert all(0.5 < p["probability"] <= 1 and set(p["probabilities"]) == {"negative",
                                                                            "positive"}
               for p in preds)

    rc, _, err = run(capsys, "predict", "--model", csv_run, "--input", csv_files / "dev.csv",
                     "--output", tmp_path / "p.csv")
    assert rc == 0 and "8 predictions written" in err
    rows = list(csv.DictReader(open(tmp_path / "p.csv", newline="")))
    assert list(rows[0]) == ["text", "label", "probability", "p(negative)", "p(positive)"]
    truth = [r["sentiment"] for r in csv.DictReader(open(csv_files / "dev.csv", newline=""))]
    assert sum(r["label"] == t for r, t in zip(rows, truth)) >= 6

    rc, _, _ = run(capsys, "predict", "--model", csv_run, "--input", csv_files / "dev.jsonl",
                   "--output", tmp_path / "p.jsonl")
    assert [json.loads(x)["label"] for x in open(tmp_path / "p.jsonl")] == \
        [r["label"] for r in rows]

    # stdin: plain lines (\r\n endings dropped), or a CSV with --input-format
    monkeypatch.setattr(sys, "stdin", io.StringIO("the film was very good .\r\n\r\nbad\r\n"))
    rc, out, _ = run(capsys, "predict", "--model", csv_run)
    assert [json.loads(x)["text"] for x in out.splitlines()] == ["the film was very good .",
                                                                "bad"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("review,sentiment\nthe film was good ."
                                                  ",positive\n"))
    rc, out, _ = run(capsys, "predict", "--model", csv_run, "--input-format", "csv")
    assert [json.loads(x)["text"] for x in out.splitlines()] == ["the film was good ."]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n \n"))
    rc, _, err = run(capsys, "predict", "--model", csv_run)
    assert rc == 2 and "stdin: no texts to label" in err


def test_a_run_without_dev_predicts_with_last_and_says_so(capsys, csv_files, tiny_model_dir,
                                                          tmp_path):
    out = tmp_path / "nodev"
    assert run(capsys, "train", "--model", tiny_model_dir, "--train", csv_files / "train.csv",
               "--label-column", "sentiment", "--max-steps", "2", "--max-len", "16", "--out",
               out, "--no-progress")[0] == 0
    rc, stdout, err = run(capsys, "predict", "--model", out, "good")
    assert rc == 0 and json.loads(stdout)["text"] == "good"
    assert f"warning: {out} has no best/ model" in err and str(out / "last") in err


# --- errors: one line, status 2; --debug for the traceback ---------------------------------


def test_bad_files_and_unwritable_out_are_one_line_and_status_2(capsys, tmp_path,
                                                                 tiny_model_dir, sentiment_files):
    bad_model = tmp_path / "bad_model"
    bad_model.mkdir()
    (bad_model / "config.json").write_text('{"num_attention_heads": 0}')
    (bad_model / "model.safetensors").write_bytes(b"\0" * 8)
    cases = [
        (["eval", "--model", bad_model, "--data", sentiment_files / "dev.tsv"], "config.json"),
        (["train", "--model", tiny_model_dir, "--train", sentiment_files / "train.tsv",
          "--out", sentiment_files / "train.tsv" / "run"], "--out"),
    ]
    for argv, where in cases:
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and where in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_debug_shows_the_traceback_and_bugs_exit_1(capsys, monkeypatch, tmp_path):
    argv = ["eval", "--model", tmp_path / "none", "--data", "x.tsv"]
    with pytest.raises(ValueError):
        cli.main([str(a) for a in argv + ["--debug"]])
    with pytest.raises(ValueError):
        cli.main(["--debug"] + [str(a) for a in argv])

    def broken(args):
        raise TypeError("unexpected")
    monkeypatch.setitem(cli.COMMANDS, "eval", cli.Command(cli.EvalArgs, broken, "eval"))
    rc, _, err = run(capsys, *argv)
    assert rc == 1 and "internal error: TypeError: unexpected" in err and "--debug" in err
