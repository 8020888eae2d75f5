"""GPU (cupy) against CPU (numpy): every op family, a tiny BERT's loss and gradients, and AdamW
training steps give the same numbers on both devices.

Each op case draws its inputs from a seeded numpy Generator, runs once on numpy and once on cupy
copies of the same arrays, and compares the output and the gradient of every input. Gradients are
of sum(y * c) for a fixed random cotangent c (a vector-Jacobian product), so every element of
every gradient is exercised. Sizes are odd, so no kernel sees a multiple of its block size.

Tolerances are per dtype: an element passes when |gpu - cpu| <= atol * scale + rtol * |cpu|, with
scale = max|cpu| of the array, or for the model's gradients and weights the largest over all its
parameters: some gradients are exactly zero in exact arithmetic (the attention key bias: softmax
ignores a constant added to a row of scores), so both devices return pure rounding noise there.
The GPU runs different reduction orders and its own exp/log/erf, so results agree to rounding,
not bit for bit; float32 GELU also differs by design (CPU: a 6.5e-7 erf approximation, GPU: the
library erf). Set MINITUNE_GPU_ERRLOG=<file> to log each comparison's worst error/bound ratio.

This file imports only numpy, pytest and minitune: the GPU machine may lack hypothesis,
tokenizers and safetensors. Without a device every test skips; with REQUIRE_GPU=1 they error
instead (conftest.py's rule, repeated here so that ``pytest --noconftest`` keeps it).
"""
import json
import os

import numpy as np
import pytest

import minitune.functional as F
from minitune import backend, dispatch
from minitune.models.bert import (BertConfig, BertForSequenceClassification,
                                  BertForTokenClassification)
from minitune.optim import AdamW
from minitune.testing import assert_close
from minitune.tensor import Tensor

pytestmark = pytest.mark.gpu

# (rtol, atol as a fraction of max|expected|)
OP_TOL = {np.float32: (2e-5, 2e-6), np.float64: (1e-10, 1e-12)}
MODEL_TOL = {np.float32: (1e-4, 1e-5), np.float64: (1e-10, 1e-12)}
DTYPES = [np.float32, np.float64]


@pytest.fixture(autouse=True, scope="module")
def _require_gpu():
    if not backend.gpu_available():
        if os.environ.get("REQUIRE_GPU") == "1":
            pytest.fail("REQUIRE_GPU=1 but cupy sees no CUDA device (is cupy installed?)",
                        pytrace=False)
        pytest.skip("needs a CUDA device and cupy (minitune.backend.gpu_available() is False)")


# --------------------------------------------------------------------------- comparison

def assert_same(gpu, cpu, tol, what, scale=None):
    """``gpu`` (a cupy array, checked) equals ``cpu`` (numpy) in shape, dtype and value:
    |gpu - cpu| <= atol * scale + rtol * |cpu| with ``tol = (rtol, atol)``; integers exactly.

    ``scale`` (default max|cpu|) is what the absolute tolerance is a fraction of.
    """
    assert backend.device_of(gpu) == "gpu", f"{what}: the GPU run returned a host array"
    c = np.asarray(cpu)
    assert np.isfinite(c).all(), f"{what}: the CPU reference itself is not finite"
    rtol, atol = tol if c.dtype.kind in "fc" else (0.0, 0.0)
    if scale is None:
        scale = float(np.abs(c).max()) if c.size else 0.0
    _log(what, assert_close(gpu, c, rtol=rtol, atol=atol * scale, check_dtype=True, msg=what))


def _log(what, ratio):
    """Append a comparison's worst |error| / bound to $MINITUNE_GPU_ERRLOG (when set)."""
    path = os.environ.get("MINITUNE_GPU_ERRLOG")
    if path:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"test": test, "what": what, "worst_err_over_bound": ratio})
                    + "\n")


# --------------------------------------------------------------------------- op cases

class In:
    """How to make one input of an op case.

    kind: "float" (a leaf Tensor that requires grad, moved to the device), "device" (a constant
    Tensor moved to the device: masks), "device_array" (the same as a bare array), "host" (a
    numpy array on both runs: ids, targets and index arrays, which the op itself must copy to
    the device).
    """

    def __init__(self, shape, kind="float", low=-2.0, high=2.0, make=None):
        self.shape, self.kind, self.low, self.high, self.make = shape, kind, low, high, make

    def draw(self, rng, dtype):
        if self.make is not None:
            return self.make(rng, self.shape)
        return rng.uniform(self.low, self.high, size=self.shape).astype(dtype)


