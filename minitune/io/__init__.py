"""Checkpoint input/output: safetensors, PyTorch pickles (without torch), the Hugging
Face BERT name table, model-directory resolution and atomic writes.

See docs/checkpoints.md for the file formats.
"""

from .atomic import atomic_write_bytes, atomic_write_text
from .checkpoint import find_checkpoint_file, load_checkpoint, read_config_json
from .errors import CheckpointError, ConfigError, UnsafeCheckpointError
from .hf_bert import LoadReport, check_config_against_checkpoint, map_bert_state_dict
from .hub import resolve_model_dir
from .safetensors_io import read_safetensors, write_safetensors
from .torch_pickle import read_torch_bin

__all__ = [
    "CheckpointError",
    "ConfigError",
    "LoadReport",
    "UnsafeCheckpointError",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_config_against_checkpoint",
    "find_checkpoint_file",
    "load_checkpoint",
    "map_bert_state_dict",
    "read_config_json",
    "read_safetensors",
    "read_torch_bin",
    "resolve_model_dir",
    "write_safetensors",
]
