"""Module: parameter names, state_dict and strict loading, train/eval, zero_grad, ModuleList."""
import numpy as np
import pytest

import minitune as mt
from minitune.nn import Linear, Module, ModuleList


class TwoLayer(Module):
    def __init__(self):
        self.layers = ModuleList([Linear(3, 4), Linear(4, 2, bias=False)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def test_module_names_state_dict_and_strict_loading():
    m = TwoLayer()
    assert [n for n, _ in m.named_parameters()] == ["layers.0.weight", "layers.0.bias",
                                                    "layers.1.weight"]
    state = {k: v.copy() for k, v in m.state_dict().items()}
    m2 = TwoLayer()
    m2.load_state_dict(state)
    for (_, a), (_, b) in zip(m.named_parameters(), m2.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    bad = dict(state)
    bad.pop("layers.0.bias")
    bad["layers.1.weight"] = np.zeros((3, 3))
    bad["extra.weight"] = np.zeros(2)
    with pytest.raises(ValueError) as e:
        m2.load_state_dict(bad)
    msg = str(e.value)
    assert "layers.0.bias" in msg and "extra.weight" in msg
    assert "layers.1.weight: checkpoint (3, 3) vs model (2, 4)" in msg


def test_train_eval_zero_grad():
    m = TwoLayer()
    assert m.training and m.layers[0].training
    m.eval()
    assert not m.training and not m.layers[1].training
    m(mt.tensor(np.ones((2, 3)))).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    assert len(m.layers) == 2 and m.layers[-1] is m.layers[1]
    with pytest.raises(IndexError):
        m.layers[2]