def pos(shape):
    return In(shape, low=0.5, high=2.0)


def away_from_zero(shape):
    return In(shape, make=lambda rng, s: rng.uniform(0.5, 2.0, s) * rng.choice([-1.0, 1.0], s))


def ints(shape, high, ignore=None):
    """Integer ids in [0, high); with ``ignore``, about a quarter of them set to that value."""
    def make(rng, s):
        a = rng.integers(0, high, size=s)
        if ignore is not None:
            a[rng.random(s) < 0.25] = ignore
        return a
    return In(shape, kind="host", make=make)


def mask(shape, kind="device"):
    return In(shape, kind=kind, make=lambda rng, s: rng.random(s) < 0.4)


def ties(shape):
    """Small integers as floats: max() sees exact ties on both devices."""
    return In(shape, make=lambda rng, s: rng.integers(0, 3, size=s).astype(np.float64))


def dropout_fixed(x):
    return F.dropout(x, 0.3, training=True, rng=np.random.default_rng(7))


OP_CASES = {
    # elementwise (broadcasting, python scalars keep the dtype)
    "add_broadcast": (lambda a, b: a + b, [In((5, 7, 3)), In((7, 1))]),
    "sub_broadcast": (lambda a, b: a - b, [In((3, 1, 5)), In((4, 5))]),
    "mul_broadcast": (lambda a, b: a * b, [In((7, 5)), In((5,))]),
    "div": (lambda a, b: a / b, [In((6, 5)), away_from_zero((6, 1))]),
    "pow_scalar": (lambda a: a ** 2.5, [pos((5, 7))]),
    "pow_tensor": (lambda a, b: a ** b, [pos((3, 5)), In((3, 5))]),
    "rpow": (lambda a: 2.0 ** a, [In((4, 3))]),
    "python_scalars": (lambda a: (a * 3.0 - 1.5) / 2.0 + 0.5, [In((9, 5))]),
    "neg": (lambda a: -a, [In((5, 3))]),
    "exp": (lambda a: a.exp(), [In((7, 9))]),
    "log": (lambda a: a.log(), [pos((7, 9))]),
    "sqrt": (lambda a: a.sqrt(), [pos((7, 9))]),
    "tanh": (lambda a: a.tanh(), [In((7, 9))]),
    "compare": (lambda a, b: a > b, [In((5, 7)), In((7,))]),
    # reductions
    "sum_all": (lambda a: a.sum(), [In((5, 7, 3))]),
    "sum_axis": (lambda a: a.sum(axis=1), [In((5, 7, 3))]),
    "sum_axes_keepdims": (lambda a: a.sum(axis=(0, 2), keepdims=True), [In((5, 7, 3))]),
    "mean_all": (lambda a: a.mean(), [In((5, 7, 3))]),
    "mean_last_keepdims": (lambda a: a.mean(axis=-1, keepdims=True), [In((5, 7, 3))]),
    "max_axis": (lambda a: a.max(axis=1), [In((5, 7, 3))]),
    "max_all": (lambda a: a.max(), [In((5, 7, 3))]),
    "max_ties": (lambda a: a.max(axis=-1), [ties((5, 9))]),
    # shape and indexing
    "reshape": (lambda a: a.reshape(7, -1), [In((3, 5, 7))]),
    "transpose": (lambda a: a.transpose(2, 0, 1), [In((3, 5, 7))]),
    "T": (lambda a: a.T, [In((5, 7))]),
    "getitem_basic": (lambda a: a[1:, ::2, None, -1], [In((5, 7, 3))]),
    "getitem_int_array": (lambda a: a[np.array([0, 2, 2, 4, 0])], [In((5, 7))]),
    "getitem_int_array_axis1": (lambda a: a[:, np.array([1, 1, 3])], [In((5, 7))]),
    "getitem_bool_mask": (lambda a, m: a[m], [In((5, 7)), mask((5, 7), kind="host")]),
    "concatenate": (lambda a, b, c: F.concatenate([a, b, c], axis=1),
                    [In((3, 2, 5)), In((3, 5, 5)), In((3, 1, 5))]),
    "stack": (lambda a, b, c: F.stack([a, b, c], axis=1), [In((3, 5)), In((3, 5)), In((3, 5))]),
    # matrix products
    "matmul_2d": (lambda a, b: a @ b, [In((13, 17)), In((17, 11))]),
    "matmul_batched_broadcast": (lambda a, b: a @ b, [In((3, 1, 5, 7)), In((4, 7, 9))]),
    "linear_bias_3d": (lambda x, w, b: F.linear(x, w, b), [In((3, 5, 7)), In((9, 7)), In((9,))]),
    "linear_no_bias": (lambda x, w: F.linear(x, w), [In((11, 7)), In((9, 7))]),
    # neural-network ops
    "gelu": (F.gelu, [In((5, 7, 3), low=-4.0, high=4.0)]),
    "softmax_last": (lambda a: F.softmax(a, axis=-1), [In((3, 5, 7), low=-5, high=5)]),
    "softmax_axis1": (lambda a: F.softmax(a, axis=1), [In((3, 5, 7), low=-5, high=5)]),
    "log_softmax_last": (lambda a: F.log_softmax(a, axis=-1), [In((3, 5, 7), low=-5, high=5)]),
    "log_softmax_axis0": (lambda a: F.log_softmax(a, axis=0), [In((3, 5, 7), low=-5, high=5)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, w, b, eps=1e-12),
                   [In((3, 5, 37)), In((37,)), In((37,))]),
    "layer_norm_eps": (lambda x, w, b: F.layer_norm(x, w, b, eps=1e-5),
                       [In((7, 13)), In((13,)), In((13,))]),
    "embedding_host_ids": (lambda ids, w: F.embedding(ids, w), [ints((3, 7), 29), In((29, 13))]),
    "embedding_device_ids": (lambda ids, w: F.embedding(ids, w),
                             [In((3, 7), kind="device_array",
                                 make=lambda rng, s: rng.integers(0, 29, s)),
                              In((29, 13))]),
    "dropout": (dropout_fixed, [In((5, 7, 3))]),
    "where": (lambda m, a, b: F.where(m, a, b), [mask((5, 7)), In((5, 7)), In((1, 7))]),
    "masked_fill": (lambda x, m: F.masked_fill(x, m, -3.0), [In((5, 7)), mask((5, 1))]),
    # loss
    "cross_entropy_mean_ignore": (lambda z, t: F.cross_entropy(z, t),
                                  [In((13, 7)), ints((13,), 7, ignore=-100)]),
    "cross_entropy_sum_3d": (lambda z, t: F.cross_entropy(z, t, reduction="sum"),
                             [In((3, 5, 7)), ints((3, 5), 7)]),
    "cross_entropy_none": (lambda z, t: F.cross_entropy(z, t, reduction="none"),
                           [In((9, 5)), ints((9,), 5, ignore=-100)]),
    "cross_entropy_device_targets": (
        lambda z, t: F.cross_entropy(z, t),
        [In((11, 3)), In((11,), kind="device", make=lambda rng, s: rng.integers(0, 3, s))]),
}


