"""The run directory on disk: preparing it, writing checkpoints atomically, finding what to
resume and which model to load.

    OUT/metrics.jsonl   one JSON object per training step and per evaluation
    OUT/best/           the model with the best dev score (Hugging Face format + tokenizer)
    OUT/last/           the latest state: model + tokenizer + optimizer.safetensors +
                        trainer_state.json (step, schedule, data position, RNG), for --resume
    OUT/results.json    the final scores

Checkpoints are written to a temporary directory and renamed into place, so an interrupted
write never leaves a half-written ``last/`` or ``best/``.
"""
import json
import os
import shutil
from pathlib import Path

from ..io import atomic_write_text, read_safetensors, write_safetensors
from ..io.checkpoint import read_json

RUN_FILES = ("metrics.jsonl", "last", "best", "last.old", "best.old", "results.json")


class RunDirError(ValueError):
    """An output directory that cannot be used as asked (another run, nothing to resume)."""


def prepare_out_dir(out, overwrite):
    """Create ``out`` for a new run. A directory holding another run is refused unless
    ``overwrite``, which deletes that run's files (and nothing else)."""
    out = Path(out)
    holds_run = out.is_dir() and any((out / n).exists() for n in RUN_FILES)
    if holds_run and not overwrite:
        raise RunDirError(f"output directory {out} holds another run; use --overwrite to replace "
                          f"it or --resume to continue it")
    if holds_run:
        for name in RUN_FILES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def find_resume_dir(out):
    """``out/last`` (or ``out/last.old`` if a replacement was interrupted), else None."""
    for name in ("last", "last.old"):
        d = Path(out) / name
        if (d / "trainer_state.json").is_file():
            return d
    return None


def resume_dir_or_explain(out):
    """The checkpoint to resume in ``out``; a RunDirError saying what ``out`` holds instead."""
    out = Path(out)
    found = find_resume_dir(out)
    if found is not None:
        return found
    if not out.exists():
        raise RunDirError(f"--resume: {out} does not exist, so there is no run to continue; "
                          f"start one with --train FILE --out {out}")
    if not out.is_dir():
        raise RunDirError(f"--resume: {out} is a file, not a run directory")
    what = "it is empty" if not any(out.iterdir()) else "it has no last/trainer_state.json"
    raise RunDirError(f"--resume: {out} holds no run to continue ({what}); start one with "
                      f"--train FILE --out {out}")


def _replace_dir(tmp, final):
    """Move the finished directory ``tmp`` to ``final``, replacing it: rename the old one
    aside, rename the new one in, delete the old. At every instant a complete copy exists
    (``final`` or ``final.old``), and ``find_resume_dir`` knows to look at both."""
    final, old = Path(final), Path(str(final) + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def save_model_dir(directory, model, tokenizer, extra_files=None):
    """Write a Hugging Face-format model directory atomically (temp dir + rename).

    extra_files: {file name: function writing it to a given path}."""
    directory = Path(directory)
    tmp = Path(f"{directory}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, tokenizer=tokenizer)
    for name, writer in (extra_files or {}).items():
        writer(tmp / name)
    _replace_dir(tmp, directory)


def save_training_state(directory, model, tokenizer, optimizer, trainer_state):
    """The resumable checkpoint: model and tokenizer, the optimizer's moments
    (optimizer.safetensors) and trainer_state.json (``trainer_state`` plus the optimizer's
    other state)."""
    arrays, optimizer_rest = optimizer.state_arrays()
    state = dict(trainer_state, optimizer=optimizer_rest)
    save_model_dir(directory, model, tokenizer, extra_files={
        "optimizer.safetensors": lambda p: write_safetensors(arrays, p),
        "trainer_state.json": lambda p: atomic_write_text(p, json.dumps(state, indent=1)),
    })


def load_trainer_state(directory):
    """trainer_state.json of a checkpoint directory, as a dict (io's JSON reader: errors name
    the file, line and column)."""
    return read_json(Path(directory) / "trainer_state.json", what="trainer state")


def load_optimizer_arrays(directory):
    return read_safetensors(Path(directory) / "optimizer.safetensors")


def truncate_metrics(path, step):
    """On resume, drop log lines written after the checkpoint's step (they will be redone)."""
    path = Path(path)
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def run_model_dir(path):
    """The model directory to load for ``path``: ``path`` itself when it holds config.json,
    else its ``best/`` then its ``last/``. Returns (directory, warning or None); the warning
    says when ``last/`` stands in for a missing ``best/``."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path, None
    if (path / "best" / "config.json").is_file():
        return path / "best", None
    if (path / "last" / "config.json").is_file():
        return path / "last", (f"{path} has no best/ model (it was trained without --dev, or "
                               f"stopped before the first evaluation); using {path / 'last'}")
    raise RunDirError(f"{path} holds no model: no config.json, and no best/ or last/ of a "
                      f"minitune run")
