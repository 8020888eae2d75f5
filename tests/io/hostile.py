"""Load untrusted files in a child process with a memory limit, and classify what happens.

Used by tests/io/test_hostile_checkpoints.py (a fixed corpus, in CI) and by
tools/fuzz_loaders.py (mutated files by the ten thousand). A load ends in one of:

    ok            the loader returned
    documented    it raised a CheckpointError (or subclass): the promised outcome
    undocumented  any other exception (TypeError, MemoryError, RecursionError, ...)
    crash         the child died (a signal such as SIGSEGV): reported with the file
    timeout       it ran longer than the time limit and was killed

The child sets RLIMIT_AS to its size after the imports plus ``mem_limit`` bytes, so a
load that tries to use more than that fails with MemoryError (undocumented) instead of
swapping the machine; it also reports each load's time and the process's peak RSS.

Run directly, this file is the child: ``python hostile.py MEM_LIMIT`` reads JSON lines
``[kind, path]`` on stdin and answers one JSON line per job.
"""

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

# Loaders by kind: what a user calls on a file (or directory) from an untrusted source.
KINDS = ("safetensors", "bin", "checkpoint", "model", "config", "tokenizer")

# Fewer threads and malloc arenas keep the child's address space small and steady.
CHILD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
             "MALLOC_ARENA_MAX": "2"}


def _load(kind, path):
    """Call the loader for ``kind`` on ``path``; return a short description of the result."""
    from minitune import Tokenizer
    from minitune.io import load_checkpoint, read_safetensors, read_torch_bin
    from minitune.models import BertConfig, BertForSequenceClassification

    if kind == "safetensors":
        return f"{len(read_safetensors(path))} tensors"
    if kind == "bin":
        return f"{len(read_torch_bin(path))} tensors"
    if kind == "checkpoint":
        return f"{len(load_checkpoint(path))} tensors"
    if kind == "config":
        return f"hidden_size {BertConfig.from_json_file(path).hidden_size}"
    if kind == "model":
        model = BertForSequenceClassification.from_pretrained(path)
        return f"{sum(p.data.size for p in model.parameters())} parameters"
    if kind == "tokenizer":
        tokenizer = Tokenizer.from_pretrained(path)
        return f"{len(tokenizer)} tokens"
    raise ValueError(f"unknown kind {kind!r}")


def probe(kind, path):
    """Load one file in this process and classify the outcome (a dict, JSON-ready)."""
    from minitune.io import CheckpointError

    start = time.perf_counter()
    try:
        detail, outcome, name = _load(kind, path), "ok", ""
    except CheckpointError as e:
        detail, outcome, name = str(e), "documented", type(e).__name__
    except Exception as e:  # noqa: BLE001 - exactly what we are hunting
        detail, outcome, name = f"{e!r}"[:500], "undocumented", type(e).__name__
    except BaseException as e:  # noqa: BLE001 - a Rust panic is a BaseException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        detail, outcome, name = f"{e!r}"[:500], "undocumented", type(e).__name__
    return {"kind": kind, "path": str(path), "outcome": outcome, "error": name,
            "detail": detail[:500], "seconds": time.perf_counter() - start,
            "max_rss_mib": _peak_rss_mib()}


def _status(field):
    """A memory figure of this process from /proc/self/status, in bytes (0 if absent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _peak_rss_mib():
    """Peak resident memory since this process started (VmHWM; ru_maxrss would include
    the parent's, which Linux carries over a fork and exec)."""
    return _status("VmHWM") / 2**20 or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_main(mem_limit):
    """The child: import everything, cap the address space, then answer jobs."""
    import minitune.models  # noqa: F401  (import now: the limit is on the loads only)
    import minitune.tokenizer  # noqa: F401
    import tokenizers  # noqa: F401

    baseline = _status("VmSize")
    limit = baseline + mem_limit
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    rss = _peak_rss_mib()
    print(json.dumps({"ready": True, "baseline_mib": baseline / 2**20, "rss_mib": rss}),
          flush=True)
    for line in sys.stdin:
        kind, path = json.loads(line)
        print(json.dumps(probe(kind, path)), flush=True)


class Child:
    """A child process loading files one job at a time (restarted after a crash)."""

    def __init__(self, mem_limit=2 << 30, timeout=60.0):
        self.mem_limit, self.timeout = mem_limit, timeout
        self.proc = None
        self.baseline_mib = None       # address space after imports (the limit adds to it)
        self.baseline_rss_mib = None   # resident memory after imports

    def _start(self):
        env = {**os.environ, **CHILD_ENV}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(self.mem_limit)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env, bufsize=1)
        hello = json.loads(self.proc.stdout.readline())
        self.baseline_mib = hello["baseline_mib"]
        self.baseline_rss_mib = hello["rss_mib"]

    def run(self, kind, path):
        """Load ``path`` as ``kind`` in the child; return the outcome dict."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps([kind, str(path)]) + "\n")
        self.proc.stdin.flush()
        line = _readline_with_timeout(self.proc, self.timeout)
        if line:
            return json.loads(line)
        timed_out = self.proc.poll() is None
        if timed_out:
            self.proc.kill()
        code = self.proc.wait()
        self.proc = None
        outcome = "timeout" if timed_out else "crash"
        return {"kind": kind, "path": str(path), "outcome": outcome,
                "error": f"exit {code}", "detail": "", "seconds": self.timeout,
                "max_rss_mib": 0}

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _readline_with_timeout(proc, timeout):
    """The child's next output line, or '' if it died or said nothing for ``timeout`` s."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return proc.stdout.readline()


if __name__ == "__main__":
    child_main(int(sys.argv[1]))
