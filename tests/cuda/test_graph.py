"""Training steps as CUDA graphs (minitune/cuda/graph.py), checked without a GPU.

The emulator backend captures the way a CUDA graph does -- it records the kernel launches
(arrays by reference, scalars by value) and a replay runs them again -- so a step made of
kernels (dropout drawing Philox seeds, AdamW on a warm-up/decay schedule) can be replayed on
the CPU and compared bit for bit with the same steps run eagerly: seeds redrawn in order,
Adam's counters and step sizes refreshed, constants uploaded after capture, input buffers
refilled. Also: bucketing and padding (a padded batch gives the unpadded loss and gradients),
capture failures fall back to eager steps having drawn nothing, the switch, one graph per
shape, re-capture when a weight moves. The same steps on a GPU: marker gpu.
"""
import numpy as np
import pytest

from minitune import cpu, cuda
from minitune.cuda import graph
from minitune.nn import Parameter
from minitune.optim import AdamW, linear_schedule_with_warmup
from minitune.testing import assert_close

N = 300                                      # elements of the weight (not a multiple of 8)


# --------------------------------------------------------------------------- padding

@pytest.mark.parametrize("T,step,limit,want", [(1, 32, 128, 32), (32, 32, 128, 32),
                                               (33, 32, 128, 64), (128, 32, 128, 128),
                                               (59, 32, 60, 60), (5, 16, 64, 16)])
def test_bucket_length(T, step, limit, want):
    assert graph.bucket_length(T, step, limit) == want


def test_bucket_length_refuses_a_batch_longer_than_the_limit():
    with pytest.raises(ValueError, match="exceeds the limit 64"):
        graph.bucket_length(65, 32, 64)


def tiny_batch(rng, B=3, T=7, token_labels=False):
    ids = rng.integers(1, 50, size=(B, T))
    mask = np.ones((B, T), dtype=np.int64)
    mask[1, 5:] = 0
    ids[mask == 0] = 0
    labels = rng.integers(0, 3, size=(B, T) if token_labels else B)
    if token_labels:
        labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids),
            "labels": labels}


def test_pad_batch_fills_with_ignored_positions():
    batch = tiny_batch(np.random.default_rng(0), token_labels=True)
    padded = graph.pad_batch(batch, rows=5, length=32, pad_id=0)
    assert padded["input_ids"].shape == (5, 32) and padded["labels"].shape == (5, 32)
    for name, value in (("input_ids", 0), ("attention_mask", 0), ("token_type_ids", 0),
                        ("labels", -100)):
        assert np.array_equal(padded[name][:3, :7], batch[name])
        assert (padded[name][3:] == value).all() and (padded[name][:, 7:] == value).all()
    with pytest.raises(ValueError, match="does not fit"):
        graph.pad_batch(batch, rows=2, length=32, pad_id=0)


@pytest.mark.parametrize("task", ["classify", "ner"])
def test_a_padded_batch_gives_the_loss_and_gradients_of_the_batch(task):
    from minitune.models import BertForSequenceClassification, BertForTokenClassification
    from minitune.models.bert import BertConfig
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=24, max_position_embeddings=40,
                        id2label={0: "a", 1: "b", 2: "c"})
    cls = BertForSequenceClassification if task == "classify" else BertForTokenClassification
    model = cls(config, seed=0).eval()             # dropout off: masks depend on the layout
    batch = tiny_batch(np.random.default_rng(1), token_labels=task == "ner")
    results = []
    for b in (batch, graph.pad_batch(batch, rows=4, length=32, pad_id=0)):
        model.zero_grad()
        out = model(b["input_ids"], b["attention_mask"], b["token_type_ids"],
                    labels=b["labels"])
        out.loss.backward()
        results.append((out.loss.data, {n: p.grad for n, p in model.named_parameters()}))
    (loss, grads), (padded_loss, padded_grads) = results
    assert_close(padded_loss, loss, rtol=1e-5, atol=1e-6)
    scale = max(float(np.abs(g).max()) for g in grads.values())
    for name, g in grads.items():
        assert_close(padded_grads[name], g, rtol=1e-4, atol=1e-6 * scale, msg=name)