def run_op(fn, specs, dtype, device, seed):
    """Run one op case on ``device``; return (output, [grad of each float input]) as arrays."""
    rng = np.random.default_rng(seed)
    arrays = [s.draw(rng, dtype) for s in specs]
    args, leaves = [], []
    for s, a in zip(specs, arrays):
        if s.kind == "float":
            t = Tensor(backend.to_device(a.astype(dtype), device), requires_grad=True)
            leaves.append(t)
            args.append(t)
        elif s.kind == "device":
            args.append(Tensor(backend.to_device(a, device)))
        elif s.kind == "device_array":
            args.append(backend.to_device(a, device))
        else:
            args.append(a)
    y = fn(*args)
    if y.requires_grad:
        c = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(y.dtype)
        y.backward(backend.to_device(c, device))
    return y.data, [t.grad for t in leaves]


def _embedding_attention_ce(ids, emb, x, w, b, g, beta, target):
    """An embedding, a linear layer, GELU, layer norm, one self-attention and cross-entropy."""
    h = F.embedding(ids, emb) + x
    h = F.layer_norm(F.gelu(F.linear(h, w, b)), g, beta)
    h = F.softmax(h @ h.transpose(0, 2, 1), axis=-1) @ h
    return F.cross_entropy(h, target)


def _where_join_index(x, y, m):
    """where on a comparison, masked_fill, concatenate, stack, repeated-row indexing, max."""
    h = F.where(x > 0, x, y.tanh()) + F.masked_fill(y, m, 0.0)
    h = F.concatenate([h, (h * h + 1.0).sqrt().log()], axis=0)             # (6, 4)
    h = F.stack([h, h.exp() / (1.0 + h * h)], axis=1)                      # (6, 2, 4)
    h = h[np.array([0, 5, 5, 2])] - h.max(axis=1, keepdims=True)[:4]       # repeated rows
    return (F.log_softmax(h, axis=-1) * (2.0 ** h.mean(axis=0))).sum()


