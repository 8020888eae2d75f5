"""load_checkpoint: safetensors before .bin, sharded checkpoints (index files), the errors that
name the missing file or tensor, and config.json reading.
"""
import json

import numpy as np
import pytest

import torch_writer as tw  # tests/ is on sys.path (pyproject.toml)
from minitune.io import CheckpointError, load_checkpoint, read_config_json, write_safetensors


def small_state():
    """A few named arrays of different dtypes: what a checkpoint holds."""
    rng = np.random.default_rng(1)
    return {"w": rng.standard_normal((3, 5)).astype(np.float32), "d": rng.standard_normal(4),
            "ids": np.arange(7, dtype=np.int64), "mask": np.array([True, False])}


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
    shards = {f"model-00001-of-00002{suffix}": names[:2],
              f"model-00002-of-00002{suffix}": names[2:]}
    weight_map = {}
    for shard, shard_names in shards.items():
        writer({n: arrays[n] for n in shard_names}, directory / shard)
        weight_map.update({n: shard for n in shard_names})
    (directory / index_name).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return shards


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_sharded_checkpoints(tmp_path, kind):
    arrays = {k: v for k, v in small_state().items()}
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
    arrays = {k: v for k, v in small_state().items() if k in ("w", "d", "ids")}
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
