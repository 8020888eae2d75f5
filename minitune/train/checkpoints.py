"""The run directory on disk: preparing it, writing checkpoints atomically, finding what to
resume and which model to load.

    OUT/metrics.jsonl   one JSON object per training step and per evaluation
    OUT/best/           the model with the best dev score (Hugging Face format + tokenizer)
    OUT/last/           the latest state: model + tokenizer + optimizer.safetensors +
                        trainer_state.json (step, schedule, data position, RNG), for --resume
    OUT/results.json    the final scores

    OUT/run.json        the run's settings, written first: a run killed before its first
                        checkpoint resumes from the start

A checkpoint is written to ``NAME.tmp-<pid>/`` and then swapped in (``_replace_dir``) so
that, whatever sequence of crashes happens, a directory named ``last/`` or ``last.old/``
is always a complete checkpoint and one of them exists. ``recover_run_dir`` (at every
``--resume``) puts the newest complete checkpoint back in ``last/`` and removes what
interrupted writes left behind (docs/finetuning.md, "Crashes").
"""
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import CheckpointError
from ..io import atomic_write_text, read_safetensors, write_safetensors
from ..io.atomic import fsync_directory
from ..io.json_io import key_error, read_json

RUN_FILES = ("metrics.jsonl", "run.json", "last", "best", "last.old", "best.old",
             "results.json")
# What interrupted writes leave in OUT: checkpoint directories being written or deleted,
# the temporary files of the atomic writes of the run's own files (.metrics.jsonl.x1y2.tmp)
# and of check_writable's probe. Only those names: OUT may hold the user's files too.
LEFTOVER = re.compile(r"^((last|best)(\.old)?(\.(tmp|trash)-\d+)+"
                      r"|\.(metrics\.jsonl|run\.json|results\.json)\.\w+\.tmp"
                      r"|\.write-test-\w+\.tmp)$")
# The files of a complete resumable checkpoint; trainer_state.json is written last.
CHECKPOINT_FILES = ("config.json", "model.safetensors", "optimizer.safetensors",
                    "trainer_state.json")
# Keys of trainer_state.json that resuming reads.
STATE_KEYS = ("step", "args", "id2label", "task", "schedule", "loader", "rng", "optimizer")


class RunDirError(ValueError):
    """An output directory that cannot be used as asked (another run, nothing to resume)."""


