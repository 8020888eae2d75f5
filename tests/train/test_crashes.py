"""Crash injection: a run killed (SIGKILL) at any step of its writes -- once, or again at
the same step while resuming -- resumes and ends bit for bit as if never interrupted.

tests/train/crash.py forks the training and kills it just before a chosen file-system
event. In CI a set of events covers each phase of the checkpoint writer (run.json, a torn
metrics line, the files of last.tmp-N, each rename of the swap, the deletion of the old
copy); ``MINITUNE_SLOW=1`` kills at every one of the ~150 events of the run, singly and repeated.
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from minitune.train import RunDirError, TrainArgs, Trainer, train
from pipeline_helpers import save_tiny_bert

sys.path.insert(0, str(Path(__file__).resolve().parent))
import crash  # noqa: E402

# Events of the CI set: (description, which occurrence, 0-based).
CI_EVENTS = [
    ("replace .run.json.X.tmp -> run.json", 0),            # before anything is saved
    ("log train", 1),                                      # a torn metrics.jsonl line
    ("replace last.tmp-N/.model.safetensors.X.tmp -> last.tmp-N/model.safetensors", 1),
    ("replace last.tmp-N/.trainer_state.json.X.tmp -> last.tmp-N/trainer_state.json", 1),
    ("replace last -> last.old", 0),                        # the swap, step by step
    ("replace last.tmp-N -> last", 1),
    ("replace last.old -> last.old.trash-N", 0),
    ("unlink model.safetensors", 0),                         # inside last.old.trash-N
    ("replace best.tmp-N -> best", 0),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The model, data, and an uninterrupted reference run with its list of events."""
    root = tmp_path_factory.mktemp("crash")
    model = save_tiny_bert(root / "model")
    rows = [f"{i % 2}\tthe film was very {['bad', 'good'][i % 2]} ." for i in range(48)]
    (root / "train.tsv").write_text("label\ttext\n" + "\n".join(rows[:40]) + "\n")
    (root / "dev.tsv").write_text("label\ttext\n" + "\n".join(rows[40:]) + "\n")

    def args(out):
        return TrainArgs(task="classify", model=str(model), train=str(root / "train.tsv"),
                         dev=str(root / "dev.tsv"), out=str(out), epochs=1, batch_size=8,
                         lr=1e-3, max_len=16, progress=False, save_steps=2, eval_steps=2,
                         seed=3)

    ref = root / "reference"
    assert crash.run_forked(lambda: train(args(ref)), ref,
                            events_file=root / "events.txt") == "finished"
    events = (root / "events.txt").read_text().splitlines()
    return {"root": root, "args": args, "ref": ref, "events": events}


def outcome(run_dir):
    """What a finished run leaves: weights, optimizer state and logged losses."""
    state = json.loads((run_dir / "last" / "trainer_state.json").read_text())
    logs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "last": (run_dir / "last" / "model.safetensors").read_bytes(),
        "optimizer": (run_dir / "last" / "optimizer.safetensors").read_bytes(),
        "best": (run_dir / "best" / "model.safetensors").read_bytes(),
        "state": {k: state[k] for k in ("step", "best", "best_step", "rng", "loader",
                                        "schedule")},
        "log": [(r["type"], r["step"], r.get("loss"), r.get("accuracy")) for r in logs],
        "leftovers": sorted(p.name for p in run_dir.iterdir()
                            if p.name not in ("last", "best", "metrics.jsonl", "run.json",
                                              "results.json")),
    }


def crash_and_resume(setup, out, index, repeat):
    """Kill the run at event ``index``; if ``repeat``, kill its resumption at the first
    event described the same way; then resume to the end. Returns the run's outcome."""
    args = setup["args"]
    assert crash.run_forked(lambda: train(args(out)), out, kill_at=index) == "killed"

    def resume():
        """What a user does: --resume; if the run died before saving anything, run the
        same command again."""
        try:
            trainer = Trainer(TrainArgs(out=str(out), resume=True, progress=False))
        except RunDirError as e:
            if "no run to continue" not in str(e):
                raise
            trainer = Trainer(args(out))
        trainer.fit()
    if repeat:
        status = crash.run_forked(resume, out, kill_at_event=setup["events"][index])
        assert status in ("killed", "finished"), status
    status = crash.run_forked(resume, out)
    assert status == "finished", status
    return outcome(out)