# --------------------------------------------------------------------------- emulated graphs

@pytest.fixture
def kernels_on_numpy(emulated, monkeypatch):
    """Dropout and Adam run their kernels (in the emulator) on numpy arrays."""
    for name in ("dropout", "adam"):
        monkeypatch.setitem(cpu.FUSED, name, cuda.KERNELS[name])


class Steps:
    """A weight trained by AdamW (warm-up then decay) on dropout(x): one step = a dropout
    kernel drawing a seed from ``rng``, its output as the gradient, one adam kernel."""

    def __init__(self, fail_under_capture=False):
        self.fail_under_capture = fail_under_capture
        self.rng = np.random.default_rng(7)
        self.w = Parameter(np.linspace(-1, 1, N, dtype=np.float32))
        self.opt = AdamW([self.w], lr=1e-2, weight_decay=0.1)
        self.schedule = linear_schedule_with_warmup(self.opt, 2, 10)
        self.outputs = []

    def fn(self, inputs):
        y, _ = cuda.dropout.forward(inputs["x"], 0.3, self.rng)
        self.w.grad = y.reshape(-1)                         # a view: the same memory
        if self.fail_under_capture:
            self.rng.integers(0, 10, size=5)                # a draw outside the kernels
            if graph.capturing():                           # as CuPy refuses a host read
                raise RuntimeError("the current stream is capturing, so D2H transfers are "
                                   "disallowed\nsecond line")
        self.opt.step()
        return {"y": y}

    def run(self, batches, graphed, **kwargs):
        step = graph.GraphedStep(self.fn, backend="emulator", rngs=[self.rng],
                                 pinned=lambda: [self.w.data], **kwargs) if graphed else None
        for batch in batches:
            out = step(batch) if graphed else self.fn(batch)
            self.outputs.append((out["y"].copy(), self.w.data.copy()))
            self.schedule.step()
        return step


def batches(n, size=(N,), seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(size=size).astype(np.float32)} for _ in range(n)]


def assert_same_run(a, b):
    assert len(a.outputs) == len(b.outputs)
    for i, ((ya, wa), (yb, wb)) in enumerate(zip(a.outputs, b.outputs)):
        assert np.array_equal(ya, yb), f"step {i}: dropout output"
        assert np.array_equal(wa, wb), f"step {i}: weights"
    assert a.rng.bit_generator.state == b.rng.bit_generator.state
    assert a.opt.state[id(a.w)]["step"] == b.opt.state[id(b.w)]["step"]


@pytest.mark.emulator
def test_replays_are_the_eager_steps_bit_for_bit(kernels_on_numpy):
    eager, graphed = Steps(), Steps()
    eager.run(batches(6), graphed=False)
    step = graphed.run(batches(6), graphed=True)
    assert step.captures == 1 and len(step.graphs) == 1 and step.disabled_because is None
    assert_same_run(graphed, eager)
    masks = [y != 0 for y, _ in graphed.outputs]
    assert not np.array_equal(masks[2], masks[3])          # each replay drew its own seed
    lrs = np.diff([w for _, w in graphed.outputs], axis=0)
    assert not np.allclose(lrs[2], lrs[4])                  # and followed the schedule


@pytest.mark.emulator
def test_capture_itself_draws_nothing_and_counts_no_step(kernels_on_numpy):
    s = Steps()
    s.run(batches(1), graphed=False)                        # Adam's state exists
    before = s.rng.bit_generator.state
    step = graph.GraphedStep(s.fn, backend="emulator")
    captured = step._capture(batches(1)[0])
    assert s.rng.bit_generator.state == before
    assert s.opt.state[id(s.w)]["step"] == 1
    assert len(captured.capture.seed_rngs) == 1 and captured.capture.scalar_count == 3


