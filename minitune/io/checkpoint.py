"""Find and read the weights of a Hugging Face model directory.

A model directory holds ``config.json`` plus the weights in one of these forms,
tried in this order (the order ``transformers`` prefers):

1. ``model.safetensors``                      one safetensors file
2. ``model.safetensors.index.json``           safetensors shards
3. ``pytorch_model.bin``                      one torch.save pickle
4. ``pytorch_model.bin.index.json``           pickle shards

A shard index is JSON ``{"metadata": {...}, "weight_map": {tensor name: shard file}}``.
"""

from pathlib import Path

from .errors import CheckpointError
from .json_io import key_error, read_json
from .limits import describe
from .safetensors_io import read_safetensors
from .torch_pickle import read_torch_bin

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
TORCH_NAME = "pytorch_model.bin"
TORCH_INDEX_NAME = "pytorch_model.bin.index.json"
CONFIG_NAME = "config.json"

# (file name, is it a shard index, reader of one file), in order of preference.
WEIGHT_FILES = (
    (SAFETENSORS_NAME, False, read_safetensors),
    (SAFETENSORS_INDEX_NAME, True, read_safetensors),
    (TORCH_NAME, False, read_torch_bin),
    (TORCH_INDEX_NAME, True, read_torch_bin),
)

# Weights of other frameworks: named in the error so the user knows why they are ignored.
_UNSUPPORTED_WEIGHTS = ("tf_model.h5", "flax_model.msgpack", "model.ckpt.index", "model.onnx")


def find_checkpoint_file(model_dir):
    """Return the path of the preferred weights file (or shard index) in ``model_dir``.

    Raises:
        CheckpointError: none of ``WEIGHT_FILES`` exists; names the directory, the
            files looked for, and any unsupported weight files found.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: model directory not found")
    for name, _, _ in WEIGHT_FILES:
        if (model_dir / name).is_file():
            return model_dir / name
    looked_for = ", ".join(name for name, _, _ in WEIGHT_FILES)
    message = f"{model_dir}: no weights found; looked for {looked_for}"
    others = [name for name in _UNSUPPORTED_WEIGHTS if (model_dir / name).exists()]
    if others:
        message += f" (found {', '.join(others)}: TensorFlow/Flax/ONNX weights are not supported)"
    raise CheckpointError(message)


def load_checkpoint(model_dir):
    """Read all weights of a model directory into NumPy arrays.

    Args:
        model_dir: directory with one of ``WEIGHT_FILES``.

    Returns:
        dict name -> np.ndarray with the checkpoint's own (Hugging Face) names.

    Raises:
        CheckpointError: no weights, a missing shard, or a corrupt file (the message
            names the file). UnsafeCheckpointError for a malicious pickle.
    """
    path = find_checkpoint_file(model_dir)
    _, is_index, reader = next(entry for entry in WEIGHT_FILES if entry[0] == path.name)
    if is_index:
        return load_sharded(path, reader)
    return reader(path)


def read_shard_index(index_path):
    """Parse a ``*.index.json`` and return its ``weight_map`` (tensor name -> shard file)."""
    index = read_json(index_path, what="shard index")
    if not isinstance(index, dict):
        raise CheckpointError(f"{index_path}: shard index must be a JSON object, got "
                              f"{describe(index)}", path=index_path)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise key_error(index_path, "weight_map", "missing, or not a non-empty object of "
                        "tensor name -> shard file name")
    for name, shard in weight_map.items():
        if not (isinstance(shard, str) and shard not in ("", ".", "..")
                and Path(shard).name == shard and "\0" not in shard
                and len(shard.encode("utf-8", "replace")) <= 255):
            # A shard must be a plain file name in the same directory (no ../ escapes).
            raise key_error(index_path, ("weight_map", name),
                            f"{describe(shard)} is not a file name")
    return weight_map


def load_sharded(index_path, reader):
    """Read every shard named in ``index_path`` and check each tensor is where it says.

    Raises:
        CheckpointError: a shard file is missing (named), or a tensor listed in the
            weight map is not in its shard.
    """
    index_path = Path(index_path)
    weight_map = read_shard_index(index_path)
    shards = list(dict.fromkeys(weight_map.values()))
    missing = [s for s in shards if not (index_path.parent / s).is_file()]
    if missing:
        raise CheckpointError(
            f"{index_path}: shard file(s) missing from {index_path.parent}: {', '.join(missing)}"
        )
    tensors = {}
    for shard in shards:
        shard_tensors = reader(index_path.parent / shard)
        expected = [name for name, s in weight_map.items() if s == shard]
        absent = [name for name in expected if name not in shard_tensors]
        if absent:
            raise CheckpointError(
                f"{index_path.parent / shard}: lacks tensors the index puts there: "
                f"{', '.join(absent[:20])}" + (" ..." if len(absent) > 20 else "")
            )
        tensors.update({name: shard_tensors[name] for name in expected})
    return tensors


def read_config_json(model_dir):
    """Return the parsed ``config.json`` of a model directory as a dict.

    Raises:
        CheckpointError: the file is missing (the message names the full path) or is
            not a JSON object.
    """
    path = Path(model_dir) / CONFIG_NAME
    config = read_json(path, what="model config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: model config must be a JSON object", path=path)
    return config
