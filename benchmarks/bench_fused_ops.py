"""Each fused CPU op against its NumPy reference, at MiniLM's shapes (B 32 x T 128).

For every op, forward and backward, the reference (minitune/ops, optim/adam.py) and the fused
implementation (minitune/cpu) run alternately on the same arrays; printed are the minimum
times (ms) over the rounds and the ratio reference/fused -- the op's speed-up. Run with
``--threads 1`` and ``--threads 2`` (the fused ops' thread pool and BLAS; the references are
single-threaded NumPy apart from their matrix products).

    .venv/bin/python benchmarks/bench_fused_ops.py [--threads 2] [--rounds 7]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minitune import cpu  # noqa: E402
from minitune.cpu import threads  # noqa: E402
from minitune.ops import loss as ref_loss  # noqa: E402
from minitune.ops import nn as ref_nn  # noqa: E402
from minitune.optim.adam import adam_update  # noqa: E402

B, T, H, NH, I, V = 32, 128, 384, 12, 1536, 30522


def cases(rng):
    """name -> (reference fn, fused fn), each a no-argument call doing one op's work."""
    f32 = np.float32
    x_i = rng.standard_normal((B, T, I), dtype=f32)
    b_i = rng.standard_normal(I, dtype=f32) * 0.1
    x_h, r_h = (rng.standard_normal((B, T, H), dtype=f32) for _ in range(2))
    w_h, b_h = np.ones(H, f32), np.zeros(H, f32)
    q, k, v = (rng.standard_normal((B, T, NH, H // NH), dtype=f32).transpose(0, 2, 1, 3)
               for _ in range(3))
    mask = np.zeros((B, 1, 1, T), f32)
    mask[: B // 2, ..., T // 2:] = np.finfo(f32).min
    ids = rng.integers(1000, V, (B, T))
    logits, tags = rng.standard_normal((B, T, 9), dtype=f32), rng.integers(0, 9, (B, T))
    F = cpu.FUSED
    out = {}

    def pair(name, ref_fwd, fused_fwd, args, ref_bwd=None, fused_bwd=None, gy=None):
        out[name + " fwd"] = (lambda: ref_fwd(*args), lambda: fused_fwd(*args))
        if ref_bwd is not None:
            saved_r, saved_f = ref_fwd(*args)[1], fused_fwd(*args)[1]
            out[name + " bwd"] = (lambda: ref_bwd(gy, saved_r), lambda: fused_bwd(gy, saved_f))

    pair("gelu (B,T,I)", ref_nn.gelu_forward, F["gelu"].forward, (x_i, b_i),
         ref_nn.gelu_backward, F["gelu"].backward, x_i)
    pair("residual+layer_norm (B,T,H)", ref_nn.layer_norm_forward, F["layer_norm"].forward,
         (x_h, w_h, b_h, 1e-12, r_h), ref_nn.layer_norm_backward, F["layer_norm"].backward, x_h)
    att = (q, k, v, mask, 1 / np.sqrt(H // NH), 0.1)
    out["attention fwd"] = (
        lambda: ref_nn.attention_forward(*att, np.random.default_rng(0)),
        lambda: F["attention"].forward(*att, np.random.default_rng(0)))
    sr = ref_nn.attention_forward(*att, np.random.default_rng(0))[1]
    sf = F["attention"].forward(*att, np.random.default_rng(0))[1]
    gq = np.ascontiguousarray(q)
    out["attention bwd"] = (lambda: ref_nn.attention_backward(gq, sr),
                            lambda: F["attention"].backward(gq, sf))
    pair("dropout 0.1 (B,T,H)", lambda x: ref_nn.dropout_forward(x, 0.1, np.random.default_rng(0)),
         lambda x: F["dropout"].forward(x, 0.1, np.random.default_rng(0)), (x_h,),
         ref_nn.dropout_backward, F["dropout"].backward, x_h)
    pair("cross_entropy (B*T, 9)", ref_loss.cross_entropy_forward, F["cross_entropy"].forward,
         (logits, tags, -100, "mean"), ref_loss.cross_entropy_backward,
         F["cross_entropy"].backward, np.float32(1.0))
    saved = (ids, V)
    out["embedding bwd (V,H)"] = (lambda: ref_nn.embedding_backward(x_h, saved),
                                  lambda: F["embedding"].backward(x_h, saved))
    # AdamW over MiniLM's 22.7 M parameters (as four large and many small arrays)
    sizes = [V * H, I * H, I * H, H * H] + [H] * 100
    state = [[rng.standard_normal(n, dtype=f32) for n in sizes] for _ in range(4)]
    work = np.empty(max(sizes), f32)

    def adam(fn):
        ws, gs, ms, vs = state
        vs_pos = [np.abs(a) for a in vs]
        return lambda: fn(ws, gs, ms, vs_pos, [3] * len(ws), lr=5e-5, betas=(0.9, 0.999),
                          eps=1e-8, weight_decay=0.01, decoupled=True,
                          work=lambda w: work[:w.size].reshape(w.shape))
    out["adamw step (22.7 M params)"] = (adam(adam_update), adam(F["adam"].step))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    threads.set_num_threads(args.threads)
    threads.set_adaptive(False)
    import os
    print(f"threads {args.threads}, load average {os.getloadavg()[0]:.1f}; min over "
          f"{args.rounds} alternating rounds (ms)")
    print(f"{'op':32s} {'reference':>10s} {'fused':>8s} {'speed-up':>9s}")
    for name, (ref, fused) in cases(np.random.default_rng(0)).items():
        ref(), fused()                                  # warm-up (and compile)
        tr, tf = [], []
        for _ in range(args.rounds):
            for fn, ts in ((ref, tr), (fused, tf)):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
        print(f"{name:32s} {1e3 * min(tr):10.2f} {1e3 * min(tf):8.2f} "
              f"{min(tr) / min(tf):8.1f}x  (medians {1e3 * statistics.median(tr):.1f} / "
              f"{1e3 * statistics.median(tf):.1f})", flush=True)


if __name__ == "__main__":
    main()