def event_index(events, description, occurrence):
    return [i for i, e in enumerate(events) if e == description][occurrence]


@pytest.mark.parametrize("repeat", [False, True], ids=["once", "twice"])
@pytest.mark.parametrize("description, occurrence", CI_EVENTS,
                         ids=[f"{d.split(' ')[0]}-{d.split(' ')[-1]}-{n}" for d, n in CI_EVENTS])
def test_killed_at_a_writer_step_resumes_bit_for_bit(setup, tmp_path, description, occurrence,
                                                     repeat):
    index = event_index(setup["events"], description, occurrence)
    got = crash_and_resume(setup, tmp_path / "run", index, repeat)
    want = outcome(setup["ref"])
    # nothing left behind that an uninterrupted run does not leave (e.g. curves.png when
    # matplotlib is installed)
    assert got["leftovers"] == want["leftovers"]
    for key in want:
        assert got[key] == want[key], key


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("MINITUNE_SLOW") != "1",
                    reason="kills the run at each of its ~150 events (minutes): MINITUNE_SLOW=1")
@pytest.mark.parametrize("repeat", [False, True], ids=["once", "twice"])
def test_killed_at_every_event_resumes_bit_for_bit(setup, tmp_path, repeat):
    want = outcome(setup["ref"])
    failures = []
    for index, description in enumerate(setup["events"]):
        try:
            got = crash_and_resume(setup, tmp_path / f"run{index}", index, repeat)
            bad = [k for k in want if got[k] != want[k]]
            if bad:
                failures.append((index, description, bad, got["leftovers"]))
        except AssertionError as e:
            failures.append((index, description, str(e)[:200]))
    print(f"{len(setup['events'])} kill points, repeat={repeat}: {len(failures)} failures")
    assert not failures, failures


def test_torn_metrics_line_is_dropped_with_a_warning(setup, tmp_path, capfd):
    out = tmp_path / "run"
    index = event_index(setup["events"], "log train", 3)
    assert crash.run_forked(lambda: train(setup["args"](out)), out, kill_at=index) == "killed"
    tail = (out / "metrics.jsonl").read_text().splitlines()[-1]
    with pytest.raises(ValueError):
        json.loads(tail)                                    # the line really is torn
    train(TrainArgs(out=str(out), resume=True, progress=False))
    assert "dropped a line that is not a complete log record" in capfd.readouterr().err
    assert outcome(out)["log"] == outcome(setup["ref"])["log"]


def test_damaged_trainer_state_is_named(setup, tmp_path):
    out = tmp_path / "run"
    train(setup["args"](out))
    (out / "last" / "trainer_state.json").write_text('{"step": 3,')
    with pytest.raises(ValueError, match=r"last/trainer_state.json:1:\d+: trainer state .* is "
                                         "not valid JSON"):
        train(TrainArgs(out=str(out), resume=True, progress=False))



@pytest.mark.parametrize("key", ["rng", "loader", "schedule", "optimizer", "step"])
def test_a_damaged_value_in_trainer_state_names_its_key(setup, tmp_path, key):
    """A value of the wrong kind is a damaged checkpoint (CheckpointError naming the key),
    not an internal error."""
    from minitune import CheckpointError
    out = tmp_path / "run"
    train(setup["args"](out))
    path = out / "last" / "trainer_state.json"
    state = json.loads(path.read_text())
    state[key] = "x"
    path.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=rf"trainer_state.json:\d+: {key}: .*damaged"):
        train(TrainArgs(out=str(out), resume=True, progress=False))

def test_unwritable_out_is_reported_before_training(setup, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=r"--out .*a_file/run: cannot write there"):
        train(setup["args"](blocker / "run"))
    assert np.all(True)
