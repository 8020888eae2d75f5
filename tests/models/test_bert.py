"""BERT modules: gradient check of the whole model, Module behaviour, bad input."""
import numpy as np
import pytest

import minitune as mt
from minitune.models import (BertConfig, BertForSequenceClassification, BertForTokenClassification,
                             BertModel)
from minitune.testing import gradcheck


def tiny_config(**kw):
    base = dict(vocab_size=23, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=11, max_position_embeddings=16, type_vocab_size=2,
                id2label={0: "neg", 1: "pos", 2: "neutral"})
    base.update(kw)
    return BertConfig(**base)


def batch(rng, B=3, T=6, V=23):
    ids = rng.integers(1, V, (B, T))
    mask = np.ones((B, T), dtype=np.int64)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    ids[mask == 0] = 0
    types = np.zeros((B, T), dtype=np.int64)
    types[0, 3:] = 1
    return ids, mask, types


def test_sequence_classification_loss_gradcheck_float64():
    """Directional check of d loss / d every parameter, with dropout active under a fixed
    mask (the generator is re-seeded inside fn, so every evaluation draws the same masks)."""
    rng = np.random.default_rng(0)
    model = BertForSequenceClassification(tiny_config(), seed=1).astype(np.float64)
    for p in model.parameters():          # weights large enough that every path matters
        p.data = rng.normal(0, 0.3, p.shape)
    ids, mask, types = batch(rng)
    labels = np.array([0, 2, 1])
    params = model.parameters()

    def loss_fn(*ps):
        model.rng.bit_generator.state = np.random.default_rng(7).bit_generator.state
        return model(ids, mask, types, labels=labels).loss

    assert gradcheck(loss_fn, params, mode="directional", seed=3)


def test_token_classification_loss_gradcheck_float64():
    rng = np.random.default_rng(1)
    model = BertForTokenClassification(tiny_config(), seed=2).astype(np.float64).eval()
    ids, mask, types = batch(rng)
    labels = rng.integers(0, 3, ids.shape)
    labels[mask == 0] = -100
    labels[:, 0] = -100
    assert gradcheck(lambda *ps: model(ids, mask, types, labels=labels).loss,
                     model.parameters(), mode="directional", seed=5)


def test_gradcheck_catches_a_broken_model_gradient():
    """The model-level check can fail: corrupt one gradient path and it must be caught."""
    rng = np.random.default_rng(2)
    model = BertForSequenceClassification(tiny_config(), seed=1).astype(np.float64).eval()
    for p in model.parameters():          # weights large enough that the FFN path matters
        p.data = rng.normal(0, 0.5, p.shape)
    ids, mask, types = batch(rng)
    labels = np.array([0, 2, 1])
    assert gradcheck(lambda *ps: model(ids, mask, types, labels=labels).loss,
                     model.parameters(), mode="directional", seed=3)
    from minitune.ops import nn as ops_nn
    original = ops_nn.LinearGELU.backward            # the feed-forward's linear + GELU
    ops_nn.LinearGELU.backward = lambda self, gy: tuple(
        None if g is None else g * 1.1 for g in original(self, gy))
    try:
        with pytest.raises(AssertionError):
            gradcheck(lambda *ps: model(ids, mask, types, labels=labels).loss,
                      model.parameters(), mode="directional", seed=3)
    finally:
        ops_nn.LinearGELU.backward = original


def test_padding_does_not_change_unpadded_outputs():
    """Extra padding columns must not change the real tokens' states (the mask works)."""
    rng = np.random.default_rng(3)
    model = BertModel(tiny_config(), seed=0).astype(np.float64).eval()
    ids = rng.integers(1, 23, (2, 5))
    short = model(ids, np.ones_like(ids)).last_hidden_state.numpy()
    padded_ids = np.concatenate([ids, np.zeros((2, 4), dtype=ids.dtype)], axis=1)
    padded_mask = np.concatenate([np.ones_like(ids), np.zeros((2, 4), dtype=ids.dtype)], axis=1)
    long = model(padded_ids, padded_mask).last_hidden_state.numpy()
    np.testing.assert_allclose(long[:, :5], short, rtol=1e-12, atol=1e-12)


def test_fully_padded_row_is_finite():
    model = BertForSequenceClassification(tiny_config(), seed=0).eval()
    ids = np.array([[2, 3, 4], [0, 0, 0]])
    mask = np.array([[1, 1, 1], [0, 0, 0]])
    out = model(ids, mask, labels=np.array([0, 1]))
    assert np.all(np.isfinite(out.logits.numpy())) and np.isfinite(out.loss.item())
    out.loss.backward()
    assert all(np.all(np.isfinite(p.grad)) for p in model.parameters() if p.grad is not None)


def test_inputs_may_be_tensors_lists_or_arrays():
    model = BertModel(tiny_config(), seed=0).eval()
    ids = [[1, 2, 3], [4, 5, 6]]
    a = model(np.array(ids)).pooler_output.numpy()
    b = model(mt.tensor(ids)).pooler_output.numpy()
    c = model(ids, attention_mask=[[1, 1, 1], [1, 1, 1]]).pooler_output.numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_dropout_only_in_training_and_reproducible():
    model = BertForSequenceClassification(tiny_config(), seed=0)
    ids = np.array([[1, 2, 3, 4]])
    model.eval()
    e1, e2 = model(ids).logits.numpy(), model(ids).logits.numpy()
    np.testing.assert_array_equal(e1, e2)
    model.train()
    t1 = model(ids).logits.numpy()
    assert not np.allclose(t1, e1)
    m2 = BertForSequenceClassification(tiny_config(), seed=0).train()
    np.testing.assert_array_equal(m2(ids).logits.numpy(), t1)


def test_from_pretrained_returns_eval_mode_as_transformers_does(tmp_path):
    BertForSequenceClassification(tiny_config(), seed=0).save_pretrained(tmp_path)
    model = BertForSequenceClassification.from_pretrained(tmp_path)
    assert not model.training and not model.dropout.training        # dropout off
    ids = np.array([[2, 5, 7, 3]])
    a, b = model(ids).logits.numpy(), model(ids).logits.numpy()
    np.testing.assert_array_equal(a, b)                               # deterministic
    model.train()
    assert model.dropout.training and not np.array_equal(model(ids).logits.numpy(), a)


def test_bad_inputs_give_clear_errors():
    model = BertForSequenceClassification(tiny_config(), seed=0)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(np.ones((1, 17), dtype=np.int64))
    with pytest.raises(ValueError, match="attention_mask shape"):
        model(np.ones((2, 4), dtype=np.int64), attention_mask=np.ones((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="integers"):
        model(np.ones((2, 4)))
    with pytest.raises(ValueError, match="labels shape"):
        model(np.ones((2, 4), dtype=np.int64), labels=np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="embedding"):
        model(np.full((1, 3), 99))


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="multiple"):
        BertConfig(hidden_size=10, num_attention_heads=3)
    with pytest.raises(ValueError, match="gelu"):
        BertConfig(hidden_act="relu")
    c = tiny_config()
    d = c.to_dict()
    assert d["label2id"] == {"neg": 0, "pos": 1, "neutral": 2}
    c2 = BertConfig.from_dict(d)
    assert c2.id2label == c.id2label and c2.hidden_size == 8
