"""A whole training step of a small BERT with the fused CPU ops and with the references only:
the same loss, logits, gradients and updated weights (float32 within tolerance, float64 to
rounding), dropout on -- the references given the fused path's masks (cpu_helpers.FusedDraws),
since the two draw them differently (minitune/cpu/dropout.py)."""
import numpy as np
import pytest

from minitune import cpu, dispatch
from minitune.models import BertConfig, BertForSequenceClassification, BertForTokenClassification
from minitune.models.bert import BertOutput
from minitune.optim import AdamW, param_groups_with_weight_decay
from cpu_helpers import TOL, FusedDraws


def small_config():
    return BertConfig(vocab_size=97, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                      intermediate_size=37, max_position_embeddings=40, type_vocab_size=2,
                      id2label={0: "a", 1: "b", 2: "c"})


def one_step(cls, dtype, fused):
    rng = np.random.default_rng(0)
    model = cls(small_config(), seed=3).astype(dtype).train()
    opt = AdamW(param_groups_with_weight_decay(model.named_parameters(), 0.01), lr=1e-3)
    B, T = 5, 19
    ids = rng.integers(1, 97, (B, T))
    mask = (np.arange(T)[None] < rng.integers(3, T + 1, B)[:, None]).astype(np.int64)
    labels = rng.integers(0, 3, B if cls is BertForSequenceClassification else (B, T))
    if not fused:                       # every Dropout's Generator: the model's, as seeds
        draws = FusedDraws(model.rng)
        for _, m in model.named_modules():
            if "rng" in vars(m):
                m.rng = draws
    with dispatch.use_fused(fused):
        out = model(ids, mask, labels=labels)
        out.loss.backward()
        grads = {n: p.grad.copy() for n, p in model.named_parameters()}
        opt.step()
    weights = {n: p.data.copy() for n, p in model.named_parameters()}
    return out.loss.item(), out.logits.data, grads, weights


@pytest.mark.parametrize("cls", [BertForSequenceClassification, BertForTokenClassification])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_training_step_is_the_same_with_and_without_fused_ops(cls, dtype):
    assert set(cpu.FUSED) >= {"attention", "layer_norm", "gelu", "cross_entropy", "embedding",
                              "adam", "dropout"}
    loss, logits, grads, weights = one_step(cls, dtype, fused=True)
    loss_ref, logits_ref, grads_ref, weights_ref = one_step(cls, dtype, fused=False)
    tol = TOL[dtype]
    assert loss == pytest.approx(loss_ref, rel=tol["rtol"], abs=tol["atol"])
    np.testing.assert_allclose(logits, logits_ref, rtol=tol["rtol"], atol=tol["atol"])
    # gradients are compared on the scale of the largest one: some are rounding noise around
    # an exact 0 (the key bias: softmax ignores a constant added to a row of scores)
    scale = max(np.abs(g).max() for g in grads_ref.values())
    for name in grads_ref:
        np.testing.assert_allclose(grads[name], grads_ref[name], rtol=0,
                                   atol=50 * tol["rtol"] * scale, err_msg=name)
        np.testing.assert_allclose(weights[name], weights_ref[name], rtol=tol["rtol"],
                                   atol=tol["atol"], err_msg=name)


def unfused_bert_output(self, h, residual):
    """BertOutput.forward before its dropout was fused into the LayerNorm: two ops."""
    return self.LayerNorm(self.dropout(self.dense(h)), residual)


def train_steps(dtype, steps=3):
    """Losses and final weights of a few AdamW steps of a small BERT, hidden dropout on (H 30:
    rows not a multiple of the vector width, nor of the mask's four elements per hash)."""
    config = BertConfig(vocab_size=97, hidden_size=30, num_hidden_layers=2,
                        num_attention_heads=3, intermediate_size=37, max_position_embeddings=40,
                        type_vocab_size=2, id2label={0: "a", 1: "b", 2: "c"},
                        hidden_dropout_prob=0.3)
    model = BertForTokenClassification(config, seed=5).astype(dtype).train()
    opt = AdamW(param_groups_with_weight_decay(model.named_parameters(), 0.01), lr=1e-3)
    rng = np.random.default_rng(1)
    B, T, losses = 4, 13, []
    for _ in range(steps):
        ids = rng.integers(1, 97, (B, T))
        mask = (np.arange(T)[None] < rng.integers(3, T + 1, B)[:, None]).astype(np.int64)
        out = model(ids, mask, labels=rng.integers(0, 3, (B, T)))
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(out.loss.data.copy())
    return losses, {n: p.data.copy() for n, p in model.named_parameters()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "references"])
def test_training_with_dropout_inside_layer_norm_is_bitwise_the_two_ops_apart(
        dtype, fused, monkeypatch):
    """BertOutput's LN(dropout(dense(h)) + residual) as one op (dropout_layer_norm) trains to
    exactly the bits of the Dropout module followed by the LayerNorm module: the same seeds
    drawn from the model's Generator, the same masks and the same arithmetic -- with the
    fused CPU code, and with every op on its reference (MINITUNE_FUSED=0)."""
    impl, calls = cpu.FUSED["dropout_layer_norm"], []
    for name in ("forward", "backward"):
        fn = getattr(impl, name)
        monkeypatch.setattr(impl, name, lambda *a, fn=fn, name=name: (calls.append(name),
                                                                     fn(*a))[1])
    with dispatch.use_fused(fused):
        losses, weights = train_steps(dtype)
        # 2 per layer and step, each way: the fused kernel ran (or, references only, did not)
        assert len(calls) == (2 * 2 * 3 * 2 if fused else 0)
        monkeypatch.setattr(BertOutput, "forward", unfused_bert_output)
        losses_apart, weights_apart = train_steps(dtype)
    assert len(calls) == (2 * 2 * 3 * 2 if fused else 0)          # none with the ops apart
    assert all(np.array_equal(a, b) for a, b in zip(losses, losses_apart)), (losses,
                                                                            losses_apart)
    for name, w in weights.items():
        assert w.dtype == weights_apart[name].dtype
        assert np.array_equal(w, weights_apart[name]), name
