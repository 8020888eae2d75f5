"""param_groups_with_weight_decay: the BERT recipe's decay exclusions (biases, LayerNorm)."""
import numpy as np

from minitune.nn import Parameter
from minitune.optim import param_groups_with_weight_decay


BERT_NAMES = [
    "bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
    "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
    "bert.embeddings.LayerNorm.bias", "bert.encoder.layer.0.attention.self.query.weight",
    "bert.encoder.layer.0.attention.self.query.bias",
    "bert.encoder.layer.0.attention.output.LayerNorm.weight",
    "bert.encoder.layer.0.output.dense.weight", "bert.encoder.layer.0.output.LayerNorm.bias",
    "bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias",
    "encoder.final_layer_norm.weight",
]


def reference_rule(name):
    """The exclusion rule of the reference scripts, written independently of the optimizer."""
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def test_weight_decay_groups_exclude_bias_and_layernorm():
    named = [(n, Parameter(np.zeros(1))) for n in BERT_NAMES]
    decay, skip = param_groups_with_weight_decay(named, weight_decay=0.01)
    assert decay["weight_decay"] == 0.01 and skip["weight_decay"] == 0.0
    by_id = {id(p): n for n, p in named}
    assert [by_id[id(p)] for p in decay["params"]] == [n for n in BERT_NAMES
                                                       if not reference_rule(n)]
    assert [by_id[id(p)] for p in skip["params"]] == [n for n in BERT_NAMES if reference_rule(n)]
    # Hugging Face's example list selects the same BERT parameters.
    hf = param_groups_with_weight_decay(named[:-1], 0.01, no_decay=("bias", "LayerNorm.weight"))
    assert [id(p) for p in hf[1]["params"]] == [id(p) for p in skip["params"][:-1]]


def test_weight_decay_groups_skip_frozen_parameters():
    frozen = Parameter(np.zeros(1))
    frozen.requires_grad = False
    decay, skip = param_groups_with_weight_decay([("a.weight", frozen), ("a.bias", Parameter(0.0))],
                                                 0.1)
    assert decay["params"] == [] and len(skip["params"]) == 1
