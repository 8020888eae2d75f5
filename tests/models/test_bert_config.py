"""BertConfig: every config.json value type- and range-checked, errors naming file, line
and key, and sizes checked against the checkpoint before the model is allocated."""

import json
import shutil
from pathlib import Path

import pytest

from minitune import CheckpointError, ConfigError
from minitune.io.limits import MAX_PARAMETERS
from minitune.models import BertConfig, BertForSequenceClassification

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def model_dir_with(tmp_path, **changes):
    model_dir = tmp_path / "model"
    shutil.copytree(FIXTURES / "tiny_bert", model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config.update(changes)
    (model_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    return model_dir


@pytest.mark.parametrize("key, value, message", [
    ("num_attention_heads", 0, "must be >= 1, got 0"),
    ("hidden_size", "32", "must be an integer, got '32'"),
    ("vocab_size", True, "must be an integer, got True"),
    ("vocab_size", 2**70, "larger than any model has"),
    ("num_hidden_layers", 10**6, "must be >= 0 and <= 1024"),
    ("hidden_dropout_prob", 1.0, r"must be in \[0, 1\)"),
    ("layer_norm_eps", -1e-12, "must be >= 0"),
    ("initializer_range", "0.02", "must be a number"),
    ("hidden_act", "relu", "'relu' is not supported"),
    ("position_embedding_type", None, "None is not supported"),
    ("pad_token_id", 99, "not below vocab_size 99"),
    ("id2label", ["a", "b"], "must be an object"),
    ("id2label", {"0": "a", "2": "b"}, 'id2label\\["2"\\]: ids must be 0 .. 1'),
    ("id2label", {"0": ["a"]}, 'id2label\\["0"\\]: a label must be a string'),
    ("num_labels", 10**9, "must be >= 1 and <= 100000"),
    ("model_type", "gpt2", "model_type 'bert'"),
])
def test_bad_values_name_config_json_line_and_key(tmp_path, key, value, message):
    path = model_dir_with(tmp_path, **{key: value}) / "config.json"
    if key == "num_labels":
        config = json.loads(path.read_text())
        del config["id2label"]
        path.write_text(json.dumps(config, indent=2, sort_keys=True))
    with pytest.raises(ConfigError, match=message) as info:
        BertConfig.from_json_file(path)
    lines = path.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.strip().startswith(f'"{key}"'))
    if info.value.key != key:  # a key inside id2label: its own line, further down
        inner = info.value.key.split('"')[1]
        line = next(i for i, text in enumerate(lines[line:], line + 1)
                    if text.strip().startswith(f'"{inner}"'))
    assert str(info.value).startswith(f"{path}:{line}: {key}")
    assert (info.value.path, info.value.line) == (path, line)


def test_valid_config_and_code_errors():
    config = BertConfig.from_json_file(FIXTURES / "tiny_bert" / "config.json")
    assert (config.hidden_size, config.num_labels) == (32, 3)
    with pytest.raises(ConfigError, match="^BertConfig: num_attention_heads: hidden_size 10"):
        BertConfig(hidden_size=10, num_attention_heads=3)
    assert isinstance(ConfigError("x"), (CheckpointError, ValueError))


def test_num_parameters_counts_the_model():
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=24, max_position_embeddings=20)
    model = BertForSequenceClassification(config)
    assert config.num_parameters() == sum(p.data.size for p in model.parameters())


@pytest.mark.parametrize("key, value", [("vocab_size", 10**12), ("intermediate_size", 10**10),
                                        ("hidden_size", 10**6)])
def test_absurd_sizes_are_refused_before_allocation(key, value):
    with pytest.raises(ConfigError, match=f"{key}: .* more than the"):
        BertConfig(**{key: value, "num_attention_heads": 1})
    assert BertConfig(**{key: 1000, "num_attention_heads": 1}).num_parameters() < MAX_PARAMETERS


@pytest.mark.parametrize("key, value, message", [
    ("vocab_size", 98, "vocab_size: 98, but the checkpoint's "
                       "embeddings.word_embeddings.weight has shape \\[99, 32\\]"),
    ("intermediate_size", 10**6, "intermediate_size: 1000000, but"),
    ("num_hidden_layers", 3, "num_hidden_layers: 3, but the checkpoint has 2 layers"),
])
def test_config_is_checked_against_the_checkpoint_shapes(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        BertForSequenceClassification.from_pretrained(model_dir_with(tmp_path, **{key: value}))


def test_a_head_far_larger_than_the_checkpoint_is_refused(tmp_path, monkeypatch):
    from minitune.io import hf_bert

    model_dir = model_dir_with(tmp_path)
    assert BertForSequenceClassification.from_pretrained(model_dir, num_labels=5).config \
        .num_labels == 5
    monkeypatch.setattr(hf_bert, "_NEW_PARAMETER_ALLOWANCE", 1000)
    with pytest.raises(ConfigError, match="checkpoint holds only") as info:
        BertForSequenceClassification.from_pretrained(model_dir, num_labels=100)
    assert info.value.key == "id2label" and "100 labels make a model" in str(info.value)


def test_overrides_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="hidden_dropout_prob"):
        BertForSequenceClassification.from_pretrained(model_dir_with(tmp_path),
                                                      hidden_dropout_prob=2.0)