@pytest.mark.emulator
def test_one_graph_per_shape(kernels_on_numpy):
    eager, graphed = Steps(), Steps()
    mixed = [b for pair in zip(batches(4), batches(4, (2, N // 2), seed=1)) for b in pair]
    eager.run(mixed, graphed=False)
    step = graphed.run(mixed, graphed=True)
    assert step.captures == 2 and len(step.graphs) == 2
    assert_same_run(graphed, eager)


@pytest.mark.emulator
def test_the_switch_runs_every_step_eagerly(kernels_on_numpy):
    eager, switched = Steps(), Steps()
    eager.run(batches(4), graphed=False)
    step = switched.run(batches(4), graphed=True, enabled=False)
    assert step.captures == 0 and not step.graphs
    assert_same_run(switched, eager)


@pytest.mark.emulator
def test_a_failed_capture_draws_nothing_and_runs_eagerly(kernels_on_numpy, capsys):
    """A step that reads a device value on the host while capturing: the capture fails after
    a seed slot was taken and the Generator drew; the step then runs eagerly with the
    Generator as it was, and graphs stay off."""
    eager, graphed = Steps(fail_under_capture=True), Steps(fail_under_capture=True)
    eager.run(batches(4), graphed=False)
    step = graphed.run(batches(4), graphed=True)
    assert step.captures == 0 and not step.enabled
    assert step.disabled_because == ("RuntimeError: the current stream is capturing, so D2H "
                                     "transfers are disallowed")
    assert "CUDA graphs off" in capsys.readouterr().err
    assert_same_run(graphed, eager)


@pytest.mark.emulator
def test_a_moved_weight_is_captured_again(kernels_on_numpy):
    s = Steps()
    step = graph.GraphedStep(s.fn, backend="emulator", pinned=lambda: [s.w.data])
    for batch in batches(3):
        step(batch)
    assert step.captures == 1
    s.w.data = s.w.data.copy()                              # e.g. load_state_dict
    for batch in batches(3, seed=1):
        step(batch)
    assert step.captures == 2
    table = cuda.adam._tables                               # the new weight's table is used
    assert any(s.w.data.ctypes.data in np.asarray(t[0]).tolist() for t in table.values())


@pytest.mark.emulator
def test_adam_refuses_to_be_captured_without_its_state_or_its_kernel(emulated, monkeypatch):
    w = Parameter(np.ones(5, np.float32))
    opt = AdamW([w], lr=0.1)
    w.grad = np.ones(5, np.float32)

    def fn(inputs):
        opt.step()
        return {}
    with pytest.raises(graph.CaptureError, match="state must exist before"):
        graph.GraphedStep(fn, backend="emulator")._capture({})
    opt.step()                                              # state now exists; reference path
    with pytest.raises(graph.CaptureError, match="needs the adam kernel"):
        graph.GraphedStep(fn, backend="emulator")._capture({})


def test_device_scalars_outside_a_capture_is_an_error():
    with pytest.raises(RuntimeError, match="being captured"):
        graph.device_scalars(1, lambda: [0.0])


class FixedSeed:
    """A stand-in Generator whose one draw is ``seed``."""

    def __init__(self, seed):
        self.seed = seed

    def integers(self, *args, **kwargs):
        return np.uint64(self.seed)


@pytest.mark.emulator
def test_kernels_read_a_captured_steps_seed_from_its_slot(emulated, monkeypatch):
    """Dropout and attention given a seed slot (as under capture: a placeholder seed of 0 in
    the arguments) draw the masks of that seed, forward and backward."""
    from kernel_helpers import attention_inputs
    seed = 0x0123_4567_89AB_CDEF
    rng = np.random.default_rng(3)
    x, gy = (rng.normal(size=(5, 37)).astype(np.float32) for _ in range(2))
    q, k, v, bias, gout = attention_inputs(4, 2, 2, 13, 8)
    results = {}
    for mode in ("slot", "plain"):
        if mode == "slot":
            monkeypatch.setattr(graph, "device_seed", lambda rng: (
                np.uint64(0), np.array([seed], dtype=np.uint64)))
        y, saved = cuda.dropout.forward(x, 0.3, FixedSeed(seed))
        o, asaved = cuda.attention.forward(q, k, v, bias, 0.35, 0.2, FixedSeed(seed))
        results[mode] = (y, cuda.dropout.backward(gy, saved), o,
                         *cuda.attention.backward(gout, asaved))
        monkeypatch.undo()
    assert results["slot"][0].any() and not results["slot"][0].all()
    for a, b in zip(results["slot"], results["plain"]):
        assert np.array_equal(a, b)
