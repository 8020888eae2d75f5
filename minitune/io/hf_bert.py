"""The name table between Hugging Face BERT checkpoints and minitune BERT models.

minitune's parameter names *are* Hugging Face's (``encoder.layer.3.attention.self.query.
weight``; Linear weights are (out, in) as in torch, so nothing is transposed). What
differs between checkpoints is:

* the ``bert.`` prefix: task models (``BertForSequenceClassification``...) keep the
  encoder under ``bert.``, a bare ``BertModel`` does not. Either kind of checkpoint
  may be loaded into either kind of model, so the prefix is stripped and re-added;
* legacy names from TensorFlow-era checkpoints (``LayerNorm.gamma``/``beta``);
* entries the model does not use: buffers (``embeddings.position_ids``), the
  pre-training heads (``cls.*``) and other tasks' heads.

Everything is in the tables below; ``map_bert_state_dict`` applies them and checks that
no key is missing or unexpected and that every shape matches, listing all offenders.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CheckpointError, ConfigError
from .json_io import key_error

# Prefix of the encoder's parameters in task models.
BERT_PREFIX = "bert."

# Top-level modules of the BERT encoder; keys starting with these get the model's prefix.
BODY_MODULES = ("embeddings.", "encoder.", "pooler.")

# Renames of checkpoint names (regex on the name without "bert.", replacement, why).
# Transposes: none -- Hugging Face BERT stores Linear weights as (out, in) like minitune.
RENAMES = (
    (r"\.LayerNorm\.gamma$", ".LayerNorm.weight", "TF-era name of the LayerNorm scale"),
    (r"\.LayerNorm\.beta$", ".LayerNorm.bias", "TF-era name of the LayerNorm shift"),
)

# Checkpoint entries skipped on purpose (regex on the name without "bert.", why).
IGNORED = (
    (r"^embeddings\.position_ids$", "buffer 0..P-1, rebuilt by the model"),
    (r"^embeddings\.token_type_ids$", "buffer of zeros, rebuilt by the model"),
    (r"^cls\.", "pre-training heads (masked LM, next sentence), unused for fine-tuning"),
)

# Task heads of fine-tuned checkpoints: ignored when the model has no such parameter
# (e.g. loading a sentiment model's encoder into a token classifier).
OTHER_TASK_HEADS = (r"^classifier\.", r"^qa_outputs\.")


# Tensors whose shapes config.json alone determines (name without "bert.", the config
# fields giving each dimension): checked before a model is built from the config.
CONFIG_SHAPES = (
    ("embeddings.word_embeddings.weight", ("vocab_size", "hidden_size")),
    ("embeddings.position_embeddings.weight", ("max_position_embeddings", "hidden_size")),
    ("embeddings.token_type_embeddings.weight", ("type_vocab_size", "hidden_size")),
    ("encoder.layer.0.intermediate.dense.weight", ("intermediate_size", "hidden_size")),
)
_LAYER_INDEX = re.compile(r"^encoder\.layer\.(\d+)\.")
# New parameters a model may add to its checkpoint (a task head, a pooler) are allowed
# up to the checkpoint's own size plus this many values (40 MB in float32).
_NEW_PARAMETER_ALLOWANCE = 10_000_000


@dataclass
class LoadReport:
    """What ``map_bert_state_dict`` did with each name.

    Attributes:
        loaded: model names filled from the checkpoint.
        missing: model names absent from the checkpoint (only ``allow_missing`` ones,
            else an error is raised); the model initializes them itself.
        unexpected: checkpoint names that fit nothing (non-empty only on the report
            attached to a raised CheckpointError as ``error.report``).
        ignored: checkpoint names skipped on purpose, with the reason.
        mismatched: (name, checkpoint shape, model shape) for every shape difference.
        renamed: checkpoint name -> model name where they differ.
    """

    loaded: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    ignored: dict = field(default_factory=dict)
    mismatched: list = field(default_factory=list)
    renamed: dict = field(default_factory=dict)

def strip_prefix(name):
    """``bert.encoder.x`` -> ``encoder.x``; other names unchanged."""
    return name.removeprefix(BERT_PREFIX)


def rename_legacy(name):
    """Apply ``RENAMES`` to a name (without prefix)."""
    for pattern, replacement, _ in RENAMES:
        name = re.sub(pattern, replacement, name)
    return name


def ignore_reason(name):
    """The reason ``name`` (without prefix) is in ``IGNORED``, else None."""
    for pattern, reason in IGNORED:
        if re.search(pattern, name):
            return reason
    return None


def checkpoint_to_model_name(name, prefix):
    """Map a checkpoint name to the model's name for it.

    Args:
        name: checkpoint key, with or without ``bert.``.
        prefix: the model's encoder prefix: ``"bert."`` for task models, ``""`` for
            BertModel.
    """
    base = rename_legacy(strip_prefix(name))
    return prefix + base if base.startswith(BODY_MODULES) else base


def check_config_against_checkpoint(config, ckpt, source):
    """Check a config's sizes against a checkpoint's shapes, before building the model.

    A config.json is a few bytes of text but sizes the whole model: ``vocab_size``
    10**12 would allocate terabytes. So the dimensions in ``CONFIG_SHAPES`` and the
    number of layers must be those of the checkpoint's tensors, and the parameters the
    config implies may exceed the checkpoint's values only by a task head's worth.

    Args:
        config: a BertConfig.
        ckpt: dict checkpoint name -> array (from ``load_checkpoint``).
        source: the config.json, named in errors.

    Raises:
        ConfigError: ``config.json:line: key: ...`` naming the size that disagrees.
        CheckpointError: the checkpoint lacks a tensor needed for the check.
    """
    shapes = {rename_legacy(strip_prefix(name)): tuple(array.shape)
              for name, array in ckpt.items()}
    for name, keys in CONFIG_SHAPES:
        if name.startswith("encoder.") and config.num_hidden_layers == 0:
            continue
        if name not in shapes:
            raise CheckpointError(f"{Path(source).parent}: the weights lack {name}, which "
                                  f"every BERT has (its shape is checked against {source})",
                                  key=name)
        wanted = tuple(getattr(config, key) for key in keys)
        for key, want, got in zip(keys, wanted, shapes[name]):
            if want != got:
                raise key_error(source, key, f"{want}, but the checkpoint's {name} has shape "
                                f"{list(shapes[name])}", ConfigError)
    layers = {int(m.group(1)) for m in map(_LAYER_INDEX.match, shapes) if m}
    if config.num_hidden_layers != len(layers):
        raise key_error(source, "num_hidden_layers", f"{config.num_hidden_layers}, but the "
                        f"checkpoint has {len(layers)} layers", ConfigError)
    stored = sum(int(array.size) for array in ckpt.values())
    if config.num_parameters() > stored + _NEW_PARAMETER_ALLOWANCE:
        # every shape read from the checkpoint matched: what is left is the new task head,
        # whose size id2label (or num_labels, which makes id2label) gives
        raise key_error(source, "id2label", (
            f"{config.num_labels} labels make a model of {config.num_parameters()} "
            f"parameters, but the checkpoint holds only {stored} values"), ConfigError)


def map_bert_state_dict(ckpt, model_keys, prefix, allow_missing=(), dtype=None):
    """Rename checkpoint tensors to the model's names and check them against the model.

    Args:
        ckpt: dict checkpoint name -> np.ndarray (from ``load_checkpoint``).
        model_keys: dict model parameter name -> shape (tuple).
        prefix: ``"bert."`` for task models, ``""`` for ``BertModel``.
        allow_missing: model names that may be absent from the checkpoint because the
            model initializes them (a new task head: ``classifier.weight``,
            ``classifier.bias``). A checkpoint tensor for such a name with the wrong
            shape (a head for another number of labels) is dropped and reported in
            ``mismatched`` instead of raising.
        dtype: if given, floating-point arrays are cast to it (e.g. np.float32).

    Returns:
        (state, report): ``state`` maps model names to arrays ready to load (exactly
        the model's names minus ``report.missing``); ``report`` is a ``LoadReport``.

    Raises:
        CheckpointError: listing *all* missing names, all shape mismatches (name,
            checkpoint shape, model shape), and all unexpected names, with a hint when
            the checkpoint looks like another architecture. ``error.report`` holds the
            ``LoadReport``.
    """
    _check_prefix(model_keys, prefix)
    allow_missing = set(allow_missing)
    report = LoadReport()
    renamed = _rename_all(ckpt, prefix, report)
    state = {}
    for target, (source, array) in renamed.items():
        if target not in model_keys:
            reason = _unused_reason(strip_prefix(target), model_keys)
            if reason is None:
                report.unexpected.append(source)
            else:
                report.ignored[source] = reason
            continue
        expected = tuple(model_keys[target])
        if tuple(array.shape) != expected:
            report.mismatched.append((target, tuple(array.shape), expected))
            continue
        state[target] = _cast(array, dtype)
        report.loaded.append(target)
        if source != target:
            report.renamed[source] = target
    absent = [name for name in model_keys if name not in state]
    report.missing = [name for name in absent if name in allow_missing]
    mismatched = {m[0] for m in report.mismatched}
    missing = [n for n in absent if n not in allow_missing and n not in mismatched]
    _raise_if_problems(report, missing, allow_missing)
    return state, report


def _check_prefix(model_keys, prefix):
    """The model's encoder names must all carry ``prefix`` (a caller's contract)."""
    if prefix not in ("", BERT_PREFIX):
        raise ValueError(f"prefix must be '' or {BERT_PREFIX!r}, got {prefix!r}")
    wrong = [k for k in model_keys if k.startswith(BODY_MODULES) != (prefix == "")
             and strip_prefix(k).startswith(BODY_MODULES)]
    if wrong:
        raise ValueError(f"model names {wrong[:3]} do not match prefix {prefix!r}")


def _rename_all(ckpt, prefix, report):
    """checkpoint names -> {model name: (checkpoint name, array)}; ignores buffers etc."""
    renamed, sources = {}, {}
    for name, array in ckpt.items():
        reason = ignore_reason(strip_prefix(name))
        if reason is not None:
            report.ignored[name] = reason
            continue
        target = checkpoint_to_model_name(name, prefix)
        sources.setdefault(target, []).append(name)
        renamed[target] = (name, array)
    clashes = {t: names for t, names in sources.items() if len(names) > 1}
    if clashes:
        raise CheckpointError(
            "checkpoint has several tensors for the same parameter: " + "; ".join(
                f"{t} <- {', '.join(names)}" for t, names in clashes.items())
        )
    return renamed


def _unused_reason(name, model_keys):
    """Why a checkpoint tensor the model has no parameter for may be skipped, or None."""
    if any(re.search(pattern, name) for pattern in OTHER_TASK_HEADS):
        return "task head of another fine-tuned model; this model does not have it"
    if name.startswith("pooler.") and not any("pooler." in k for k in model_keys):
        # BertForTokenClassification is built without the pooler, as in transformers
        return "pooler weights; this model is built without a pooler"
    return None


def _cast(array, dtype):
    array = np.asarray(array)
    if dtype is not None and array.dtype.kind == "f":
        array = array.astype(dtype, copy=False)
    return array


def _raise_if_problems(report, missing, allow_missing):
    """One CheckpointError listing every missing, mismatched and unexpected name."""
    mismatched = [m for m in report.mismatched if m[0] not in allow_missing]
    if not (missing or mismatched or report.unexpected):
        return
    parts = []
    if report.unexpected:
        firsts = sorted({name.split(".")[0] + "." for name in report.unexpected})
        parts.append(
            f"{len(report.unexpected)} checkpoint tensor(s) that BERT does not have: "
            f"{', '.join(report.unexpected)}. The checkpoint looks like another "
            f"architecture (names start with {', '.join(firsts)}; BERT's start with "
            f"{', '.join(BODY_MODULES)} or {BERT_PREFIX})"
        )
    if missing:
        parts.append(f"{len(missing)} parameter(s) missing from the checkpoint: "
                     f"{', '.join(missing)}")
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatch(es): " + "; ".join(
            f"{k}: checkpoint {list(c)} vs model {list(m)}{_transpose_hint(c, m)}"
            for k, c, m in mismatched))
    error = CheckpointError("cannot load checkpoint into the model:\n  " + "\n  ".join(parts))
    error.report = report
    raise error


def _transpose_hint(ckpt_shape, model_shape):
    if len(ckpt_shape) == 2 and tuple(ckpt_shape[::-1]) == tuple(model_shape):
        return " (transposed: a TensorFlow/Conv1D (in, out) layout?)"
    return ""