def check_writable(out):
    """Create ``out`` and write a probe file in it: an output directory that cannot be
    written is reported before any training, naming --out."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", suffix=".tmp", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise RunDirError(f"--out {out}: cannot write there ({e.strerror or e})") from None


def prepare_out_dir(out, overwrite):
    """Create ``out`` for a new run. A directory holding another run is refused unless
    ``overwrite``, which deletes that run's files (and nothing else). What interrupted
    writes left (``last.tmp-<pid>/``, ``.run.json.x1y2.tmp``) is deleted in any case."""
    out = Path(out)
    holds_run = out.is_dir() and any((out / n).exists() for n in RUN_FILES)
    if holds_run and not overwrite:
        raise RunDirError(f"output directory {out} holds another run; use --overwrite to replace "
                          f"it or --resume to continue it")
    leftovers = [p for p in out.iterdir() if LEFTOVER.match(p.name)] if out.is_dir() else []
    for path in [out / n for n in RUN_FILES] + leftovers:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def is_complete(directory):
    return all((Path(directory) / name).is_file() for name in CHECKPOINT_FILES)


def find_resume_dir(out):
    """The newest complete checkpoint in ``out``: ``last/``, else ``last.old/`` (a swap was
    interrupted), else a complete ``last.tmp-<pid>/`` (left by an interrupted swap of an
    older minitune, which could lose both others); None if there is none."""
    out = Path(out)
    for name in ("last", "last.old"):
        if is_complete(out / name):
            return out / name
    written = [d for d in out.glob("last.tmp-*") if is_complete(d)] if out.is_dir() else []
    return max(written, key=lambda d: (d / "trainer_state.json").stat().st_mtime, default=None)


def recover_run_dir(out):
    """Before resuming: move the newest complete checkpoint to ``last/`` (and ``best/``
    likewise), then delete what interrupted writes left: ``*.tmp-<pid>``, ``*.trash-<pid>``,
    a superseded ``*.old`` and temporary files. Returns ``last/``, or None if no checkpoint
    survived. Each change is reported on stderr."""
    out = Path(out)
    found = find_resume_dir(out)
    for name, source in (("last", found), ("best", _newest_model(out))):
        if source is not None and source.name != name:
            if (out / name).exists():  # never made by minitune: a damaged copy
                print(f"resume: {out / name} is incomplete; removing it", file=sys.stderr)
                _discard(out / name)
            os.replace(source, out / name)
            print(f"resume: {source} is the newest complete checkpoint; renamed to {out / name}",
                  file=sys.stderr)
    for path in sorted(out.iterdir()) if out.is_dir() else []:
        superseded = (path.name == "last.old" and is_complete(out / "last")) or (
            path.name == "best.old" and _newest_model(out) == out / "best")
        if LEFTOVER.match(path.name) or superseded:
            if superseded:
                _discard(path)
            elif path.is_dir():
                shutil.rmtree(path)       # a name resume never reads: delete in place
            else:
                path.unlink()
            print(f"resume: removed {path}, left by an interrupted write", file=sys.stderr)
    return out / "last" if found is not None else None


def _newest_model(out):
    """best/, else best.old/ (a swap of best/ was interrupted), else None."""
    for name in ("best", "best.old"):
        if (out / name / "config.json").is_file() and (out / name / "model.safetensors").is_file():
            return out / name
    return None


def resume_dir_or_explain(out):
    """The checkpoint to resume in ``out`` (``find_resume_dir``; the trainer's writer then
    calls ``recover_run_dir``); None when the run was killed before its first checkpoint (it
    restarts from run.json); else a RunDirError saying what ``out`` holds instead."""
    out = Path(out)
    if out.is_dir():
        found = find_resume_dir(out)
        if found is not None or (out / "run.json").is_file():
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
    """Move the finished directory ``tmp`` to ``final``, replacing it.

    The invariant: a directory named ``final`` or ``final.old`` is always complete (each is
    only ever made by renaming a complete one, and deleted by first renaming it to a trash
    name), and at every instant one of them exists. So ``final.old`` is deleted only while
    ``final`` exists; after a crash between the two renames only ``final.old`` exists, and
    the next save (or ``recover_run_dir``) keeps it until the new ``final`` is in place.
    """
    final, old = Path(final), Path(f"{final}.old")
    if final.exists():
        _discard(old)                 # final is complete: old is not needed
        os.replace(final, old)
    os.replace(tmp, final)            # the commit point
    _discard(old)
    fsync_directory(final.parent)


def _discard(directory):
    """Delete a checkpoint directory: renamed to ``NAME.trash-<pid>`` first (atomic), so a
    crash during the deletion never leaves a partial directory under a name that is read."""
    directory = Path(directory)
    if not directory.exists():
        return
    trash = directory.with_name(f"{directory.name}.trash-{os.getpid()}")
    if trash.exists():
        shutil.rmtree(trash)
    os.replace(directory, trash)
    shutil.rmtree(trash)


def save_model_dir(directory, model, tokenizer, extra_files=None):
    """Write a Hugging Face-format model directory atomically (temp dir + rename).

    extra_files: {file name: function writing it to a given path}."""
    directory = Path(directory)
    tmp = Path(f"{directory}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)            # only this process writes NAME.tmp-<its pid>
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
    """trainer_state.json of a checkpoint directory, as a dict.

    Raises:
        CheckpointError: the file is damaged (not JSON, or lacks a key resuming needs); the
            message names the file (and line and key).
    """
    path = Path(directory) / "trainer_state.json"
    state = read_json(path, what="trainer state (the checkpoint is damaged)")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: trainer state is not a JSON object; the checkpoint "
                              "is damaged", path=path)
    for key in STATE_KEYS:
        if key not in state:
            raise key_error(path, key, "missing; the checkpoint is damaged")
    if not isinstance(state["args"], dict):
        raise key_error(path, "args", "is not an object; the checkpoint is damaged")
    step = state["step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise key_error(path, "step", f"{step!r} is not a step number; the checkpoint is "
                        "damaged")
    return state


def restore_part(directory, key, restore):
    """``restore()`` one part of a checkpoint (``key`` of its trainer_state.json); a value it
    cannot use -- a damaged file, not a bug -- becomes a CheckpointError naming the key."""
    try:
        restore()
    except CheckpointError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise key_error(Path(directory) / "trainer_state.json", key,
                        f"cannot be restored ({type(e).__name__}: {e}); the checkpoint is "
                        "damaged") from None


def write_run_args(out, args):
    """OUT/run.json: the run's settings, so that a run killed before its first checkpoint
    can be resumed (from the start)."""
    atomic_write_text(Path(out) / "run.json", json.dumps({"args": args}, indent=1))


def load_run_args(out):
    """{"args": ...} from OUT/run.json (see ``write_run_args``)."""
    path = Path(out) / "run.json"
    saved = read_json(path, what="run settings")
    if not isinstance(saved, dict) or not isinstance(saved.get("args"), dict):
        raise key_error(path, "args", "missing or not an object")
    return saved


def load_optimizer_arrays(directory):
    return read_safetensors(Path(directory) / "optimizer.safetensors")


def truncate_metrics(path, step):
    """On resume, drop log lines written after the checkpoint's step (they will be redone).

    A line that is not a JSON record -- the torn last line of a run killed while logging --
    is dropped with a warning naming its line; the log never blocks a resume."""
    path = Path(path)
    if not path.exists():
        return
    keep = []
    text = path.read_bytes().decode("utf-8", "replace")
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            record_step = record.get("step", 0) if isinstance(record, dict) else None
        except ValueError:
            record_step = None
        if not isinstance(record_step, (int, float)) or isinstance(record_step, bool):
            print(f"warning: {path}:{lineno}: dropped a line that is not a complete log record "
                  f"(the run was killed while writing it?)", file=sys.stderr)
        elif record_step <= step:
            keep.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def run_model_dir(path):
    """The model directory to load for ``path``: ``path`` itself when it holds config.json,
    else its best model, else its newest checkpoint -- where a crash in the middle of a
    checkpoint swap left them (``best.old/``, ``last.old/``: ``_newest_model``,
    ``find_resume_dir``). Returns (directory, warning or None); the warning says when the
    last checkpoint stands in for a missing best model."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path, None
    best = _newest_model(path)
    if best is not None:
        return best, None
    last = find_resume_dir(path) if path.is_dir() else None
    if last is not None:
        return last, (f"{path} has no best/ model (it was trained without --dev, or "
                      f"stopped before the first evaluation); using {last}")
    raise RunDirError(f"{path} holds no model: no config.json, and no best/ or last/ of a "
                      f"minitune run")
