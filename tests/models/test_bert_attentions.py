"""BertModel(output_attentions=True) returns transformers' attention probabilities.

Fixture: tests/fixtures/attention_probs.npz, written by tools/make_attention_fixture.py with
transformers (eager attention, eval mode). Tolerances: float64 tiny model 1e-12 absolute
(probabilities are <= 1); float32 MiniLM 1e-5 absolute: float32 rounding of the hidden
states, carried through up to 6 layers (largest difference measured: 4.8e-6, in layer 5;
layer 1 agrees to 4.6e-7).
"""
from pathlib import Path

import numpy as np
import pytest

from minitune import Tokenizer
from minitune.models import BertForSequenceClassification, BertModel

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REF = np.load(FIXTURES / "attention_probs.npz")
TINY = np.load(FIXTURES / "tiny_bert_outputs.npz")


def test_tiny_float64_attentions_equal_transformers():
    model = BertModel.from_pretrained(FIXTURES / "tiny_bert", dtype=np.float64).eval()
    inputs = [TINY[k] for k in ("input_ids", "attention_mask", "token_type_ids")]
    out = model(*inputs, output_attentions=True)
    got = np.stack([a.data for a in out.attentions])
    assert got.shape == REF["tiny/attentions"].shape == (2, 3, 4, 9, 9)
    np.testing.assert_allclose(got, REF["tiny/attentions"], rtol=0, atol=1e-12)
    # the same forward as without attentions, and probabilities that are probabilities
    plain = model(*inputs)
    # (to rounding: the plain forward runs the fused CPU attention, minitune/cpu)
    np.testing.assert_allclose(out.last_hidden_state.data, plain.last_hidden_state.data,
                               rtol=0, atol=1e-12)
    assert plain.attentions is None
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-12)
    keys_dropped = TINY["attention_mask"][None, :, None, None, :] == 0     # (1, B, 1, 1, T)
    assert (np.broadcast_to(keys_dropped, got.shape) <= (got == 0.0)).all()   # exactly 0


@pytest.fixture(scope="module")
def minilm():
    try:
        return BertModel.from_pretrained("all-MiniLM-L6-v2").eval()
    except ValueError as e:
        pytest.skip(f"all-MiniLM-L6-v2 is not installed ({e})")


def test_minilm_float32_attentions_equal_transformers(minilm):
    tok = Tokenizer.from_pretrained("all-MiniLM-L6-v2")
    batch = tok([str(t) for t in REF["minilm/texts"]])
    np.testing.assert_array_equal(batch["input_ids"], REF["minilm/input_ids"])
    out = minilm(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                 output_attentions=True)
    got = np.stack([a.data for a in out.attentions])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, REF["minilm/attentions"], rtol=0, atol=1e-5)


def test_task_models_expose_the_encoder_attentions():
    model = BertForSequenceClassification.from_pretrained(FIXTURES / "tiny_bert",
                                                          dtype=np.float64).eval()
    out = model.bert(TINY["input_ids"], TINY["attention_mask"], TINY["token_type_ids"],
                     output_attentions=True)
    np.testing.assert_allclose(np.stack([a.data for a in out.attentions]),
                               REF["tiny/attentions"], rtol=0, atol=1e-12)
