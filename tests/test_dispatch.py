"""minitune.dispatch: which implementation runs a fused op, and the switch that turns fused
implementations off."""
import numpy as np
import pytest

import minitune as mt
import minitune.functional as F
from minitune import cpu, dispatch
from minitune.ops import nn as ops_nn
from minitune.testing import assert_close


@pytest.fixture
def fake_cpu_layer_norm(monkeypatch):
    """Register a CPU 'fused' layer_norm that records its calls and runs the reference."""
    calls = []

    def forward(*args):
        calls.append("forward")
        return ops_nn.layer_norm_forward(*args)

    def backward(*args):
        calls.append("backward")
        return ops_nn.layer_norm_backward(*args)

    impl = dispatch.Implementation("layer_norm", supports=lambda x, *rest: x.dtype == np.float32,
                                   forward=forward, backward=backward)
    monkeypatch.setitem(cpu.FUSED, "layer_norm", impl)
    return impl, calls


def ln_inputs(dtype):
    rng = np.random.default_rng(0)
    x = mt.tensor(rng.normal(size=(3, 4)).astype(dtype), requires_grad=True)
    w = mt.tensor(np.ones(4, dtype), requires_grad=True)
    return x, w, mt.tensor(np.zeros(4, dtype), requires_grad=True)


def test_a_registered_implementation_runs_forward_and_backward(fake_cpu_layer_norm):
    impl, calls = fake_cpu_layer_norm
    x, w, b = ln_inputs(np.float32)
    assert dispatch.implementation("layer_norm", ops_nn.LAYER_NORM_REFERENCE, x.data) is impl
    F.layer_norm(x, w, b).sum().backward()
    assert calls == ["forward", "backward"]


def test_unsupported_inputs_and_the_switch_fall_back_to_the_reference(fake_cpu_layer_norm):
    impl, calls = fake_cpu_layer_norm
    ref = ops_nn.LAYER_NORM_REFERENCE
    x64, _, _ = ln_inputs(np.float64)
    assert dispatch.implementation("layer_norm", ref, x64.data) is ref        # supports: no
    x, w, b = ln_inputs(np.float32)
    with dispatch.use_fused(False):
        assert not dispatch.fused_enabled()
        assert dispatch.implementation("layer_norm", ref, x.data) is ref
        F.layer_norm(x, w, b).sum().backward()
    assert dispatch.fused_enabled()
    assert calls == []
    assert dispatch.implementation("no_such_op", ref, x.data) is ref


def test_backward_uses_the_implementation_forward_chose(fake_cpu_layer_norm):
    """Each implementation keeps its own ``saved``: switching between forward and backward
    must not hand one implementation's saved arrays to another."""
    _, calls = fake_cpu_layer_norm
    x, w, b = ln_inputs(np.float32)
    y = F.layer_norm(x, w, b)
    with dispatch.use_fused(False):
        y.sum().backward()
    assert calls == ["forward", "backward"]


def test_the_environment_variable_turns_fused_code_off():
    import subprocess
    import sys
    code = "from minitune import dispatch; print(dispatch.fused_enabled())"
    for value, expected in (("0", "False"), ("1", "True")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={"MINITUNE_FUSED": value, "PATH": ""}, check=True)
        assert out.stdout.strip() == expected


def test_reference_and_fused_paths_agree_on_a_whole_model(fake_cpu_layer_norm):
    """The model's outputs do not depend on the switch (here with a stand-in fused op)."""
    from minitune.models import BertConfig, BertModel
    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16)
    model = BertModel(config, seed=0).eval()
    ids = np.random.default_rng(0).integers(0, 50, size=(2, 7))
    fused = model(ids).last_hidden_state.data
    with dispatch.use_fused(False):
        plain = model(ids).last_hidden_state.data
    # the real fused CPU ops (minitune/cpu) run too: float32 rounding differs, not the result
    assert_close(fused, plain, rtol=1e-5, atol=1e-6)
    assert fake_cpu_layer_norm[1]
