"""The Trainer's CUDA-graph steps (minitune/train/graphs.py). Without a GPU: when graphs are
used and why not, the host checks that replace the ops' device checks, and the padded step
(graphs off) against the Trainer's own step. On a GPU (marker gpu): replayed steps against
eager ones on the tiny BERT with dropout, and a whole run with and without graphs.
"""
import types

import numpy as np
import pytest

from minitune import backend
from minitune.models import BertForSequenceClassification
from minitune.nn import Dropout
from minitune.optim import AdamW, param_groups_with_weight_decay
from minitune.testing import assert_close
from minitune.train import Callback, TrainArgs, Trainer, train
from minitune.train.graphs import GraphedSteps, graphs_for


def fake_trainer(device="gpu", callbacks=(), dist=None, **args):
    base = dict(cuda_graphs=True, grad_accum_steps=1, max_grad_norm=None)
    base.update(args)
    return types.SimpleNamespace(device=device, dist=dist, callbacks=list(callbacks),
                                 args=types.SimpleNamespace(**base))


class OnGradients(Callback):
    def on_gradients(self, trainer):
        pass


def test_graphs_are_used_only_where_a_graph_can_hold_the_step(capsys):
    assert graphs_for(fake_trainer(device="cpu")) is None
    assert graphs_for(fake_trainer(cuda_graphs=False)) is None
    assert capsys.readouterr().err == ""                    # nothing to say: not asked for
    assert graphs_for(fake_trainer(grad_accum_steps=2, max_grad_norm=1.0,
                                   callbacks=[OnGradients(), Callback()], dist=object())) is None
    err = capsys.readouterr().err
    for reason in ("data parallelism", "--grad-accum-steps > 1", "--max-grad-norm",
                   "a callback with on_gradients"):
        assert reason in err


def tiny(model_dir, seed=0):
    model = BertForSequenceClassification.from_pretrained(model_dir, seed=seed).train()
    return model, AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)


def test_the_host_checks_name_bad_ids_and_labels(tiny_model_dir):
    model, opt = tiny(tiny_model_dir)
    steps = GraphedSteps(model, opt, rows=4, max_len=16, pad_id=0, enabled=False,
                         backend="emulator")
    ok = {"input_ids": np.ones((2, 5), np.int64), "attention_mask": np.ones((2, 5), np.int64),
          "token_type_ids": np.zeros((2, 5), np.int64), "labels": np.array([0, 1])}
    V = model.config.vocab_size
    with pytest.raises(ValueError, match=rf"ids must lie in \[0, {V}\), got min 1 max {V}"):
        steps.step(dict(ok, input_ids=np.where(np.eye(2, 5, dtype=bool), V, 1)))
    with pytest.raises(ValueError, match=r"targets must be in \[0, 2\) or ignore_index -100, "
                                         r"got \[5\]"):
        steps.step(dict(ok, labels=np.array([5, -100])))


def test_the_padded_step_is_the_trainers_step(tiny_model_dir, sentiment_files, tmp_path):
    """Graphs off (CPU), GraphedSteps pads every batch to 8 x 32: the losses and the weights
    follow the Trainer's eager steps on the unpadded batches (dropout off: its masks depend on
    the layout)."""
    run = TrainArgs(task="classify", model=str(tiny_model_dir), warmup_ratio=0.0,
                    train=str(sentiment_files / "train.tsv"), out=str(tmp_path / "run"),
                    epochs=1, batch_size=8, lr=1e-3, max_len=16, progress=False)
    trainer = Trainer(run)
    model, _ = tiny(tiny_model_dir)
    model.load_state_dict(trainer.model.state_dict())
    for m in [m for _, m in model.named_modules()] + [m for _, m in
                                                       trainer.model.named_modules()]:
        if isinstance(m, Dropout):
            m.p = 0.0
    opt = AdamW(param_groups_with_weight_decay(model.named_parameters(), run.weight_decay),
                lr=run.lr)
    steps = GraphedSteps(model, opt, rows=8, max_len=16, pad_id=0, enabled=False,
                         backend="emulator")
    seen, next_batches = [], trainer._next_batches
    trainer._next_batches = lambda: seen.append(next_batches()) or seen[-1]
    losses = []
    for _ in range(len(trainer.loader)):
        logs = trainer.training_step()
        for group in opt.param_groups:                      # the schedule's lr of the step
            group["lr"] = logs["lr"]
        losses.append((steps.step(seen[-1][0]), logs["loss"]))
    assert len(losses) == 5
    for padded, plain in losses:
        assert_close(padded, plain, rtol=1e-5, atol=1e-6)
    ref = dict(trainer.model.named_parameters())
    for name, p in model.named_parameters():
        assert_close(p.data, ref[name].data, rtol=1e-4, atol=1e-5, msg=name)


# --------------------------------------------------------------------------- on a GPU

@pytest.mark.gpu
def test_gpu_replayed_steps_match_eager_steps_with_dropout(tiny_model_dir):
    """Five steps of the tiny BERT (dropout 0.1, kernels on) with graphs and without, from the
    same weights, Generator and batches (two shapes): the same losses and weights to float32
    round-off, and every step after the first of each shape a replay."""
    rng = np.random.default_rng(0)
    batches = []
    for T in (9, 30, 12, 7, 25):
        ids = rng.integers(5, 30, size=(6, T))            # the tiny vocabulary has 32
        batches.append({"input_ids": ids, "attention_mask": np.ones_like(ids),
                        "token_type_ids": np.zeros_like(ids), "labels": rng.integers(0, 2, 6)})
    runs = []
    for enabled in (True, False):
        model, _ = tiny(tiny_model_dir, seed=3)
        model.to("gpu")
        opt = AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        steps = GraphedSteps(model, opt, rows=8, max_len=64, pad_id=0, enabled=enabled)
        losses = [steps.step(b) for b in batches]
        runs.append((losses, {n: backend.asnumpy(p.data) for n, p in model.named_parameters()},
                     steps.graphed))
    (graphed, w_graphed, g), (eager, w_eager, _) = runs
    assert g.disabled_because is None and g.captures == 1 and len(g.graphs) == 1
    assert_close(np.array(graphed), np.array(eager), rtol=1e-5, atol=1e-6)
    for name, w in w_eager.items():
        assert_close(w_graphed[name], w, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.gpu
def test_gpu_training_run_with_and_without_graphs(tiny_model_dir, sentiment_files, tmp_path):
    base = dict(task="classify", model=str(tiny_model_dir), train=str(sentiment_files /
                "train.tsv"), dev=str(sentiment_files / "dev.tsv"), epochs=2, batch_size=8,
                lr=1e-3, max_len=16, progress=False, device="cuda")
    with_graphs = Trainer(TrainArgs(out=str(tmp_path / "g"), **base))
    result = with_graphs.fit()
    assert with_graphs._graphs is not None and with_graphs._graphs.graphed.captures >= 1
    assert with_graphs._graphs.graphed.disabled_because is None
    plain = train(TrainArgs(out=str(tmp_path / "e"), cuda_graphs=False, **base))
    assert abs(result["dev"]["accuracy"] - plain["dev"]["accuracy"]) <= 0.25
    # the GPU run's checkpoint is an ordinary one: it loads on the CPU
    model = BertForSequenceClassification.from_pretrained(tmp_path / "g" / "best")
    assert all(type(p.data) is np.ndarray for p in model.parameters())
