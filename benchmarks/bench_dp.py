"""Data-parallel throughput on the SST2-A batches: 1 rank x T threads against N ranks x 1 thread.

Every configuration trains all-MiniLM-L6-v2 (sequence classification, AdamW, dropout on: the
SST2-A recipe) on the same K consecutive global batches of 32 from several places in the
SST2-A epoch, as ``minitune train`` does under ``mpirun`` (each rank its share of a batch, the
gradients summed in flat buckets, every rank stepping its own optimizer). Configurations run
as separate ``mpirun`` jobs, interleaved round by round so that the machine's load hits them
alike. Printed per configuration: the median step time and steps/s, the median per-step time
inside the gradient all-reduce (which includes waiting for the slower rank), the pure
all-reduce time of the buckets (ranks lined up by a barrier first), the bucket sizes; then the
throughput ratio of each configuration to the first one (median over rounds) and the scaling
efficiency (steps/s of N ranks / (N x steps/s of 1 rank x 1 thread)).

    .venv/bin/python benchmarks/bench_dp.py [--rounds 5] [--steps 4] [--configs 1x2,2x1,1x1]
    .venv/bin/python benchmarks/bench_dp.py --configs 2x1,2x1o    # overlap with backward?
    make bench-dp

A trailing "o" (2x1o) starts each bucket's all-reduce during backward, as soon as its
gradients exist (``_GradientReadyHook``), instead of after it: the overlap experiment.

Needs the MPI extra (pip install -e '.[mpi]') and ../shared/data/sst2.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def worker(args):
    """One rank of one configuration: time ``args.steps`` steps at each of ``args.places``
    spots of the epoch; rank 0 prints one JSON line."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from minitune import data as D
    from minitune.distributed import DataParallel, communicator
    from minitune.models import BertForSequenceClassification
    from minitune.optim import AdamW, param_groups_with_weight_decay
    from minitune.ops.loss import IGNORE_INDEX
    from minitune.tokenizer import Tokenizer

    if args.overlap:
        overlap = _GradientReadyHook()        # before the model: it hooks Parameter.grad
    dp = DataParallel(communicator(), bucket_mb=args.bucket_mb)
    tok = Tokenizer.from_pretrained("all-MiniLM-L6-v2")
    raw = D.read_classification(DATA)
    examples = D.subset(D.encode_classification(tok, raw, D.build_label_map(raw.labels), 64),
                        16000, 0)
    loader = D.DataLoader(examples, 32, shuffle=False)
    loader.shard(dp.rank, dp.size)
    model = BertForSequenceClassification.from_pretrained("all-MiniLM-L6-v2", num_labels=2,
                                                          seed=0)
    model.train()
    opt = AdamW(param_groups_with_weight_decay(model.named_parameters(), 0.01), lr=5e-5)
    dp.handshake({"examples": len(examples)})
    dp.share_weights(model)
    dp.seed_dropout(model.rng, 0, 0)

    if args.overlap:
        overlap.attach(dp)

    def step():
        batch = loader.next_batch()
        n_local = int((batch["labels"] != IGNORE_INDEX).sum())
        t0 = time.perf_counter()
        loss = 0.0
        if args.overlap:
            overlap.begin(n_local)
        if n_local:
            out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                        labels=batch["labels"])
            out.loss.backward()
            loss = out.loss.item()
        t1 = time.perf_counter()
        n_total, loss = dp.sync_step(n_local, loss)
        c0 = dp.buckets.comm_seconds
        if args.overlap:
            overlap.finish(n_total)
        else:
            dp.reduce_gradients(n_local, n_total)
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad()
        t3 = time.perf_counter()
        return {"step": t3 - t0, "compute": t1 - t0, "sync": t2 - t1,
                "allreduce": dp.buckets.comm_seconds - c0, "optimizer": t3 - t2}

    places = np.linspace(0, len(loader) - args.steps - 1, args.places).round().astype(int)
    records = []
    for p in places:
        loader.position = int(p)
        step()                                        # warm-up (and first-touch) step
        for _ in range(args.steps):
            records.append(step())
    # the all-reduce alone: ranks lined up by a barrier, then the buckets reduced
    pure = []
    for _ in range(5):
        dp.comm.comm.Barrier() if dp.size > 1 else None
        c0 = dp.buckets.comm_seconds
        for p in model.parameters():
            if p.grad is None:
                p.grad = np.zeros_like(p.data)
        dp.buckets.reduce(1.0)
        pure.append(dp.buckets.comm_seconds - c0)
    if dp.rank == 0:
        med = {k: statistics.median(r[k] for r in records) for k in records[0]}
        print(json.dumps({"ranks": dp.size, "threads": os.environ.get("OPENBLAS_NUM_THREADS"),
                          "median": med, "min_step": min(r["step"] for r in records),
                          "pure_allreduce": statistics.median(pure),
                          "bucket_mb": dp.buckets.sizes_mb}))


