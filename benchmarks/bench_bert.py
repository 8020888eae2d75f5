"""BERT speed benchmarks: minitune against PyTorch + Hugging Face Transformers on the CPU.

Not a test: it prints figures and ratios and asserts nothing. See docs/performance.md.

What it measures (MiniLM-L6, all-MiniLM-L6-v2: 6 layers, H 384, NH 12, I 1536, fp32):

  load      ``from_pretrained`` wall time, each in a fresh subprocess (imports excluded,
            files in the OS page cache: "cold-ish"), median of 3, for both libraries.
  fwd       forward throughput, eval mode, no grad, batch 64 x 128 tokens.
  train     one training step = forward + loss + backward + AdamW.step + zero_grad, on
            synthetic full-length batches (no padding) as shared/reference/hf_step.py does:
            sequence classification 32 x 64 and 32 x 128, token classification 32 x 128.

Both libraries run in ONE process on the same batch, interleaved pair by pair (the order
alternates: minitune first, then torch first, ...), so machine noise hits both sides alike;
the figure to trust is the median of the per-pair ratios minitune / torch (> 1: minitune is
slower). Absolute times are only as good as the machine is quiet.

Threads matter more than anything else here: on a shared 2-core machine numpy's OpenBLAS with
2 threads can be several times slower than with 1 (some batched products by 100x or more;
docs/performance.md), so compare --threads 1 and --threads 2 before drawing conclusions.

PyTorch side: ``torch.set_num_threads(N)``, transformers' default attention
implementation ("sdpa" for BERT; ``--torch-attn eager`` to change it), AdamW with weight
decay 0.01 except biases and LayerNorm weights -- the reference protocol (STEP-A).
Without torch, minitune's figures are printed alone, next to the reference figures quoted
from shared/reference/README.md (measured there in separate processes, not in this run).

Usage:
  python benchmarks/bench_bert.py                 # everything (5 timed rounds per configuration)
  python benchmarks/bench_bert.py --quick         # 3 rounds: ~5 min at --threads 1 on 2 cores
  python benchmarks/bench_bert.py --only train_seq_b32_l64 --pairs 8
  python benchmarks/bench_bert.py --json out.json --threads 2
  python benchmarks/bench_bert.py --rss           # only peak RSS, one subprocess per side/config
  python benchmarks/bench_bert.py --profile       # only the per-op profile of one minitune step
                                                  # (and the step's GEMM-bound fraction)
  python benchmarks/bench_bert.py --busy 1        # also beside 1 CPU-bound competitor process
  python benchmarks/bench_bert.py --probe         # one product's rate inside a step and between
  python benchmarks/bench_bert.py --ab prefetch   # one switch of minitune's CPU path on/off
  python benchmarks/bench_bert.py --timeline      # where the pool's threads wait in a step
"""
import os
import sys
import time

T_START = time.perf_counter()     # imports are timed from here (load benchmark)


def _threads_from_argv(argv, default=2):
    """--threads N, read before numpy is imported: BLAS sizes its thread pool when it loads."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return default


THREADS = _threads_from_argv(sys.argv[1:])
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import cProfile  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import minitune as mt  # noqa: E402
from minitune.autograd import Function  # noqa: E402
from minitune import cpu, dispatch  # noqa: E402
from minitune.cpu import linear as cpu_linear, threads as cpu_threads  # noqa: E402
from minitune.cpu.linear import gemm_library  # noqa: E402
from minitune.ops.matmul import LINEAR_REFERENCE  # noqa: E402
from minitune.models.bert import (BertForSequenceClassification,  # noqa: E402
                                  BertForTokenClassification)
from minitune.optim import AdamW, param_groups_with_weight_decay  # noqa: E402

logging.getLogger("minitune").setLevel(logging.ERROR)   # "classifier newly initialised"

MODEL = "all-MiniLM-L6-v2"
LR, WEIGHT_DECAY = 5e-5, 0.01

# name: (mode, head, batch B, tokens T)
CONFIGS = {
    "fwd_seq_b64_l128": ("fwd", "seq", 64, 128),
    "train_seq_b32_l64": ("train", "seq", 32, 64),
    "train_seq_b32_l128": ("train", "seq", 32, 128),
    "train_tok_b32_l128": ("train", "tok", 32, 128),
}
NUM_LABELS = {"seq": 2, "tok": 9}

# Quoted from shared/reference/README.md ("Speed", hf_step.py): PyTorch 2.13.0 + transformers
# 5.24.0, 2 threads, 2-core Xeon @ 2.5 GHz, each configuration in its own process, machine shared.
REFERENCE_README = {
    "train_seq_b32_l128": {"median_s": 3.70, "min_s": 2.64, "peak_rss_gib": 2.27},
    "train_seq_b32_l64": {"median_s": 1.96, "min_s": 1.81, "peak_rss_gib": 1.48},
    "train_tok_b32_l128": {"median_s": 4.06, "min_s": 3.00, "peak_rss_gib": 2.27},
    "fwd_seq_b64_l128": {"median_s": 1.92, "min_s": 1.60, "peak_rss_gib": 0.72},
}


# --------------------------------------------------------------------------- environment

def torch_available():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        return True
    except ImportError:
        return False


def env_info():
    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": _cpu_model(), "n_cpus": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "threads": THREADS, "argv": sys.argv[1:],
        "loadavg_start": os.getloadavg(),
    }
    if torch_available():
        import torch
        import transformers
        info["torch"], info["transformers"] = torch.__version__, transformers.__version__
    return info


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss_mib():
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- the two sides

def synthetic_batch(head, B, T, vocab, seed=0):
    """Random ids in [1000, V), no padding, token types 0, random labels: as hf_step.py."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab, size=(B, T), dtype=np.int64)
    labels = rng.integers(0, NUM_LABELS[head], size=(B,) if head == "seq" else (B, T))
    return {"input_ids": ids, "attention_mask": np.ones((B, T), dtype=np.int64),
            "token_type_ids": np.zeros((B, T), dtype=np.int64), "labels": labels}


