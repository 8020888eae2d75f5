"""A whole model through the kernels, in CI, without a GPU: the dispatch table for numpy arrays
is pointed at the kernel launchers, so every fused op of the tiny BERT fixture -- embeddings,
attention (head-split views, padding mask), LayerNorm with residual, GELU with bias, dropout,
cross-entropy -- and AdamW runs its CUDA kernel in the CPU emulator. Loss, logits and every
gradient are compared with the reference path, and a training step with dropout must be
reproducible bit for bit.

Tolerances: float32 kernels against the float32 reference path, rtol 1e-4 and atol 1e-5 x
the array's scale (for gradients, the largest gradient of the model).
"""
from pathlib import Path

import numpy as np
import pytest

from minitune import cpu, cuda, dispatch
from minitune.testing import assert_close

pytestmark = pytest.mark.emulator

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def kernels_on_numpy(emulated, monkeypatch):
    """Every kernel serves numpy arrays too (through the emulator), and only the kernels: an op
    without one (dropout_layer_norm) runs its reference, as on a GPU. Returns a call counter."""
    calls = {}
    for name in set(cpu.FUSED) - set(cuda.KERNELS):
        monkeypatch.delitem(cpu.FUSED, name)
    for name, impl in cuda.KERNELS.items():
        counted = dict(vars(impl))
        for fn_name in ("forward", "backward", "step"):
            if fn_name in counted:
                def wrapper(*args, _fn=counted[fn_name], _key=f"{name}.{fn_name}", **kwargs):
                    calls[_key] = calls.get(_key, 0) + 1
                    return _fn(*args, **kwargs)
                counted[fn_name] = wrapper
        monkeypatch.setitem(cpu.FUSED, name, type(impl)(**counted))
    return calls


def run(train, steps=0):
    """The tiny BERT fixture (float32): loss, logits, grads, and the weights after AdamW steps."""
    from minitune.models import BertForSequenceClassification
    from minitune.optim import AdamW
    model = BertForSequenceClassification.from_pretrained(FIXTURES / "tiny_bert", seed=3)
    model.train() if train else model.eval()
    with np.load(FIXTURES / "tiny_bert_outputs.npz") as z:
        batch = {k: z[k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels")}
    batch["attention_mask"][2, 4:] = 0                     # a padded row: the mask matters
    opt = AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.copy() for n, p in model.named_parameters() if p.grad is not None}
    for _ in range(steps):
        opt.step()
        opt.zero_grad()
        model(**batch).loss.backward()
    weights = {n: p.data.copy() for n, p in model.named_parameters()}
    return out, grads, weights


def test_tiny_bert_through_every_kernel_matches_the_reference(kernels_on_numpy):
    out, grads, weights = run(train=False, steps=2)
    for op in ("attention.forward", "attention.backward", "layer_norm.forward",
               "layer_norm.backward", "linear.forward", "linear.backward",
               "linear_gelu.forward", "linear_gelu.backward", "embedding.forward",
               "embedding.backward", "cross_entropy.forward", "cross_entropy.backward",
               "adam.step"):
        assert kernels_on_numpy.get(op), f"{op} did not run: {kernels_on_numpy}"
    with dispatch.use_fused(False):
        ref_out, ref_grads, ref_weights = run(train=False, steps=2)
    assert_close(out.loss.data, ref_out.loss.data, rtol=1e-4, atol=1e-5)
    scale = float(np.abs(ref_out.logits.data).max())
    assert_close(out.logits.data, ref_out.logits.data, rtol=1e-4, atol=1e-5 * scale)
    grad_scale = max(float(np.abs(g).max()) for g in ref_grads.values())
    assert set(grads) == set(ref_grads)
    for name, g in ref_grads.items():
        assert_close(grads[name], g, rtol=1e-4, atol=1e-5 * grad_scale, msg=f"grad {name}")
    # after two AdamW steps. Adam moves a weight by about lr * sign(g): where the gradient is
    # zero up to rounding (the key biases: softmax ignores a constant per row of scores) the
    # two paths' noise may take either sign, so those weights may differ by up to 2 lr a step
    for name, w in ref_weights.items():
        noise = np.abs(ref_grads.get(name, np.zeros_like(w))) <= 1e-5 * grad_scale
        diff = np.abs(weights[name].astype(np.float64) - w)
        assert (diff[noise] <= 2 * 2.05e-3).all(), name
        assert_close(weights[name][~noise], w[~noise], rtol=1e-4, atol=1e-5, msg=f"weight {name}")


def test_a_training_step_with_kernel_dropout_is_reproducible(kernels_on_numpy):
    first, first_grads, _ = run(train=True)
    second, second_grads, _ = run(train=True)
    # per run: the embeddings', the two BertOutputs' of each of the 2 layers (through
    # dropout_layer_norm's reference) and the classifier's dropout
    per_run = 1 + 2 * 2 + 1
    assert kernels_on_numpy.get("dropout.forward") == 2 * per_run
    assert kernels_on_numpy.get("dropout.backward") == 2 * per_run
    assert np.array_equal(first.logits.data, second.logits.data)
    for name, g in first_grads.items():
        assert np.array_equal(g, second_grads[name]), name
    evaluated, _, _ = run(train=False)
    assert not np.array_equal(first.logits.data, evaluated.logits.data)   # dropout did act
