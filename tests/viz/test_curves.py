"""minitune plot: a PNG from metrics.jsonl, clear errors, and nothing needed without plots."""
import json
import sys

import pytest

from minitune.cli import main
from minitune.viz.curves import plot_run, plot_run_if_possible, read_metrics

pytest.importorskip("matplotlib")
PNG = b"\x89PNG\r\n\x1a\n"


def write_run(tmp_path, dev=True):
    lines = [{"type": "train", "step": s, "epoch": s / 10, "loss": 1.0 / s, "lr": 1e-4 * s / 10,
              "step_s": 0.1} for s in range(1, 11)]
    if dev:
        lines.insert(5, {"type": "eval", "split": "dev", "step": 5, "epoch": 0.5,
                         "accuracy": 0.7, "macro_f1": 0.6})
        lines.append({"type": "eval", "split": "dev", "step": 10, "epoch": 1.0,
                      "accuracy": 0.8, "macro_f1": 0.7})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return tmp_path


def test_plot_writes_a_png_next_to_the_metrics(tmp_path, capsys):
    write_run(tmp_path)
    assert main(["plot", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG
    train, evals = read_metrics(tmp_path)
    assert len(train) == 10 and [e["accuracy"] for e in evals] == [0.7, 0.8]


def test_plot_other_metric_and_output_and_no_dev(tmp_path):
    write_run(tmp_path)
    out = plot_run(tmp_path, tmp_path / "f1.png", metric="macro_f1")
    assert out.read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="metric 'f1' is not logged.*macro_f1"):
        plot_run(tmp_path, metric="f1")
    (tmp_path / "nodev").mkdir()
    nodev = write_run(tmp_path / "nodev", dev=False)
    assert plot_run(nodev).is_file()


def test_plot_errors_name_the_file_and_line(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl not found" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text('{"type": "train", "step": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not JSON"):
        plot_run(tmp_path)


def test_without_matplotlib_training_just_skips_the_plot(tmp_path, monkeypatch):
    write_run(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)        # import fails
    assert plot_run_if_possible(tmp_path) is None
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(RuntimeError, match=r"pip install 'minitune\[viz\]'"):
        plot_run(tmp_path)
