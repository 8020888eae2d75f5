"""Kill a training run (SIGKILL, as ``kill -9`` or a power cut would) at a chosen step of
its writes to disk, then resume it; for tests/train/test_crashes.py.

A forked child runs the training. Every call that changes the file system -- os.replace,
os.rename, os.unlink, os.rmdir, os.mkdir, os.fsync -- and every line appended to
metrics.jsonl is an *event*, described without process ids ("replace last.tmp-N ->
last"). The child kills itself just before the event chosen, or runs to the end while
recording every event. Forking keeps each run to a fraction of a second (the imports are
done once, in the parent).
"""

import os
import re
import signal
import sys

_PID = re.compile(r"-\d+")
_TEMP = re.compile(r"\.[A-Za-z0-9_]{8}\.tmp$")   # mkstemp's random part
_PATCHED = ("replace", "rename", "unlink", "rmdir", "mkdir", "fsync")


def describe(name, args, run_dir):
    """An event's description: the call and its paths relative to the run directory."""
    paths = []
    for arg in args[:2]:
        if isinstance(arg, (str, os.PathLike)):
            path = os.fspath(arg)
            path = os.path.relpath(path, run_dir) if os.path.isabs(path) else path
            paths.append(_TEMP.sub(".X.tmp", _PID.sub("-N", path)))
    return f"{name} {' -> '.join(paths)}".strip()


def run_forked(work, run_dir, kill_at=None, kill_at_event=None, events_file=None):
    """Run ``work()`` in a forked child. Kill it before its ``kill_at``-th event (0-based),
    or before the first event described as ``kill_at_event``. Returns "killed", "finished"
    or "failed: <error>"; ``events_file`` receives every event's description."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                     # the child: never returns
        os.close(read_end)
        status = b"finished"
        try:
            _instrument(run_dir, kill_at, kill_at_event, events_file)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            work()
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            status = f"failed: {type(e).__name__}: {e}".encode()[:2000]
        os.write(write_end, status)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        message = f.read().decode()
    _, wait_status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) == signal.SIGKILL:
        return "killed"
    return message or f"exit status {wait_status}"


def _instrument(run_dir, kill_at, kill_at_event, events_file):
    from minitune.train import trainer

    count = [0]
    log = open(events_file, "w") if events_file else None

    def event(description, before_kill=None):
        if log:
            log.write(description + "\n")
            log.flush()
        if count[0] == kill_at or description == kill_at_event:
            if before_kill:
                before_kill()
            os.kill(os.getpid(), signal.SIGKILL)
        count[0] += 1

    for name in _PATCHED:
        real = getattr(os, name)

        def patched(*args, _real=real, _name=name, **kwargs):
            event(describe(_name, args, run_dir))
            return _real(*args, **kwargs)
        setattr(os, name, patched)

    real_log = trainer.Trainer._log

    def logged(self, record):
        import json
        line = json.dumps(record) + "\n"

        def torn():                                  # killed in the middle of the line
            self._log_file.write(line[: len(line) // 2])
            self._log_file.flush()
        event(f"log {record.get('type')}", before_kill=torn)
        return real_log(self, record)
    trainer.Trainer._log = logged
    sys.stdin = open(os.devnull)