def minitune_runner(mode, head, batch):
    """Load minitune's model and return (step function, model). A step returns the loss
    (train) or the sum of the logits (fwd), as a float, so the work cannot be skipped."""
    cls = BertForSequenceClassification if head == "seq" else BertForTokenClassification
    model = cls.from_pretrained(MODEL, num_labels=NUM_LABELS[head], seed=0)
    ids, mask, tt = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    if mode == "fwd":
        model.eval()

        def step():
            with mt.no_grad():
                return float(model(ids, mask, tt).logits.data.sum())
        return step, model

    model.train()
    opt = AdamW(param_groups_with_weight_decay(model.named_parameters(), WEIGHT_DECAY), lr=LR)
    labels = batch["labels"]

    def step():
        out = model(ids, mask, tt, labels=labels)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        return out.loss.item()
    step.optimizer = opt
    return step, model


def torch_runner(mode, head, batch, attn):
    """The same with transformers' BertFor*Classification and torch.optim.AdamW."""
    import torch
    import transformers
    _quiet_transformers()
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    cls = (transformers.BertForSequenceClassification if head == "seq"
           else transformers.BertForTokenClassification)
    kwargs = {} if attn == "default" else {"attn_implementation": attn}
    model = cls.from_pretrained(str(mt_model_dir()), num_labels=NUM_LABELS[head], **kwargs)
    t = {k: torch.from_numpy(v) for k, v in batch.items()}
    if mode == "fwd":
        model.eval()

        def step():
            with torch.no_grad():
                out = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"],
                            token_type_ids=t["token_type_ids"])
                return float(out.logits.sum())
        return step, model

    model.train()
    decay = [p for n, p in model.named_parameters() if not _no_decay(n)]
    skip = [p for n, p in model.named_parameters() if _no_decay(n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": skip, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.999), eps=1e-8)

    def step():
        out = model(**t)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.item()
    return step, model


def _quiet_transformers():
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _no_decay(name):
    return name.endswith("bias") or "LayerNorm" in name


def mt_model_dir():
    from minitune.io import resolve_model_dir
    return resolve_model_dir(MODEL)


# --------------------------------------------------------------------------- timing

def timed(step):
    t = time.perf_counter()
    value = step()
    return time.perf_counter() - t, value


def interleaved(sides, warmup, pairs):
    """Run the sides' steps alternately: pair i runs them in order, pair i+1 reversed.
    Returns {side: [seconds per timed step]} and {side: [values of all steps]}."""
    names = list(sides)
    times, values = {n: [] for n in names}, {n: [] for n in names}
    for i in range(warmup + pairs):
        order = names if i % 2 == 0 else names[::-1]
        for n in order:
            # Untimed: both libraries live in this one process, and a collection started by
            # one side's allocations would scan the other's objects too (some 280,000 with
            # transformers imported: up to 90 ms) inside a timed step.
            gc.collect()
            dt, v = timed(sides[n])
            values[n].append(v)
            if i >= warmup:
                times[n].append(dt)
    return times, values


def summarise(ts, tokens):
    med = statistics.median(ts)
    return {"median_s": med, "min_s": min(ts), "max_s": max(ts), "all_s": ts,
            "tokens_per_s_median": tokens / med, "tokens_per_s_best": tokens / min(ts)}


def run_config(name, args, with_torch):
    mode, head, B, T = CONFIGS[name]
    sides = {}
    mt_step, mt_model = minitune_runner(mode, head, synthetic_batch(head, B, T, 30522))
    sides["minitune"] = mt_step
    extra = {}
    if with_torch:
        tstep, tmodel = torch_runner(mode, head, synthetic_batch(head, B, T, 30522),
                                     args.torch_attn)
        sides["torch"] = tstep
        extra["torch_attn_implementation"] = getattr(tmodel.config, "_attn_implementation",
                                                     None)
        extra["encoder_max_abs_diff"] = encoder_parity(mt_model, tmodel)
    times, values = interleaved(sides, args.warmup, args.pairs)
    res = {"mode": mode, "head": head, "batch": B, "seqlen": T, "warmup": args.warmup,
           "pairs": args.pairs, **extra}
    if args.busy:
        with Competitors(args.busy):
            busy_times, _ = interleaved(sides, args.warmup, args.pairs)
        res["busy"] = {"competitors": args.busy}
        for n in sides:
            quiet, busy = statistics.median(times[n]), statistics.median(busy_times[n])
            res["busy"][n] = {"all_s": busy_times[n], "median_s": busy, "min_s": min(busy_times[n]),
                              "slowdown": busy / quiet}
    for n in sides:
        res[n] = summarise(times[n], B * T)
        res[n]["first_last_value"] = [values[n][0], values[n][-1]]
    if with_torch:
        ratios = [a / b for a, b in zip(times["minitune"], times["torch"])]
        res["ratio_pairs"] = ratios
        res["ratio_median"] = statistics.median(ratios)
        res["ratio_of_mins"] = res["minitune"]["min_s"] / res["torch"]["min_s"]
    del sides, mt_model
    gc.collect()
    return res


def encoder_parity(mt_model, torch_model):
    """Largest |difference| of the encoders' last hidden states, eval mode, 2 x 16 tokens:
    checks that both sides compute the same function before their speeds are compared."""
    import torch
    batch = synthetic_batch("seq", 2, 16, 30522, seed=1)
    was_training = mt_model.training
    mt_model.eval()
    torch_model.eval()
    with mt.no_grad():
        a = mt_model.bert(batch["input_ids"]).last_hidden_state.data
    with torch.no_grad():
        b = torch_model.bert(input_ids=torch.from_numpy(batch["input_ids"])
                             ).last_hidden_state.numpy()
    mt_model.train(was_training)
    torch_model.train(was_training)
    return float(np.abs(a - b).max())


def print_config(name, r):
    unit = "s/batch" if r["mode"] == "fwd" else "s/step"
    print(f"{name}  (B {r['batch']} x T {r['seqlen']}, {r['pairs']} timed rounds after "
          f"{r['warmup']} warm-up; a round = one step per side)", flush=True)
    for side in ("minitune", "torch"):
        if side in r:
            s = r[side]
            what = "loss" if r["mode"] == "train" else "sum(logits)"
            print(f"  {side:9s} median {s['median_s']:7.3f} {unit}  min {s['min_s']:7.3f}  "
                  f"{s['tokens_per_s_median']:7.0f} tokens/s (best {s['tokens_per_s_best']:.0f})"
                  f"  {what} first {s['first_last_value'][0]:.4g} last "
                  f"{s['first_last_value'][1]:.4g}", flush=True)
    if "busy" in r:
        b = r["busy"]
        print(f"  busy machine ({b['competitors']} CPU-bound competitor process(es) beside both "
              f"sides; slowdown = busy median / quiet median):", flush=True)
        for side in ("minitune", "torch"):
            if side in b:
                print(f"    {side:9s} median {b[side]['median_s']:7.3f} {unit}  min "
                      f"{b[side]['min_s']:7.3f}  slowdown {b[side]['slowdown']:.2f}x", flush=True)
    if "ratio_median" in r:
        rs = r["ratio_pairs"]
        print(f"  ratio minitune/torch: median of pairs {r['ratio_median']:.2f} "
              f"(pairs {min(rs):.2f}..{max(rs):.2f}; ratio of mins {r['ratio_of_mins']:.2f})"
              f"  torch attention: {r['torch_attn_implementation']}; encoder parity max|diff| "
              f"{r['encoder_max_abs_diff']:.1e}", flush=True)
    else:
        ref = REFERENCE_README[name]
        print(f"  reference (NOT this run; shared/reference/README.md, PyTorch 2.13 + "
              f"transformers 5.24, 2 threads, separate process): median "
              f"{ref['median_s']:.2f} {unit}, min {ref['min_s']:.2f}, peak RSS "
              f"{ref['peak_rss_gib']:.2f} GiB", flush=True)


class Competitors:
    """``n`` CPU-bound processes (a busy loop each) running while the block runs: the other
    work of a shared machine, made reproducible."""

    def __init__(self, n):
        self.n, self.procs = n, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                      for _ in range(self.n)]
        time.sleep(1.0)                       # let the scheduler (and minitune) notice them
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


# --------------------------------------------------------------------------- load time

def load_child(side):
    """In a fresh process: time from_pretrained (imports done first and timed apart: torch +
    transformers for torch; numpy + minitune, imported at the top of this file, for minitune)."""
    t0 = time.perf_counter()
    if side == "torch":
        import torch
        import transformers
        _quiet_transformers()
        torch.set_num_threads(THREADS)
        path = str(mt_model_dir())
        import_s = time.perf_counter() - t0
        t = time.perf_counter()
        transformers.BertForSequenceClassification.from_pretrained(path, num_labels=2)
        return {"import_s": import_s, "load_s": time.perf_counter() - t}
    from minitune.io import load_checkpoint
    from minitune.models.bert import BertConfig
    path = mt_model_dir()
    import_s = time.perf_counter() - T_START          # numpy + minitune, at the top of this file
    t = time.perf_counter()
    BertForSequenceClassification.from_pretrained(MODEL, num_labels=2)
    load_s = time.perf_counter() - t
    # where the time goes, measured again piece by piece (now warm in this process)
    t = time.perf_counter()
    cfg = BertConfig.from_json_file(path / "config.json")
    BertForSequenceClassification(cfg)
    construct_s = time.perf_counter() - t
    t = time.perf_counter()
    load_checkpoint(path)
    read_s = time.perf_counter() - t
    return {"import_s": import_s, "load_s": load_s, "construct_random_init_s": construct_s,
            "read_checkpoint_s": read_s}


def spawn(extra_args):
    cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(THREADS)] + extra_args
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"child {' '.join(extra_args)} failed (rc {p.returncode}):\n"
                           f"{p.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def bench_load(sides, repeats=3):
    res = {}
    for side in sides:
        runs = [spawn(["--_child-load", side]) for _ in range(repeats)]
        res[side] = {"runs": runs, "median_load_s": statistics.median(r["load_s"] for r in runs),
                     "median_import_s": statistics.median(r["import_s"] for r in runs)}
        line = (f"  {side:9s} from_pretrained median {res[side]['median_load_s']:.2f} s "
                f"(runs {', '.join('%.2f' % r['load_s'] for r in runs)}; imports "
                f"{res[side]['median_import_s']:.2f} s, not included)")
        if side == "minitune":
            line += (f"; of which random init of the fresh model "
                     f"~{statistics.median(r['construct_random_init_s'] for r in runs):.2f} s, "
                     f"reading the checkpoint "
                     f"~{statistics.median(r['read_checkpoint_s'] for r in runs):.2f} s")
        print(line, flush=True)
    print(f"  target < 2 s: {'met' if res['minitune']['median_load_s'] < 2 else 'NOT met'}",
          flush=True)
    return res