# Longer chains, in float64 only: they accumulate more float32 rounding than one op does.
GRAPH_CASES = {
    "embedding_attention_ce": (_embedding_attention_ce, [
        ints((2, 3), 5), In((5, 4)), In((2, 3, 4)), In((4, 4)), In((4,)), In((4,)), In((4,)),
        ints((2, 3), 4, ignore=-100)]),
    "where_join_index": (_where_join_index, [In((3, 4)), In((3, 4)), mask((4,))]),
}


def _check_case(fn, specs, dtype, name):
    # The fused dropouts draw their masks from counter-based generators of their own (the CPU's
    # hash, the kernel's Philox), not from the host Generator: compare the reference paths on
    # both sides (tests/cpu and tests/cuda check each fused dropout against the reference). A
    # first GPU run compared the CPU's fused dropout with the GPU's reference and failed.
    with dispatch.use_fused(name != "dropout"):
        y_cpu, g_cpu = run_op(fn, specs, dtype, "cpu", seed=1234)
        y_gpu, g_gpu = run_op(fn, specs, dtype, "gpu", seed=1234)
    tol = OP_TOL[dtype]
    assert_same(y_gpu, y_cpu, tol, f"{name} forward")
    assert len(g_gpu) == len(g_cpu)
    for i, (gg, gc) in enumerate(zip(g_gpu, g_cpu)):
        if gc is None:
            assert gg is None, f"{name}: input {i} has a grad on GPU only"
            continue
        assert gg is not None, f"{name}: input {i} has a grad on CPU only"
        assert_same(gg, gc, tol, f"{name} grad of input {i}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", list(OP_CASES))
def test_op_forward_and_backward_match_cpu(case, dtype):
    _check_case(*OP_CASES[case], dtype, case)


@pytest.mark.parametrize("case", list(GRAPH_CASES))
def test_graph_of_several_ops_matches_cpu(case):
    _check_case(*GRAPH_CASES[case], np.float64, case)


def test_mixing_devices_raises():
    """No silent copies of float data: a cupy tensor plus a numpy tensor is an error."""
    a = Tensor(backend.to_device(np.ones(3), "gpu"))
    b = Tensor(np.ones(3))
    with pytest.raises((TypeError, ValueError)):
        a + b


# --------------------------------------------------------------------------- tiny BERT

def tiny_config(dropout, num_labels=3):
    return BertConfig(vocab_size=53, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                      intermediate_size=37, max_position_embeddings=19, type_vocab_size=2,
                      hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                      id2label={i: f"L{i}" for i in range(num_labels)})


def tiny_batch(token_level, seed=5):
    """B=3, T=11 numpy inputs with padded rows (lengths 11, 7, 4)."""
    rng = np.random.default_rng(seed)
    B, T = 3, 11
    mask = (np.arange(T)[None, :] < np.array([11, 7, 4])[:, None]).astype(np.int64)
    batch = {"input_ids": rng.integers(1, 53, (B, T)) * mask,
             "token_type_ids": (np.arange(T)[None, :] >= 5).astype(np.int64) * mask,
             "attention_mask": mask}
    if token_level:
        labels = rng.integers(0, 3, (B, T))
        labels[mask == 0] = -100
    else:
        labels = rng.integers(0, 3, (B,))
    batch["labels"] = labels
    return batch


def make_model(cls, dtype, dropout, device):
    model = cls(tiny_config(dropout), seed=3).astype(dtype)
    return model.to(device)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("cls", [BertForSequenceClassification, BertForTokenClassification],
                         ids=lambda c: c.__name__)
