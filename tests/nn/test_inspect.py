"""summary and capture: what they report is what the model computes."""
from pathlib import Path

import numpy as np
import pytest

import minitune.functional as F
from minitune.models import BertForSequenceClassification
from minitune.nn import Linear
from minitune.nn.inspect import capture, summary

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IDS = np.array([[2, 17, 45, 9, 3], [2, 8, 3, 0, 0]])
MASK = (IDS != 0).astype(np.int64)


@pytest.fixture
def model():
    return BertForSequenceClassification.from_pretrained(FIXTURES / "tiny_bert",
                                                         dtype=np.float64)


def test_summary_lists_every_module_with_its_output_shape_and_parameters(model):
    s = summary(model, IDS, MASK)
    rows = {name: (kind, shape, n) for name, kind, shape, n in s.rows}
    assert rows["bert.embeddings.word_embeddings"] == ("Embedding", (2, 5, 32), 99 * 32)
    assert rows["bert.encoder.layer.1.intermediate"] == ("BertIntermediate", (2, 5, 37),
                                                         32 * 37 + 37)
    assert rows["bert.pooler"][1] == (2, 32)
    assert rows["classifier"] == ("Linear", (2, 3), 32 * 3 + 3)
    assert rows["bert"][1] == {"last_hidden_state": (2, 5, 32), "pooler_output": (2, 32)}
    assert s.total == sum(p.size for p in model.parameters()) == s.trainable
    names = [r[0] for r in s.rows]
    assert names.index("bert.encoder.layer.0") < names.index("bert.encoder.layer.0.attention")
    text = str(s)
    assert "bert.encoder.layer.0.attention.self.query" in text and f"{s.total:,}" in text
    assert [r[0] for r in summary(model, IDS, depth=1).rows] == ["bert", "dropout", "classifier"]


def test_summary_leaves_mode_rng_and_hooks_as_they_were(model):
    model.train()
    state = dict(model.rng.bit_generator.state)
    summary(model, IDS)
    assert model.training and model.rng.bit_generator.state == state
    assert all(not m.__dict__.get("_forward_hooks") for _, m in model.named_modules())


def test_capture_records_activations_and_gradients_by_name(model):
    model.eval()
    labels = np.array([2, 0])
    with capture(model, "classifier", "bert.encoder.layer.*.output") as cap:
        out = model(IDS, MASK, labels=labels)
        out.loss.backward()
    np.testing.assert_array_equal(cap.activations["classifier"], out.logits.data)
    # d mean-cross-entropy / d logits = (softmax - onehot) / B, in closed form
    p = F.softmax(out.logits, axis=-1).data
    expected = (p - np.eye(3)[labels]) / len(labels)
    np.testing.assert_allclose(cap.grads["classifier"], expected, rtol=1e-12, atol=1e-15)
    assert set(cap.grads) == {"classifier", "bert.encoder.layer.0.output",
                              "bert.encoder.layer.1.output"}
    assert cap.activations["bert.encoder.layer.1.output"].shape == (2, 5, 32)
    assert all(not m.__dict__.get("_forward_hooks") for _, m in model.named_modules())


def test_capture_does_not_change_the_gradients(model):
    model.eval()
    out = model(IDS, MASK, labels=[1, 2])
    out.loss.backward()
    plain = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    with capture(model):
        model(IDS, MASK, labels=[1, 2]).loss.backward()
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.grad, plain[n], err_msg=n)


def test_capture_of_an_intermediate_gradient_matches_finite_differences():
    # layer = Linear; loss = sum(tanh(layer(x))**2): d loss / d layer(x) = 2 t (1 - t^2)
    lin = Linear(3, 4, rng=np.random.default_rng(0), dtype=np.float64)

    class Net(type(lin).__mro__[1]):      # a Module holding the layer
        def __init__(self):
            self.lin = lin

        def forward(self, x):
            return (self.lin(x).tanh() ** 2).sum()

    net = Net()
    x = np.random.default_rng(1).standard_normal((2, 3))
    with capture(net, "lin") as cap:
        net(x).backward()
    t = np.tanh(cap.activations["lin"])
    np.testing.assert_allclose(cap.grads["lin"], 2 * t * (1 - t ** 2), rtol=1e-12)


def test_capture_names_a_pattern_that_matches_nothing(model):
    with pytest.raises(ValueError, match="no module .* matches 'encoder.layer.0'"):
        with capture(model, "encoder.layer.0"):
            pass


def test_patterns_star_is_one_name_part_and_double_star_any():
    from minitune.nn.inspect import _pattern
    assert _pattern("encoder.layer.*.output").match("encoder.layer.3.output")
    assert not _pattern("encoder.layer.*.output").match("encoder.layer.3.attention.output")
    assert _pattern("**.dense").match("bert.encoder.layer.0.output.dense")
    assert not _pattern("pooler").match("pooler.dense")