# --------------------------------------------------------------------------- peak RSS

def rss_child(name, side, attn):
    """In a fresh process: load, 1 warm-up + 2 steps, report peak RSS."""
    mode, head, B, T = CONFIGS[name]
    batch = synthetic_batch(head, B, T, 30522)
    step, _ = (minitune_runner(mode, head, batch) if side == "minitune"
               else torch_runner(mode, head, batch, attn))
    after_load = peak_rss_mib()
    for _ in range(3):
        step()
    return {"peak_rss_mib": peak_rss_mib(), "after_load_mib": after_load}


def bench_rss(names, sides, attn):
    res = {}
    for name in names:
        res[name] = {}
        for side in sides:
            r = spawn(["--_child-rss", name, side, "--torch-attn", attn])
            res[name][side] = r
            print(f"  {name:20s} {side:9s} peak RSS {r['peak_rss_mib']:6.0f} MiB "
                  f"(after loading {r['after_load_mib']:.0f} MiB)", flush=True)
    return res


# --------------------------------------------------------------------------- profile

class OpTimer:
    """Time every Function subclass's forward and backward, by class, by wrapping the
    methods on the classes (this benchmark's process only; minitune itself is unchanged).
    Linear and MatMul also count their floating-point operations."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self.flops = defaultdict(float)
        self.saved = []
        self.current = None

    def __enter__(self):
        for cls in _all_subclasses(Function):
            for phase in ("forward", "backward"):
                if phase in vars(cls):
                    original = vars(cls)[phase]
                    setattr(cls, phase, self._wrap(cls.__name__, phase, original))
                    self.saved.append((cls, phase, original))
        return self

    def __exit__(self, *exc):
        for cls, phase, original in self.saved:
            setattr(cls, phase, original)

    def _wrap(self, name, phase, fn):
        key = (name, phase)

        def timed_method(op, *arrays):
            outer, self.current = self.current, key       # the op class a BLAS call is in
            t = time.perf_counter()
            try:
                out = fn(op, *arrays)
            finally:
                self.current = outer
            self.seconds[key] += time.perf_counter() - t
            self.calls[key] += 1
            self.flops[key] += _flops(name, phase, op, arrays)
            return out
        return timed_method


class GemmCallTimer:
    """Time each BLAS call of minitune's Linear layers (cpu/linear.py ``GEMM``: the library's
    sgemm alone, on whichever pool thread runs it), by form and size. What the profile's op
    classes cannot tell apart: the products themselves against the work around them (bias
    fill, the bias gradient's sums, partial sums, the pool's hand-offs, GELU)."""

    def __init__(self, op_timer=None):
        self.op_timer = op_timer              # its ``current``: the op class each call is in
        self.calls = []             # (form, m, n, k, seconds, op): list.append is atomic
        self.gemm = cpu_linear.GEMM
        self.original = None
        self.recording = True

    @contextlib.contextmanager
    def paused(self):
        """Calls made inside are not recorded (the GEMM rate measured between the steps)."""
        self.recording = False
        try:
            yield
        finally:
            self.recording = True

    def __enter__(self):
        if self.gemm is None:                 # MINITUNE_GEMM=numpy: nothing of ours to time
            return self
        cls = type(self.gemm)
        self.original = original = cls.__call__
        calls = self.calls

        def timed_call(gemm, dtype, trans_a, trans_b, m, n, k, *rest):
            t = time.perf_counter()
            original(gemm, dtype, trans_a, trans_b, m, n, k, *rest)
            if not self.recording:
                return
            form = ("T" if trans_a else "N") + ("T" if trans_b else "N")
            op = self.op_timer.current if self.op_timer is not None else None
            calls.append((form, m, n, k, time.perf_counter() - t, op))
        cls.__call__ = timed_call
        return self

    def __exit__(self, *exc):
        if self.original is not None:
            type(self.gemm).__call__ = self.original

    def summary(self, steps):
        """{(form, m, n, k): [calls, thread-seconds, FLOP]} per step."""
        out = defaultdict(lambda: [0, 0.0, 0.0])
        for form, m, n, k, dt, _ in self.calls:
            r = out[(form, m, n, k)]
            r[0] += 1 / steps
            r[1] += dt / steps
            r[2] += 2.0 * m * n * k / steps
        return dict(out)

    def seconds_by_op(self, steps):
        """{(op class, phase): BLAS thread-seconds per step}."""
        out = defaultdict(float)
        for *_, dt, op in self.calls:
            out[op] += dt / steps
        return dict(out)


def _flops(name, phase, op, arrays):
    """2*M*N*K per matrix product: forward one product, backward one per input needing grad
    (the stacked q/k/v Linear: one forward, two backward; the fused attention: two products
    forward, four backward)."""
    if name in ("Linear", "LinearGELU"):     # LinearGELU: the FFN's first product + GELU
        x, w = arrays[:2] if phase == "forward" else [t.data for t in op.inputs[:2]]
        one = 2.0 * x.size * w.shape[0]
        return one if phase == "forward" else one * sum(
            t.requires_grad for t in op.inputs[:2])
    if name == "StackedLinear":              # x @ [W_q; W_k; W_v]^T; backward gx and gW
        ins = arrays if phase == "forward" else [t.data for t in op.inputs]
        weights = ins[1:1 + (len(ins) - 1) // 2]
        one = 2.0 * ins[0].size * sum(w.shape[0] for w in weights)
        return one if phase == "forward" else 2 * one
    if name == "Attention":                  # q k^T and probs v; backward: four products
        q = arrays[0] if phase == "forward" else op.saved[0]
        B, NH, T, HS = q.shape
        one = 2.0 * B * NH * T * T * HS
        return 2 * one if phase == "forward" else 4 * one
    if name == "MatMul":
        a, b = arrays[:2] if phase == "forward" else [t.data for t in op.inputs[:2]]
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        one = 2.0 * np.prod(batch, dtype=float) * a.shape[-2] * a.shape[-1] * b.shape[-1]
        return one if phase == "forward" else one * sum(t.requires_grad for t in op.inputs)
    return 0.0


def _all_subclasses(cls):
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def kernel_vectors():
    """How wide numba vectorises minitune's kernels: "512-bit" when ``minitune.cpu.wide_vectors``
    set it (AVX-512 CPUs), else "default" (256-bit on those CPUs with MINITUNE_WIDE_VECTORS=0;
    whatever the CPU has elsewhere)."""
    from numba.core import config
    return "512-bit" if (config.CPU_FEATURES or "").endswith("-prefer-256-bit") else "default"


def gemm_ceiling(B, T, H, I, NH, reps=5):  # noqa: E741 (I: intermediate size, as STYLE.md)
    """numpy fp32 GEMM rate (GFLOP/s, median) for the shapes of one step, forward form, with
    this process's BLAS threads; plus the attention's batched (B*NH small) products."""
    rng = np.random.default_rng(0)
    N, HS = B * T, H // NH
    shapes = {f"{N}x{H} @ {H}x{H} (q/k/v/o)": ((N, H), (H, H)),
              f"{N}x{H} @ {H}x{I} (FFN up)": ((N, H), (H, I)),
              f"{N}x{I} @ {I}x{H} (FFN down)": ((N, I), (I, H)),
              f"({B}x{NH}) {T}x{HS} @ {HS}x{T} (QK^T)": ((B, NH, T, HS), (B, NH, HS, T)),
              f"({B}x{NH}) {T}x{T} @ {T}x{HS} (PV)": ((B, NH, T, T), (B, NH, T, HS))}
    out = {}
    for label, (sa, sb) in shapes.items():
        a = rng.standard_normal(sa, dtype=np.float32)
        b = rng.standard_normal(sb, dtype=np.float32)
        flop = 2.0 * np.prod(sa[:-1], dtype=float) * sa[-1] * sb[-1]
        products = {label: lambda: a @ b}
        if len(sa) == 2:
            # minitune's own Linear product (minitune/cpu/linear.py: MKL or OpenBLAS, in row
            # blocks on its pool), where it differs from numpy's: the faster of the two counts
            wt = np.ascontiguousarray(b.T)
            impl = dispatch.implementation("linear", LINEAR_REFERENCE, a, wt)
            if impl is not LINEAR_REFERENCE:
                products[f"{label} minitune {gemm_library()}"] = lambda: impl.forward(a, wt)
        for key, product in products.items():
            product()
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                product()
                ts.append(time.perf_counter() - t)
            out[key] = flop / statistics.median(ts) / 1e9
    return out


def bench_profile(name, steps=3):
    """Per-op-class times of ``steps`` minitune steps (training or forward-only), their FLOPs
    against the measured GEMM rate, and a cProfile of one more step."""
    mode, head, B, T = CONFIGS[name]
    batch = synthetic_batch(head, B, T, 30522)
    step, model = minitune_runner(mode, head, batch)
    inputs = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    c = model.config
    # Two warm-up steps: the first allocates the optimizer's state, and the second still
    # grows the heap (about 10,000 page faults at 32 x 128); from the third on a step
    # allocates nothing new, which is what every step of a real run is like.
    step()
    step()
    phase_s = defaultdict(float)
    fwd_key = "forward (incl. loss)" if mode == "train" else "forward (no grad)"
    # The GEMM rates are measured between the steps (before the first, after each), not once
    # after them all: on a shared machine whose speed drifts, the floor and the step it is
    # compared with are then measured at the same times. Per shape, the median.
    shape_args = (B, T, c.hidden_size, c.intermediate_size, c.num_attention_heads)
    rate_runs = [gemm_ceiling(*shape_args, reps=3)]
    with OpTimer() as timer, GemmCallTimer(timer) as gemm_calls:
        for i in range(steps):
            if i:
                with gemm_calls.paused():
                    rate_runs.append(gemm_ceiling(*shape_args, reps=3))
            # A full garbage collection now, not inside the step: the objects the rate
            # measurement left (and, with transformers imported, some 280,000 others) would
            # otherwise be scanned in the middle of the step, 60-90 ms charged to whichever op
            # ran then (measured: the embeddings'), a pause a training run does not have.
            gc.collect()
            t0 = time.perf_counter()
            if mode == "fwd":
                with mt.no_grad():
                    model(*inputs)
                phase_s[fwd_key] += time.perf_counter() - t0
                continue
            out = model(*inputs, labels=batch["labels"])
            t1 = time.perf_counter()
            out.loss.backward()
            t2 = time.perf_counter()
            step.optimizer.step()
            t3 = time.perf_counter()
            step.optimizer.zero_grad()
            t4 = time.perf_counter()
            phase_s[fwd_key] += t1 - t0
            phase_s["backward"] += t2 - t1
            phase_s["AdamW.step"] += t3 - t2
            phase_s["zero_grad"] += t4 - t3
    per_step = {k: v / steps for k, v in phase_s.items()}
    total = sum(per_step.values())
    ops = sorted(((k, v / steps) for k, v in timer.seconds.items()), key=lambda kv: -kv[1])
    op_total = {p: sum(v for (n, ph), v in ops if ph == p) for p in ("forward", "backward")}
    gemm_flops = sum(timer.flops.values()) / steps
    gemm_s = sum(v for (n, ph), v in ops
                 if n in ("Linear", "LinearGELU", "StackedLinear", "MatMul", "Attention"))
    rate_runs.append(gemm_ceiling(*shape_args, reps=3))
    rates = {k: statistics.median(run[k] for run in rate_runs) for k in rate_runs[0]}

    print(f"profile: minitune {name} (B {B} x T {T}), mean of {steps} steps, threads {THREADS}")
    print(f"  step {total:.3f} s = " + ", ".join(f"{k} {v:.3f}" for k, v in per_step.items()))
    print(f"  outside ops (graph building, autograd loop, Python): forward "
          f"{per_step[fwd_key] - op_total['forward']:.3f} s, backward "
          f"{per_step.get('backward', 0.0) - op_total['backward']:.3f} s")
    print("  per op class (s/step, share of step, calls/step, GFLOP/s for products):")
    for (n, ph), v in ops:
        rate = timer.flops[(n, ph)] / steps / v / 1e9 if timer.flops[(n, ph)] else None
        print(f"    {n:13s} {ph:8s} {v:7.3f} s {100 * v / total:5.1f}%  "
              f"{timer.calls[(n, ph)] // steps:4d} calls"
              + (f"  {rate:6.1f} GFLOP/s" if rate else ""))
    print(f"  matrix products (Linear, LinearGELU incl. its GELU, StackedLinear, MatMul, "
          f"Attention incl. its softmax): "
          f"{gemm_flops:.3g} "
          f"FLOP/step in {gemm_s:.3f} s "
          f"({gemm_flops / gemm_s / 1e9:.1f} GFLOP/s), {100 * gemm_s / total:.0f}% of the step")
    print("  GEMM rate between the steps (numpy, and minitune's Linear), same shapes (forward "
          f"form), median of {len(rate_runs)} measurements, GFLOP/s: "
          + "; ".join(f"{k} {v:.1f}" for k, v in rates.items()))
    best = max(rates.values())
    floor = gemm_flops / best / 1e9
    print(f"  FLOP floor: {gemm_flops:.3g} FLOP at the best rate above ({best:.0f} GFLOP/s) = "
          f"{floor:.3f} s; the step is {total / floor:.1f}x that")
    print(f"  GEMM-bound fraction (FLOP floor / step time): {floor / total:.2f}  (target >= 0.7)")
    # What the products themselves allow: the fraction if every other op, the autograd loop
    # and the optimizer took no time at all. The products run on data the previous op left in
    # memory, not in cache, and below the rate measured above on hot data.
    print(f"  ... with everything but the product ops free: {floor / gemm_s:.2f} (the product "
          f"ops, GELU and softmax included, ran at {100 * floor / gemm_s:.0f}% of the best rate)")

    linear_gemm = gemm_calls.summary(steps)
    if linear_gemm:
        # Where the step's time goes, with the BLAS calls of the Linear layers separated out:
        # their thread-seconds over the threads is the time they hold the step at the least.
        call_s = sum(r[1] for r in linear_gemm.values())
        call_flop = sum(r[2] for r in linear_gemm.values())
        print(f"  the Linear layers' BLAS calls alone ({gemm_library()}, every call timed on its "
              f"thread): {call_flop:.3g} FLOP in {call_s:.3f} thread-s/step = "
              f"{call_s / THREADS:.3f} s of the step at {THREADS} thread(s), "
              f"{call_flop / call_s / 1e9:.0f} GFLOP/s per thread (between the steps, the "
              f"best shape: {best / THREADS:.0f}); everything else: {total - call_s / THREADS:.3f}"
              f" s. A fraction of 0.7 needs the step at {floor / 0.7:.3f} s")
        print("    per form (N/T: operand as stored / transposed) and size, per step: calls, "
              "thread-s, GFLOP/s per thread")
        for (form, m, n, k), (cnt, sec, fl) in sorted(linear_gemm.items(),
                                                     key=lambda kv: -kv[1][1])[:14]:
            print(f"      {form} {m:5d} x {n:5d} x {k:5d}  {cnt:4.0f}  {sec:6.3f}  "
                  f"{fl / sec / 1e9:6.1f}")
        print(f"    per op class: its time, of which the BLAS calls' thread-s / {THREADS} "
              f"(the rest: bias fill and sums, GELU, copies, the pool's hand-offs, a slower "
              f"thread)")
        for key, blas_s in sorted(gemm_calls.seconds_by_op(steps).items(),
                                  key=lambda kv: -kv[1]):
            if key is None:
                continue
            op_s = timer.seconds[key] / steps
            print(f"      {key[0]:13s} {key[1]:8s} {op_s:6.3f} s, BLAS {blas_s / THREADS:6.3f} s, "
                  f"rest {op_s - blas_s / THREADS:6.3f} s")

    prof = cProfile.Profile()
    prof.enable()
    step()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(22)
    print("  cProfile of one step, by own time:")
    print("\n".join("    " + ln for ln in buf.getvalue().splitlines() if ln.strip())[:6000])
    return {"config": name, "steps": steps, "per_step_s": per_step, "step_s": total,
            "op_s": {f"{n}.{ph}": v for (n, ph), v in ops},
            "op_calls": {f"{n}.{ph}": timer.calls[(n, ph)] // steps for (n, ph), _ in ops},
            "gemm_flop_per_step": gemm_flops, "gemm_s_per_step": gemm_s,
            "gemm_bound_fraction": floor / total, "products_only_fraction": floor / gemm_s,
            "gemm_rates_gflops": rates, "cprofile_top": buf.getvalue(),
            "linear_blas_calls": {f"{f} {m}x{n}x{k}": {"calls": c, "thread_s": t, "flop": fl}
                                  for (f, m, n, k), (c, t, fl) in linear_gemm.items()}}


AB_SWITCHES = {
    "affinity": "each pool thread first takes the chunks of its own part of the rows, the part "
                "it wrote in the op before (cpu/threads.py), not the next chunk of one list",
    "prefetch": "the attention's row passes prefetch the next head's rows (cpu/attention.py)",
    "stream": "the attention's probabilities are copied with streaming stores "
              "(cpu/attention.py)",
    "grad_sum": "the engine's sums of two gradients run on the pool (cpu/grad_sum.py)",
    "skip_xhat": "under no_grad LayerNorm writes no xhat (cpu/layer_norm.py; the eval forward: "
                 "--only fwd_seq_b64_l128)",
    "adam_one_op": "AdamW updates all parameters of a group in one parallel op, not one op per "
                   "parameter (cpu/adam.py)",
}


def _set_switch(switch, on, saved):
    """Turn one of AB_SWITCHES on or off (this process only)."""
    from minitune.cpu import adam as cpu_adam, attention as cpu_attention
    from minitune.cpu import layer_norm as cpu_layer_norm
    if switch == "adam_one_op":
        cpu_adam.ONE_OP = on
    elif switch == "skip_xhat":
        cpu_layer_norm.SKIP_XHAT = on
    elif switch == "prefetch":
        cpu_attention.PREFETCH = on
    elif switch == "stream":
        cpu_attention.STREAM = on
    elif switch == "affinity":
        cpu_threads.AFFINITY = on
    elif on:
        cpu.FUSED["grad_sum"] = saved
    else:
        cpu.FUSED.pop("grad_sum", None)


def bench_ab(name, switch, rounds=8, steps=4):
    """One switch of minitune's CPU path on and off, alternating in one process: ``rounds``
    rounds of ``steps`` training steps each way (a garbage collection before each step, as the
    interleaved benchmark). Per round the median step and, per op class, the mean time a step;
    printed: the medians over the rounds, and the median of the per-round ratios on/off."""
    mode, head, B, T = CONFIGS[name]
    batch = synthetic_batch(head, B, T, 30522)
    step, model = minitune_runner(mode, head, batch)
    saved = cpu.FUSED.get("grad_sum")
    step()
    step()
    rows = {True: [], False: []}
    optimizer = getattr(step, "optimizer", None)         # training: AdamW.step is timed too,
    optimizer_s = [0.0]                                  # since it is not an op class
    if optimizer is not None:
        optimizer_step = optimizer.step

        def timed_optimizer_step():
            t = time.perf_counter()
            optimizer_step()
            optimizer_s[0] += time.perf_counter() - t
        optimizer.step = timed_optimizer_step
    try:
        for r in range(rounds):
            for on in ((True, False) if r % 2 == 0 else (False, True)):
                _set_switch(switch, on, saved)
                ts = []
                optimizer_s[0] = 0.0
                with OpTimer() as timer:
                    for _ in range(steps):
                        gc.collect()
                        t = time.perf_counter()
                        step()
                        ts.append(time.perf_counter() - t)
                ops = {k: v / steps for k, v in timer.seconds.items()}
                if optimizer is not None:
                    ops[("AdamW.step", "")] = optimizer_s[0] / steps
                rows[on].append((statistics.median(ts), ops))
    finally:
        _set_switch(switch, True, saved)
        if optimizer is not None:
            optimizer.step = optimizer_step
    print(f"A/B: {switch} -- {AB_SWITCHES[switch]}; {name}, {rounds} rounds of {steps} steps "
          f"each way, threads {THREADS}")
    for on in (True, False):
        med = statistics.median(x[0] for x in rows[on])
        print(f"  {'on ' if on else 'off'}  step median {med:.4f} s  "
              f"(min {min(x[0] for x in rows[on]):.4f})")
    ratio = statistics.median(a[0] / b[0] for a, b in zip(rows[True], rows[False]))
    print(f"  step on/off: median of rounds {ratio:.3f}")
    keys = sorted(rows[True][0][1], key=lambda k: -rows[True][0][1][k])[:12]
    for k in keys:
        on_ms = statistics.median(x[1].get(k, 0.0) for x in rows[True]) * 1e3
        off_ms = statistics.median(x[1].get(k, 0.0) for x in rows[False]) * 1e3
        print(f"    {k[0]:16s} {k[1]:8s}  off {off_ms:7.1f} ms -> on {on_ms:7.1f} ms a step")
    return {"step_ratio": ratio, "on": rows[True], "off": rows[False]}


def bench_probe(name, rounds=4):
    """Why the products run slower inside a training step than between the steps: one probe
    product (the FFN's first Linear, forward and forward + backward, through minitune's Linear
    on arrays of its own) timed three ways -- between the steps with its operands hot, between
    the steps right after a 400 MB pass that evicts them from the caches, and inside the step,
    right after each LinearGELU op. Hot vs cold is what operands fresh from memory cost; cold vs
    inside is what the state of the machine during a step costs (both cores busy throughout)."""
    mode, head, B, T = CONFIGS[name]
    if mode != "train":
        raise SystemExit("--probe needs a training configuration (train_...)")
    batch = synthetic_batch(head, B, T, 30522)
    step, model = minitune_runner(mode, head, batch)
    c = model.config
    N, H, I = B * T, c.hidden_size, c.intermediate_size  # noqa: E741 (as STYLE.md)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H), dtype=np.float32)
    w = rng.standard_normal((I, H), dtype=np.float32)
    b = np.zeros(I, np.float32)
    gy = rng.standard_normal((N, I), dtype=np.float32)
    impl = dispatch.implementation("linear", LINEAR_REFERENCE, x, w)
    flop = 2.0 * N * H * I

    def probe(kind):
        t = time.perf_counter()
        y, saved = impl.forward(x, w, b)
        if kind == "forward + backward":
            impl.backward(gy, saved)
        return time.perf_counter() - t

    kinds = ("forward", "forward + backward")
    times = {(where, k): [] for where in ("hot", "cold", "inside") for k in kinds}
    op = next(cls for cls in _all_subclasses(Function) if cls.__name__ == "LinearGELU")
    original = {ph: vars(op)[ph] for ph in ("forward", "backward")}
    inside = [False]

    def with_probe(fn, kind):
        def method(self, *arrays):
            out = fn(self, *arrays)
            if inside[0]:
                times[("inside", kind)].append(probe(kind))
            return out
        return method

    evict = np.ones(100_000_000, np.float32)
    for k in kinds:
        probe(k)
    step()
    step()
    op.forward = with_probe(original["forward"], "forward")
    op.backward = with_probe(original["backward"], "forward + backward")
    try:
        for _ in range(rounds):
            for k in kinds:
                for _ in range(3):
                    times[("hot", k)].append(probe(k))
                for _ in range(3):
                    evict += 1.0
                    times[("cold", k)].append(probe(k))
            gc.collect()
            inside[0] = True
            step()
            inside[0] = False
    finally:
        op.forward, op.backward = original["forward"], original["backward"]
    print(f"probe: minitune's Linear {N}x{H} @ {H}x{I} (the FFN's first), {THREADS} thread(s), "
          f"inside {name} (after each LinearGELU op) and between its steps; median GFLOP/s:")
    out = {}
    for k in kinds:
        work = (3 if k != "forward" else 1) * flop            # backward: gx and gw
        rate = {where: work / statistics.median(times[(where, k)]) / 1e9
                for where in ("hot", "cold", "inside")}
        out[k] = rate
        print(f"  {k:18s}  operands hot {rate['hot']:6.1f}   evicted first {rate['cold']:6.1f}"
              f"   inside the step {rate['inside']:6.1f}  "
              f"({len(times[('inside', k)])} probes inside)")
    return out


class PoolTimeline:
    """Record every ``parallel_for`` of minitune's CPU ops (cpu/threads.py) in this process:
    when the calling thread hands the op to the pool, when the pool's first helper starts and
    ends its share, when the caller ends its own and when the op returns. Installed by
    replacing the function in each ``minitune.cpu`` module that imported it (this benchmark's
    process only; minitune itself is unchanged). ``op_timer`` (an OpTimer) names the op class
    each call is made in."""

    def __init__(self, op_timer):
        self.op_timer = op_timer
        self.calls = []      # (op, kernel, submit, helper start, helper end, caller end, done)
        self.replaced = []

    def __enter__(self):
        original = cpu_threads.parallel_for
        calls, timer, clock = self.calls, self.op_timer, time.perf_counter

        def parallel_for(kernel, n, *args, grain=1, bounds=None):
            if bounds is None:
                bounds = cpu_threads.chunk_bounds(n, grain)
            if not bounds:
                return 0
            name = getattr(kernel, "__name__", type(kernel).__name__)
            threads = min(cpu_threads.active_threads(), len(bounds))
            errors, started, ended, caller_end = [], [], [], []
            take = cpu_threads.chunk_taker(kernel, bounds, args, threads, errors)

            def job(t):
                if t:
                    started.append(clock())
                take(t)
                (ended if t else caller_end).append(clock())

            t0 = clock()
            cpu_threads.run_with_helpers(job, threads - 1)
            if errors:
                raise errors[0]
            t1 = caller_end[0]
            calls.append((timer.current, name, t0, min(started, default=None),
                          max(ended, default=None), t1, clock()))
            return len(bounds)

        for mod in list(sys.modules.values()):
            if (getattr(mod, "__name__", "").startswith("minitune.cpu")
                    and getattr(mod, "parallel_for", None) is original):
                self.replaced.append((mod, original))
                mod.parallel_for = parallel_for
        return self

    def __exit__(self, *exc):
        for mod, original in self.replaced:
            mod.parallel_for = original


def bench_timeline(name, steps=4):
    """Where the threads of minitune's pool wait during ``steps`` steps (after two warm-up
    steps): per op class, (a) the calling thread's time outside any parallel op, while the
    pool's threads have nothing to do (the autograd loop, Python, numpy calls on one thread),
    charged to the op whose parallel op comes next; (b) how late the first helper thread starts
    its share of a parallel op after the hand-off; (c) how long the calling thread waits for
    the helpers at the op's end."""
    mode, head, B, T = CONFIGS[name]
    batch = synthetic_batch(head, B, T, 30522)
    step, model = minitune_runner(mode, head, batch)
    step()
    step()
    gaps, late, wait, single = (defaultdict(float) for _ in range(4))
    ops = defaultdict(int)
    walls = []
    with OpTimer() as timer, PoolTimeline(timer) as timeline:
        for _ in range(steps):
            gc.collect()
            timeline.calls.clear()
            t_start = time.perf_counter()
            step()
            t_end = time.perf_counter()
            walls.append(t_end - t_start)
            previous = t_start
            for op, kernel, t0, h0, h1, t1, t2 in timeline.calls:
                label = f"{op[0]}.{op[1]}" if op else "(outside ops)"
                gaps[label] += (t0 - previous) / steps
                key = f"{label}: {kernel}"
                ops[key] += 1
                if h0 is None:
                    single[key] += (t2 - t0) / steps
                else:
                    late[key] += (h0 - t0) / steps
                    wait[key] += (t2 - t1) / steps
                previous = t2
            gaps["(after the last parallel op)"] += (t_end - previous) / steps
    print(f"pool timeline: minitune {name} (B {B} x T {T}), threads {THREADS}, {steps} steps "
          f"of {statistics.median(walls):.3f} s (median)")
    parts = [("the caller alone between parallel ops, by the op whose parallel op is next", gaps),
             ("parallel ops with one chunk, on the caller alone", single),
             ("helpers starting late after the hand-off", late),
             ("the caller waiting for the helpers at an op's end", wait)]
    out = {}
    for title, table in parts:
        print(f"  {title}: {1e3 * sum(table.values()):.1f} ms a step")
        for key, v in sorted(table.items(), key=lambda kv: -kv[1])[:10]:
            calls = f"  ({ops[key] // steps} a step)" if key in ops else ""
            print(f"    {key:58s} {1e3 * v:6.2f} ms{calls}")
        out[title] = dict(table)
    return {"config": name, "steps": steps, "step_s": walls, **out}


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2,
                    help="BLAS/OpenMP threads for numpy and torch (default 2)")
    ap.add_argument("--quick", action="store_true", help="fewer timed rounds (3 instead of 5)")
    ap.add_argument("--pairs", type=int, help="timed rounds per configuration (one step per side)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    ap.add_argument("--only", action="append", choices=sorted(CONFIGS),
                    help="run only this configuration (repeatable)")
    ap.add_argument("--no-load", action="store_true", help="skip the from_pretrained timing")
    ap.add_argument("--no-torch", action="store_true", help="minitune only, even with torch")
    ap.add_argument("--torch-attn", default="default", choices=["default", "eager", "sdpa"],
                    help="transformers attention implementation (default: its own default)")
    ap.add_argument("--rss", action="store_true",
                    help="only peak RSS, per side and configuration (one subprocess each)")
    ap.add_argument("--profile", action="store_true",
                    help="only profile one minitune step of train_seq_b32_l64 (or of the first "
                         "--only configuration)")
    ap.add_argument("--profile-steps", type=int, default=3, help="steps averaged by --profile")
    ap.add_argument("--ab", choices=sorted(AB_SWITCHES),
                    help="only an A/B of one switch of minitune's CPU path, on and off in "
                         "turn (train_seq_b32_l128, or the first --only)")
    ap.add_argument("--timeline", action="store_true",
                    help="only where the pool's threads wait during minitune steps: the caller "
                         "alone between parallel ops, late helpers, waits at ops' ends "
                         "(train_seq_b32_l128, or the first --only)")
    ap.add_argument("--probe", action="store_true",
                    help="only the probe product's rate inside a training step and between its "
                         "steps, hot and evicted (train_seq_b32_l128, or the first --only)")
    ap.add_argument("--busy", type=int, default=0, metavar="N",
                    help="after the quiet rounds, run the same rounds again beside N CPU-bound "
                         "competitor processes and report each side's slowdown")
    ap.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    ap.add_argument("--_child-load", dest="child_load", help=argparse.SUPPRESS)
    ap.add_argument("--_child-rss", dest="child_rss", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_load:
        print("RESULT " + json.dumps(load_child(args.child_load)), flush=True)
        return
    if args.child_rss:
        print("RESULT " + json.dumps(rss_child(*args.child_rss, args.torch_attn)), flush=True)
        return
    if args.pairs is None:
        args.pairs = 3 if args.quick else 5

    info = env_info()
    with_torch = torch_available() and not args.no_torch
    out = {"env": info}
    print(f"env: {info['date']} | {info['cpu']} x{info['n_cpus']} | numpy {info['numpy']}"
          + (f" | torch {info['torch']} transformers {info['transformers']}" if with_torch
             else " | torch: not used") + f" | minitune's Linear GEMM: {gemm_library()}"
          f" | kernels' vectors: {kernel_vectors()} | threads {THREADS} | load average "
          f"{info['loadavg_start'][0]:.1f}", flush=True)
    if not with_torch:
        print("note: PyTorch/transformers not importable (or --no-torch): minitune's figures "
              "alone; the reference figures printed with them come from "
              "shared/reference/README.md, not from this run", flush=True)

    sides = ["minitune"] + (["torch"] if with_torch else [])
    if args.profile:
        out["profile"] = bench_profile((args.only or ["train_seq_b32_l64"])[0], args.profile_steps)
    elif args.ab:
        out["ab"] = bench_ab((args.only or ["train_seq_b32_l128"])[0], args.ab)
    elif args.timeline:
        out["timeline"] = bench_timeline((args.only or ["train_seq_b32_l128"])[0])
    elif args.probe:
        out["probe"] = bench_probe((args.only or ["train_seq_b32_l128"])[0])
    elif args.rss:
        print("peak RSS (fresh process per side and configuration, 3 steps):", flush=True)
        out["rss"] = bench_rss(args.only or list(CONFIGS), sides, args.torch_attn)
    else:
        if not args.no_load:
            print("load (fresh process each, median of 3):", flush=True)
            out["load"] = bench_load(sides)
        out["configs"] = {}
        for name in args.only or list(CONFIGS):
            out["configs"][name] = run_config(name, args, with_torch)
            print_config(name, out["configs"][name])
    info["loadavg_end"] = os.getloadavg()
    print(f"load average at the end: {info['loadavg_end'][0]:.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float))
        print(f"wrote {args.json}", flush=True)


if __name__ == "__main__":
    main()