def test_bert_loss_logits_and_all_grads_match_cpu(cls, dtype):
    """Training mode with dropout 0.1: both models draw the same masks (same seed, host RNG;
    the kernels, which draw theirs on the device, are off here: tests/cuda/test_models_kernels.py
    compares them)."""
    batch = tiny_batch(token_level=cls is BertForTokenClassification)
    results = {}
    for device in ("cpu", "gpu"):
        model = make_model(cls, dtype, dropout=0.1, device=device).train()
        with dispatch.use_fused(False):
            out = model(**batch)                # numpy inputs: the model copies them over
            out.loss.backward()
        results[device] = (out, dict(model.named_parameters()))
    (out_c, params_c), (out_g, params_g) = results["cpu"], results["gpu"]
    tol = MODEL_TOL[dtype]
    assert_same(out_g.loss.data, np.asarray(out_c.loss.data), tol, "loss")
    assert_same(out_g.logits.data, out_c.logits.data, tol, "logits")
    grad_scale = max(float(np.abs(p.grad).max()) for p in params_c.values() if p.grad is not None)
    for name, p in params_c.items():
        if p.grad is None:
            assert params_g[name].grad is None, f"{name}: grad on GPU only"
            continue
        assert_same(params_g[name].grad, p.grad, tol, f"grad {name}", scale=grad_scale)


def test_module_to_moves_every_parameter_and_back():
    model = BertForSequenceClassification(tiny_config(0.0), seed=3)
    before = {n: p.data.copy() for n, p in model.named_parameters()}
    model.to("gpu")
    assert all(backend.device_of(p.data) == "gpu" for p in model.parameters())
    model.to("cpu")
    for n, p in model.named_parameters():
        assert isinstance(p.data, np.ndarray), n
        assert np.array_equal(p.data, before[n]), n


def _train(model, batch, steps, lr):
    """``steps`` AdamW steps; returns the losses (floats) and the grads of the last step (host)."""
    opt = AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        losses.append(loss.item())
        grads = {n: backend.asnumpy(p.grad) for n, p in model.named_parameters()
                 if p.grad is not None}
        opt.step()
        opt.zero_grad()
    return losses, grads


@pytest.mark.parametrize("dtype,steps", [(np.float64, 3), (np.float32, 1)],
                         ids=["float64-3steps", "float32-1step"])
def test_adamw_training_steps_match_cpu(dtype, steps):
    """Sequence classification, no dropout: losses and every weight after the AdamW steps.

    Adam's first update is about lr * sign(g). In float32 a gradient element that is zero up to
    rounding (|g| <= 1e-3 max|g| of its tensor) may take either sign on the two devices, so
    such elements may differ by up to 2 lr; every other element must match tightly.
    """
    lr = 1e-3
    batch = tiny_batch(token_level=False)
    runs = {}
    for device in ("cpu", "gpu"):
        model = make_model(BertForSequenceClassification, dtype, dropout=0.0, device=device)
        losses, grads = _train(model, batch, steps, lr)
        runs[device] = (losses, grads, dict(model.named_parameters()))
    (loss_c, grads_c, params_c), (loss_g, _, params_g) = runs["cpu"], runs["gpu"]
    rtol, atol = MODEL_TOL[dtype]
    np.testing.assert_allclose(loss_g, loss_c, rtol=rtol, err_msg="losses per step")
    step_tol = (1e-10, 1e-12) if dtype == np.float64 else (1e-5, 1e-5)
    w_scale = max(float(np.abs(p.data).max()) for p in params_c.values())
    for name, p in params_c.items():
        w_g = params_g[name].data
        if dtype == np.float64:
            assert_same(w_g, p.data, step_tol, f"weight {name} after {steps} steps", w_scale)
            continue
        assert backend.device_of(w_g) == "gpu", name
        w_g, w_c = backend.asnumpy(w_g), p.data
        diff = np.abs(w_g.astype(np.float64) - w_c)
        bad = diff > step_tol[1] * w_scale + step_tol[0] * np.abs(w_c)
        g = np.abs(grads_c.get(name, np.zeros_like(w_c)))
        noise = g <= 1e-3 * g.max()
        assert not (bad & ~noise).any(), (
            f"{name}: {int((bad & ~noise).sum())} weights differ after the step where the "
            f"gradient is not negligible; max |diff| {diff[bad & ~noise].max():.3g}")
        assert (diff[bad] <= 2.05 * lr).all(), f"{name}: a weight moved by more than 2 lr"
