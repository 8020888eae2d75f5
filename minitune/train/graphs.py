"""The Trainer's steps on a GPU as CUDA graphs (``--device cuda``, ``--cuda-graphs``, the
default there): forward, loss, backward and AdamW captured once per padded batch shape and
replayed (minitune/cuda/graph.py explains capture; docs/kernels.md, "The step as one CUDA
graph").

Batches are padded to ``batch_size`` rows and to the next multiple of ``BUCKET`` tokens (at
most ``--max-len``): SST2-A (max length 64) has two shapes, 32 x 32 and 32 x 64, so two
graphs. Padding adds masked keys and ignored targets only: the loss and the gradients are
those of the unpadded batch up to float32 round-off; dropout masks differ (Philox numbers
are laid out by position), as they do between any two seeds.

Inside a captured step nothing reads the device from the host: ids and labels are checked
here on the host batch, and the loss is read after the step.
"""
import sys

import numpy as np

from .. import amp, dispatch
from ..cuda import graph
from ..ops.loss import IGNORE_INDEX
from .callbacks import Callback

BUCKET = 32                      # padded lengths are multiples of this


def graphs_for(trainer):
    """A ``GraphedSteps`` for the trainer's run, or None when its steps run without graphs
    (the CPU, --no-cuda-graphs, or a feature a graph cannot hold: said once on stderr)."""
    args = trainer.args
    if trainer.device != "gpu" or not args.cuda_graphs:
        return None
    reasons = []
    if trainer.dist is not None:
        reasons.append("data parallelism")
    if args.grad_accum_steps > 1:
        reasons.append("--grad-accum-steps > 1")
    if args.max_grad_norm is not None:
        reasons.append("--max-grad-norm (the clipping reads the norm on the host)")
    if any(type(cb).on_gradients is not Callback.on_gradients for cb in trainer.callbacks):
        reasons.append("a callback with on_gradients")
    if reasons:
        print(f"CUDA graphs off: {', '.join(reasons)}", file=sys.stderr)
        return None
    return GraphedSteps(trainer.model, trainer.optimizer, args.batch_size, args.max_len,
                        trainer.tokenizer.pad_token_id)


class GraphedSteps:
    """``step(batch) -> loss``: one optimizer step on the batch, replayed from a graph.

    Args:
        model: a task model on the GPU, in training mode.
        optimizer: its AdamW (the adam kernel, fused ops on).
        rows, max_len: the padded batch is ``rows`` x a bucket length <= ``max_len``.
        pad_id: the tokenizer's padding id.
        enabled: False runs every step eagerly, through the same padding (the A/B switch).
        backend: "cuda", or "emulator": numpy arrays, always eager (the emulator records
            kernel launches only; a model's numpy ops would not be replayed) -- for tests.
    """

    def __init__(self, model, optimizer, rows, max_len, pad_id, enabled=True, backend="cuda"):
        self.model, self.optimizer = model, optimizer
        self.rows, self.max_len, self.pad_id = rows, max_len, pad_id
        self.vocab, self.num_labels = model.config.vocab_size, model.config.num_labels
        params = model.parameters()
        self.graphed = graph.GraphedStep(
            self._step, backend=backend, enabled=enabled and backend == "cuda", rngs=[model.rng],
            pinned=lambda: [p.data for p in params],
            context=lambda: (amp.current(), dispatch.fused_enabled()))

    def step(self, batch):
        """Pad, check, run (replay) the step; returns the loss as a float (read after it)."""
        self._check(batch)
        length = graph.bucket_length(batch["input_ids"].shape[1], BUCKET, self.max_len)
        padded = graph.pad_batch(batch, self.rows, length, self.pad_id, IGNORE_INDEX)
        return float(self.graphed(padded)["loss"])

    def _step(self, inputs):
        """What is captured: gradients from nothing, forward, backward, AdamW."""
        self.optimizer.zero_grad()
        out = self.model(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"],
                         labels=inputs["labels"])
        out.loss.backward()
        self.optimizer.step()
        return {"loss": out.loss.data}

    def _check(self, batch):
        """The checks the ops make on the device, made on the host (a captured step cannot)."""
        ids, labels = batch["input_ids"], np.asarray(batch["labels"])
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab):
            raise ValueError(f"embedding: ids must lie in [0, {self.vocab}), got min "
                             f"{ids.min()} max {ids.max()}")
        wrong = labels[(labels != IGNORE_INDEX) & ((labels < 0) | (labels >= self.num_labels))]
        if wrong.size:
            raise ValueError(f"cross_entropy: targets must be in [0, {self.num_labels}) or "
                             f"ignore_index {IGNORE_INDEX}, got {wrong[:5].tolist()}")