class _GradientReadyHook:
    """The overlap experiment (``--configs 2x1o``): start each bucket's all-reduce
    (MPI_Iallreduce) as soon as backward has set the gradients of all its parameters, poke MPI's
    progress at every later gradient, and wait for all at the end. Detects "gradient ready"
    by turning ``Parameter.grad`` into a property (each BERT parameter is used once per
    forward, so its first gradient is its final one): a benchmark-only hook, no engine change.
    """

    def __init__(self):
        from minitune.nn.module import Parameter
        hook = self

        def get(p):
            return p.__dict__.get("_grad")

        def set_(p, value):
            p.__dict__["_grad"] = value
            if value is not None and hook.active:
                hook.ready(p)
        Parameter.grad = property(get, set_)
        self.active = False

    def attach(self, dp):
        from mpi4py import MPI
        self.MPI, self.dp = MPI, dp
        self.bucket_of = {id(p): k for k, (_, slots) in enumerate(dp.buckets.buckets)
                          for p, _, _ in slots}

    def begin(self, n_local):
        self.n_local, self.active, self.requests = n_local, True, {}
        self.pending = [len(slots) for _, slots in self.dp.buckets.buckets]

    def ready(self, p):
        k = self.bucket_of[id(p)]
        self.pending[k] -= 1
        if self.pending[k] == 0:
            self._start(k)
        if self.requests:
            self.MPI.Request.Testall(list(self.requests.values()))

    def _start(self, k):
        buffer, slots = self.dp.buckets.buckets[k]
        for p, offset, size in slots:
            g = p.grad
            buffer[offset:offset + size] = 0 if g is None else g.reshape(-1) * self.n_local
        self.requests[k] = self.dp.comm.comm.Iallreduce(self.MPI.IN_PLACE, buffer,
                                                        op=self.MPI.SUM)

    def finish(self, n_total):
        self.active = False
        for k in range(len(self.pending)):
            if k not in self.requests:                 # a share with nothing to do
                self._start(k)
        t = time.perf_counter()
        self.MPI.Request.Waitall(list(self.requests.values()))
        self.dp.buckets.comm_seconds += time.perf_counter() - t
        for buffer, slots in self.dp.buckets.buckets:
            buffer *= 1.0 / n_total
            for p, offset, size in slots:
                p.grad = buffer[offset:offset + size].reshape(p.data.shape)


def run_config(ranks, threads, overlap, args):
    env = dict(os.environ, **{v: str(threads) for v in THREAD_VARS})
    cmd = [str(Path(sys.executable).parent / "mpirun"), "-n", str(ranks), sys.executable,
           __file__, "--worker", "--steps", str(args.steps), "--places", str(args.places),
           "--bucket-mb", str(args.bucket_mb)] + (["--overlap"] if overlap else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per place")
    ap.add_argument("--places", type=int, default=3, help="places in the epoch")
    ap.add_argument("--bucket-mb", type=float, default=25.0)
    ap.add_argument("--overlap", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--configs", default="1x2,2x1,1x1",
                    help="comma-separated RANKSxTHREADS, with a final o for the all-reduce "
                         "overlapped with backward (2x1o); the first is the baseline")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if not DATA.exists():
        sys.exit(f"needs {DATA} (the shared SST-2 data)")
    configs = [(int(c.split("x")[0]), int(c.split("x")[1].rstrip("o")), c.endswith("o"))
               for c in args.configs.split(",")]
    results = {c: [] for c in configs}
    loads = [os.getloadavg()[0]]
    for r in range(args.rounds):
        order = configs if r % 2 == 0 else configs[::-1]
        for c in order:
            results[c].append(run_config(*c, args))
            loads.append(os.getloadavg()[0])
            res = results[c][-1]
            print(f"round {r}: {_name(c)}: median step "
                  f"{res['median']['step']:.3f} s, all-reduce {res['median']['allreduce']:.3f} s"
                  f" (load {loads[-1]:.1f})", file=sys.stderr, flush=True)
    base = configs[0]
    one = next((c for c in configs if c == (1, 1, False)), None)
    summary = {"load_avg_1min": {"min": min(loads), "median": statistics.median(loads),
                                 "max": max(loads)}, "configs": {}}
    for c in configs:
        steps = [x["median"]["step"] for x in results[c]]
        ratio = statistics.median(b["median"]["step"] / x["median"]["step"]
                                  for x, b in zip(results[c], results[base]))
        entry = {"median_step_s": statistics.median(steps), "steps_per_s":
                 1 / statistics.median(steps), "min_step_s": min(x["min_step"] for x in
                                                                 results[c]),
                 "allreduce_s": statistics.median(x["median"]["allreduce"] for x in results[c]),
                 "pure_allreduce_s": statistics.median(x["pure_allreduce"] for x in results[c]),
                 "compute_s": statistics.median(x["median"]["compute"] for x in results[c]),
                 "optimizer_s": statistics.median(x["median"]["optimizer"] for x in results[c]),
                 "bucket_mb": [round(m, 2) for m in results[c][0]["bucket_mb"]],
                 "throughput_vs_baseline": ratio}
        if one is not None:
            entry["scaling_efficiency"] = statistics.median(
                o["median"]["step"] / (c[0] * x["median"]["step"])
                for x, o in zip(results[c], results[one]))
        summary["configs"][_name(c)] = entry
        print(f"{_name(c)}: {entry['steps_per_s']:.2f} steps/s (median "
              f"step {entry['median_step_s']:.3f} s, min {entry['min_step_s']:.3f}); compute "
              f"{entry['compute_s']:.3f} s, all-reduce {entry['allreduce_s']:.3f} s (pure "
              f"{entry['pure_allreduce_s']:.3f} s), optimizer {entry['optimizer_s']:.3f} s; "
              f"buckets {entry['bucket_mb']} MB; throughput / {_name(base)}: "
              f"{ratio:.2f}" + (f"; scaling efficiency {entry['scaling_efficiency']:.2f}"
                               if one else ""))
    print(f"load average (1 min) during the run: min {min(loads):.1f}, median "
          f"{statistics.median(loads):.1f}, max {max(loads):.1f} on {os.cpu_count()} cores")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


def _name(config):
    ranks, threads, overlap = config
    return f"{ranks} rank(s) x {threads} thread(s)" + (", overlapped" if overlap else "")


if __name__ == "__main__":
    main()
