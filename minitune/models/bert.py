"""BERT (Devlin et al. 2019) in minitune, laid out exactly like Hugging Face's ``BertModel`` so
that parameter names and shapes match a checkpoint one to one.

Shapes: B batch, T tokens, H hidden, NH heads, HS = H / NH head size, I intermediate size,
V vocabulary, P max positions, K classes.

    input_ids (B, T) ──embeddings──> (B, T, H) ──N x BertLayer──> last_hidden_state (B, T, H)
                                                     └─ pooler: tanh(dense(h[:, 0])) (B, H)
    BertLayer: h = LN(h + dropout(attn_out(self_attention(h))))
               h = LN(h + dropout(out(gelu(intermediate(h)))))
"""
import json
import logging
import math
from dataclasses import InitVar, dataclass, field, fields
from pathlib import Path

import numpy as np

from .. import functional as F
from ..backend import device_of, get_array_module, to_device
from ..errors import ConfigError
from ..io.limits import MAX_LABELS, MAX_LAYERS, MAX_PARAMETERS
from ..io.limits import describe as _describe
from ..io.limits import is_int as _is_int
from ..nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleList
from ..tensor import Tensor

log = logging.getLogger("minitune")


# --------------------------------------------------------------------------- config

# What config.json may hold for each field: (kind, low, high). Kinds: "int" (not bool),
# "float" (an int or a float, finite), "prob" (a float in [0, 1)), "choice" (high lists
# the allowed strings); a trailing "?" allows null. One table for config.json and code.
_FIELD_RULES = {
    "vocab_size": ("int", 1, None),
    "hidden_size": ("int", 1, None),
    "num_hidden_layers": ("int", 0, MAX_LAYERS),
    "num_attention_heads": ("int", 1, None),
    "intermediate_size": ("int", 1, None),
    "hidden_act": ("choice", None, ("gelu",)),
    "hidden_dropout_prob": ("prob", 0, 1),
    "attention_probs_dropout_prob": ("prob", 0, 1),
    "max_position_embeddings": ("int", 1, None),
    "type_vocab_size": ("int", 1, None),
    "initializer_range": ("float", 0, None),
    "layer_norm_eps": ("float", 0, None),
    "pad_token_id": ("int?", 0, None),
    "position_embedding_type": ("choice", None, ("absolute",)),
    "classifier_dropout": ("prob?", 0, 1),
}


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT model; names and defaults as Hugging Face's config.json.

    Every value is checked (``_FIELD_RULES``) when a config is built, from code or from
    config.json; a bad one raises ConfigError naming the key (and the file and line).
    """
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"
    classifier_dropout: float = None
    id2label: dict = field(default_factory=lambda: {0: "LABEL_0", 1: "LABEL_1"})
    extra: dict = field(default_factory=dict)      # other config.json keys, kept for saving
    source: InitVar[object] = None                 # the config.json read, named in errors

    def __post_init__(self, source):
        self.id2label = _label_map(self.id2label, source)
        self.validate(source)

    def validate(self, source=None):
        """Check every field's type and range, and that the model is buildable.

        Args:
            source: the config.json the values came from (named in errors), or None.

        Raises:
            ConfigError: ``file:line: key: what is wrong`` (``BertConfig: key: ...``
                without a file).
        """
        for name, rule in _FIELD_RULES.items():
            _check_field(name, getattr(self, name), rule, source)
        if self.hidden_size % self.num_attention_heads:
            raise _config_error(source, "num_attention_heads",
                                f"hidden_size {self.hidden_size} is not a multiple of "
                                f"num_attention_heads {self.num_attention_heads}")
        if self.pad_token_id is not None and self.pad_token_id >= self.vocab_size:
            raise _config_error(source, "pad_token_id", f"{self.pad_token_id} is not below "
                                f"vocab_size {self.vocab_size}")
        if self.num_parameters() > MAX_PARAMETERS:
            terms = self.parameter_terms()
            key = max(terms, key=terms.get)
            raise _config_error(source, key, (
                f"{_describe(getattr(self, key))} makes a model of "
                f"{float(self.num_parameters()):.3g} parameters, more than the "
                f"{MAX_PARAMETERS:.3g} minitune builds (docs/security.md)"))

    def num_parameters(self):
        """Parameters of BertForSequenceClassification with this config (the largest model)."""
        return sum(self.parameter_terms().values())

    def parameter_terms(self):
        """The parameter count split by the config field that drives each part."""
        H, I, L = self.hidden_size, self.intermediate_size, self.num_hidden_layers
        V, P, T, K = (self.vocab_size, self.max_position_embeddings, self.type_vocab_size,
                      self.num_labels)
        return {
            "vocab_size": V * H,
            "max_position_embeddings": P * H,
            "type_vocab_size": T * H,
            "intermediate_size": L * 2 * H * I,                       # feed-forward weights
            "hidden_size": L * 4 * H * H + H * H,                     # attention, pooler
            "num_hidden_layers": L * (9 * H + I) + 3 * H,             # biases, LayerNorms
            "id2label": H * K + K,                                    # the task head
        }

    @property
    def num_labels(self):
        return len(self.id2label)

    @property
    def label2id(self):
        return {v: k for k, v in self.id2label.items()}

    @classmethod
    def from_dict(cls, d, source=None):
        """Build a config from a config.json dict; ``source`` (its path) is named in errors.

        Keys minitune does not use are kept in ``extra`` (and saved again). ``num_labels``
        makes ``LABEL_i`` names when there is no ``id2label``; ``label2id`` is derived.
        """
        d = dict(d)
        if d.get("model_type", "bert") != "bert":
            raise _config_error(source, "model_type", f"{_describe(d.get('model_type'))}; "
                                "minitune loads BERT checkpoints (model_type 'bert') only")
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: d.pop(k) for k in list(d) if k in known}
        num_labels = d.pop("num_labels", None)
        d.pop("label2id", None)
        if num_labels is not None:
            _check_field("num_labels", num_labels, ("int", 1, MAX_LABELS), source)
            if "id2label" not in kwargs:
                kwargs["id2label"] = {i: f"LABEL_{i}" for i in range(num_labels)}
            elif isinstance(kwargs["id2label"], dict) and len(kwargs["id2label"]) != num_labels:
                raise _config_error(source, "num_labels", f"{num_labels}, but id2label has "
                                    f"{len(kwargs['id2label'])} labels")
        return cls(**kwargs, extra=d, source=source)

    @classmethod
    def from_json_file(cls, path):
        """Read and check a config.json. Raises ConfigError naming the file, line and key."""
        from ..io.json_io import read_json
        path = Path(path)
        d = read_json(path, what="model config", error=ConfigError)
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: model config must be a JSON object, got "
                              f"{_describe(d)}", path=path)
        return cls.from_dict(d, source=path)

    def to_dict(self):
        d = dict(self.extra)
        for f in fields(self):
            if f.name != "extra":
                d[f.name] = getattr(self, f.name)
        d["id2label"] = {str(k): v for k, v in self.id2label.items()}
        d["label2id"] = self.label2id
        d["model_type"] = "bert"
        return d


def _config_error(source, key, message):
    """ConfigError ``file:line: key: message``, or ``BertConfig: key: message`` from code."""
    if source is None:
        return ConfigError(f"BertConfig: {key}: {message}", key=key)
    from ..io.json_io import key_error
    return key_error(source, key, message, ConfigError)


# Largest integer any size field may hold: far beyond a real model, small enough that
# every later use (arithmetic, messages) stays cheap.
_MAX_INT = 1 << 62


def _check_field(name, value, rule, source):
    """Check one value against its (kind, low, high) rule; see ``_FIELD_RULES``."""
    kind, low, high = rule
    if kind.endswith("?"):
        if value is None:
            return
        kind = kind[:-1]
    if kind == "choice":
        if not (isinstance(value, str) and value in high):
            raise _config_error(source, name, f"{_describe(value)} is not supported "
                                f"(minitune implements {', '.join(map(repr, high))})")
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "int" and not (number and isinstance(value, int)):
        raise _config_error(source, name, f"must be an integer, got {_describe(value)}")
    if not number or (isinstance(value, float) and not math.isfinite(value)):
        raise _config_error(source, name, f"must be a number, got {_describe(value)}")
    if abs(value) > _MAX_INT:  # also keeps ints given for floats convertible to float
        raise _config_error(source, name, f"{_describe(value)} is larger than any model has")
    above = value >= low if kind != "prob" else 0 <= value < 1
    if not above or (high is not None and kind != "prob" and value > high):
        bounds = {"int": f">= {low}" + (f" and <= {high}" if high is not None else ""),
                  "float": f">= {low}", "prob": "in [0, 1)"}[kind]
        raise _config_error(source, name, f"must be {bounds}, got {_describe(value)}")


def _label_map(id2label, source):
    """id2label as in config.json ({"0": "neg", ...}) -> {0: "neg", ...}, checked.

    The ids must be exactly 0 .. K-1 (one per output of the head), at most MAX_LABELS.
    """
    if isinstance(id2label, (list, tuple)):
        if source is not None:  # code may pass a list of names; config.json may not
            raise _config_error(source, "id2label", "must be an object {\"0\": label, ...}, "
                                f"got {_describe(id2label)}")
        id2label = dict(enumerate(id2label))
    if not isinstance(id2label, dict) or not 1 <= len(id2label) <= MAX_LABELS:
        raise _config_error(source, "id2label", f"must be an object of 1 to {MAX_LABELS} "
                            f"labels, got {_describe(id2label)}")
    labels = {}
    for key, label in id2label.items():
        index = key if _is_int(key) else (int(key) if isinstance(key, str) and 0 < len(key)
                                          <= 9 and key.isascii() and key.isdigit() else None)
        if index is None or index >= len(id2label) or index in labels:
            raise _config_error(source, ("id2label", key) if isinstance(key, str) else
                                "id2label", f"ids must be 0 .. {len(id2label) - 1}, got "
                                f"{_describe(key)}")
        if isinstance(label, (dict, list)) or label is None:
            raise _config_error(source, ("id2label", str(key)),
                                f"a label must be a string, got {_describe(label)}")
        labels[index] = str(label)
    return dict(sorted(labels.items()))


@dataclass
class ModelOutput:
    """What a model returns; fields not produced are None."""
    logits: Tensor = None
    loss: Tensor = None
    last_hidden_state: Tensor = None
    pooler_output: Tensor = None
    attentions: tuple = None        # per layer (B, NH, T, T), with output_attentions=True


# --------------------------------------------------------------------------- layers

class BertEmbeddings(Module):
    """word + position + token-type embeddings, then LayerNorm and dropout: (B, T) -> (B, T, H)."""

    def __init__(self, c, rng):
        std, H = c.initializer_range, c.hidden_size
        self.word_embeddings = Embedding(c.vocab_size, H, std, rng)
        self.position_embeddings = Embedding(c.max_position_embeddings, H, std, rng)
        self.token_type_embeddings = Embedding(c.type_vocab_size, H, std, rng)
        self.LayerNorm = LayerNorm(H, c.layer_norm_eps)
        self.dropout = Dropout(c.hidden_dropout_prob, rng)

    def forward(self, input_ids, token_type_ids):
        T = input_ids.shape[1]
        positions = get_array_module(input_ids).arange(T)      # on the ids' device
        x = (self.word_embeddings(input_ids)                       # (B, T, H)
             + self.position_embeddings(positions))                # (T, H), broadcast over B
        # + the token-type embeddings (B, T, H), added inside the LayerNorm's own pass: the
        # same sum, (word + position) + type, without writing it to memory first
        x = self.LayerNorm(x, residual=self.token_type_embeddings(token_type_ids))
        return self.dropout(x)


class BertSelfAttention(Module):
    """Multi-head scaled dot-product attention.

    scores = Q K^T / sqrt(HS) + mask_bias;  probs = softmax(scores);  context = probs V
    x (B, T, H), mask_bias (B, 1, 1, T) -> (B, T, H)
    """

    def __init__(self, c, rng):
        H, std = c.hidden_size, c.initializer_range
        self.num_heads = c.num_attention_heads
        self.head_size = H // c.num_attention_heads
        self.query = Linear(H, H, std=std, rng=rng)
        self.key = Linear(H, H, std=std, rng=rng)
        self.value = Linear(H, H, std=std, rng=rng)
        self.dropout = Dropout(c.attention_probs_dropout_prob, rng)

    def split_heads(self, x):
        B, T, H = x.shape
        return x.reshape(B, T, self.num_heads, self.head_size).transpose(0, 2, 1, 3)  # (B,NH,T,HS)

    def project(self, x):
        """The query, key and value projections of x (B, T, H): three (B, T, H), computed as one
        (B*T, H) @ (H, 3H) product; each still passes through its module's forward hooks."""
        layers = (self.query, self.key, self.value)
        ys = F.stacked_linear(x, [m.weight for m in layers], [m.bias for m in layers])
        return [m.run_hooks((x,), y) for m, y in zip(layers, ys)]

    def forward(self, x, mask_bias, attentions=None):
        """attentions: a list to append this layer's probabilities (B, NH, T, T) to; given, the
        reference (unfused) attention runs, so the probabilities are the ones used."""
        q, k, v = (self.split_heads(y) for y in self.project(x))
        if attentions is None:
            # softmax(q k^T / sqrt(HS) + mask_bias) with dropout, times v: one fused op
            context = F.scaled_dot_product_attention(
                q, k, v, mask_bias, dropout_p=self.dropout.p, training=self.training,
                rng=self.dropout.rng, scale=1.0 / math.sqrt(self.head_size))   # (B,NH,T,HS)
        else:
            # the reference path, step by step, so the probabilities can be returned
            scores = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(self.head_size))
            probs = self.dropout(F.softmax(scores + mask_bias, axis=-1))        # (B,NH,T,T)
            attentions.append(probs)
            context = probs @ v                                                 # (B,NH,T,HS)
        B, NH, T, HS = context.shape
        return context.transpose(0, 2, 1, 3).reshape(B, T, NH * HS)             # (B,T,H)


class BertAttention(Module):
    def __init__(self, c, rng):
        self.self = BertSelfAttention(c, rng)
        self.output = BertOutput(c, rng, in_size=c.hidden_size)   # HF's BertSelfOutput

    def forward(self, x, mask_bias, attentions=None):
        return self.output(self.self(x, mask_bias, attentions), x)


class BertIntermediate(Module):
    """dense H -> I, then exact GELU: (B, T, H) -> (B, T, I)."""

    def __init__(self, c, rng):
        self.dense = Linear(c.hidden_size, c.intermediate_size, std=c.initializer_range, rng=rng)

    def forward(self, x):
        # one op: a GEMM kernel adds the bias and applies GELU as it writes the product
        return F.linear(x, self.dense.weight, self.dense.bias, activation="gelu")


class BertOutput(Module):
    """dense IN -> H, dropout, residual, LayerNorm: (B, T, IN) -> (B, T, H).

    Closes both halves of a layer: IN = H after attention, IN = I after the feed-forward.
    """

    def __init__(self, c, rng, in_size):
        self.dense = Linear(in_size, c.hidden_size, std=c.initializer_range, rng=rng)
        self.LayerNorm = LayerNorm(c.hidden_size, c.layer_norm_eps)
        self.dropout = Dropout(c.hidden_dropout_prob, rng)

    def forward(self, h, residual):
        # LN(dropout(dense(h)) + residual): the dropout is applied inside the LayerNorm's op
        return self.LayerNorm(self.dense(h), residual, dropout=self.dropout)


class BertLayer(Module):
    def __init__(self, c, rng):
        self.attention = BertAttention(c, rng)
        self.intermediate = BertIntermediate(c, rng)
        self.output = BertOutput(c, rng, in_size=c.intermediate_size)

    def forward(self, x, mask_bias, attentions=None):
        a = self.attention(x, mask_bias, attentions)
        return self.output(self.intermediate(a), a)


class BertEncoder(Module):
    def __init__(self, c, rng):
        self.layer = ModuleList([BertLayer(c, rng) for _ in range(c.num_hidden_layers)])

    def forward(self, x, mask_bias, attentions=None):
        for layer in self.layer:
            x = layer(x, mask_bias, attentions)
        return x


class BertPooler(Module):
    """tanh(dense(h[:, 0])): the [CLS] token's state -> (B, H)."""

    def __init__(self, c, rng):
        self.dense = Linear(c.hidden_size, c.hidden_size, std=c.initializer_range, rng=rng)

    def forward(self, h):
        return self.dense(h[:, 0]).tanh()


# --------------------------------------------------------------------------- models

def _as_ids(x, name):
    """Inputs may be Tensors, numpy arrays or nested lists: return an int64 (B, T) array."""
    x = x.data if isinstance(x, Tensor) else x      # not getattr: a cupy array has .data too
    xp = get_array_module(x)
    x = xp.asarray(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (B, T), got {x.shape}")
    if x.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integers, got {x.dtype}")
    return x.astype(np.int64, copy=False)


class BertPreTrainedModel(Module):
    """Shared loading/saving for the BERT models. ``base_prefix`` is where BertModel's weights
    live inside this model ("bert." for task models, "" for BertModel itself)."""

    base_prefix = ""
    head_keys = ()                     # parameters a base checkpoint does not have (new heads)
    architecture = "BertModel"

    def _rng(self, seed):
        """The generator for initial weights and dropout masks (saved in checkpoints)."""
        self.rng = np.random.default_rng(seed)
        return self.rng

    @classmethod
    def from_pretrained(cls, path_or_name, num_labels=None, id2label=None, dtype=np.float32,
                        seed=0, **config_overrides):
        """Build the model from a Hugging Face checkpoint directory (or a known name).

        Args:
            path_or_name: a local directory with config.json and model.safetensors /
                pytorch_model.bin (or shards), or "all-MiniLM-L6-v2" (the installed package).
            num_labels / id2label: size and names of a task head (id2label wins).
            dtype: float32 (default) or float64.
            seed: seeds the new head's initialisation and the dropout masks.
            config_overrides: config fields to change (e.g. hidden_dropout_prob=0.0).

        Returns the model in eval mode (dropout off), as transformers does; call
        ``model.train()`` before training.
        """
        from ..io import (check_config_against_checkpoint, load_checkpoint,
                          map_bert_state_dict, resolve_model_dir)
        model_dir = resolve_model_dir(path_or_name)
        config_path = Path(model_dir) / "config.json"
        config = BertConfig.from_json_file(config_path)
        if id2label is not None:
            config.id2label = _label_map(id2label, None)
        elif num_labels is not None and num_labels != config.num_labels:
            _check_field("num_labels", num_labels, ("int", 1, MAX_LABELS), None)
            config.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        for k, v in config_overrides.items():
            if not hasattr(config, k):
                raise ValueError(f"unknown config field {k!r}")
            setattr(config, k, v)
        config.validate()
        # The weights come first: the sizes config.json states are checked against the
        # checkpoint's own shapes before the model (sized by the config) is allocated.
        ckpt = load_checkpoint(model_dir)
        check_config_against_checkpoint(config, ckpt, config_path)
        model = cls(config, seed=seed)
        shapes = {n: p.shape for n, p in model.named_parameters()}
        state, report = map_bert_state_dict(ckpt, shapes, prefix=cls.base_prefix,
                                            allow_missing=set(cls.head_keys))
        model.load_state_dict(state, strict=False)
        new = [k for k in shapes if k not in state]
        if new:
            log.warning("%s: newly initialised (not in the checkpoint): %s",
                        cls.__name__, ", ".join(new))
        model.loading_report = report
        model.name_or_path = str(path_or_name)
        if dtype != np.float32:
            model.astype(dtype)
        return model.eval()     # as transformers: dropout off until model.train()

    def save_pretrained(self, directory, tokenizer=None):
        """Write config.json + model.safetensors in Hugging Face's format (atomically per file)
        so that ``transformers`` and minitune both load it; plus the tokenizer's files if given."""
        from ..backend import asnumpy
        from ..io import atomic_write_text, write_safetensors
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cfg = self.config.to_dict()
        cfg["architectures"] = [self.architecture]
        cfg["torch_dtype"] = "float32"
        tensors = {k: np.ascontiguousarray(asnumpy(v), dtype=np.float32)
                   for k, v in self.state_dict().items()}
        write_safetensors(tensors, directory / "model.safetensors", metadata={"format": "pt"})
        atomic_write_text(directory / "config.json", json.dumps(cfg, indent=2, sort_keys=True))
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)

    @staticmethod
    def _mask_bias(attention_mask, input_ids, dtype):
        """Padding mask (B, T) of 1/0 -> additive bias (B, 1, 1, T): 0 to keep, dtype's most
        negative value to drop, as Hugging Face does. A fully padded row then gets equal
        scores everywhere (a uniform softmax), never NaN."""
        xp = get_array_module(input_ids)
        if attention_mask is None:
            attention_mask = xp.ones(input_ids.shape, dtype=np.int64)
        mask = _as_ids(attention_mask, "attention_mask")
        if mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask shape {mask.shape} != input_ids shape "
                             f"{input_ids.shape}")
        bias = (1.0 - mask.astype(dtype)) * np.finfo(dtype).min
        return bias[:, None, None, :]


class BertModel(BertPreTrainedModel):
    """The encoder: returns ``last_hidden_state`` (B, T, H) and ``pooler_output`` (B, H)."""

    def __init__(self, config, seed=0, add_pooling_layer=True):
        self.config = config
        rng = self._rng(seed)
        self.embeddings = BertEmbeddings(config, rng)
        self.encoder = BertEncoder(config, rng)
        self.pooler = BertPooler(config, rng) if add_pooling_layer else None

    def forward(self, input_ids, attention_mask=None, token_type_ids=None,
                output_attentions=False):
        """input_ids, attention_mask, token_type_ids: (B, T) integers (arrays or Tensors).

        output_attentions: also return every layer's attention probabilities, a tuple of
        (B, NH, T, T) Tensors (``attentions``), computed on the reference attention path.
        """
        # inputs usually arrive as numpy (tokenizer, DataLoader): copy them to the parameters'
        # device once, here, explicitly (a no-op on the CPU)
        device = device_of(self.embeddings.word_embeddings.weight.data)
        ids = to_device(_as_ids(input_ids, "input_ids"), device)
        if attention_mask is not None:
            attention_mask = to_device(_as_ids(attention_mask, "attention_mask"), device)
        B, T = ids.shape
        if T > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings "
                             f"{self.config.max_position_embeddings}; truncate the inputs "
                             f"(tokenizer truncation=True, max_length<="
                             f"{self.config.max_position_embeddings})")
        if token_type_ids is None:
            types = get_array_module(ids).zeros_like(ids)
        else:
            types = to_device(_as_ids(token_type_ids, "token_type_ids"), device)
            if types.shape != ids.shape:
                raise ValueError(f"token_type_ids shape {types.shape} != input_ids shape "
                                 f"{ids.shape}")
        dtype = self.embeddings.word_embeddings.weight.dtype
        h = self.embeddings(ids, types)
        attentions = [] if output_attentions else None
        h = self.encoder(h, self._mask_bias(attention_mask, ids, dtype), attentions)
        pooled = self.pooler(h) if self.pooler is not None else None
        return ModelOutput(last_hidden_state=h, pooler_output=pooled,
                           attentions=tuple(attentions) if output_attentions else None)


class _BertWithHead(BertPreTrainedModel):
    """BERT + dropout + a linear head (K = num_labels outputs): the body of both task models.

    The head's initial weights come from their own stream, ``default_rng([seed, 1])``, so they
    depend only on the seed, not on how many weights the encoder drew before them.
    """

    base_prefix = "bert."
    head_keys = ("classifier.weight", "classifier.bias")
    add_pooling_layer = True

    def __init__(self, config, seed=0):
        self.config = config
        rng = self._rng(seed)
        self.bert = BertModel(config, seed=seed, add_pooling_layer=self.add_pooling_layer)
        _share_rng(self.bert, rng)
        p = config.classifier_dropout
        self.dropout = Dropout(config.hidden_dropout_prob if p is None else p, rng)
        self.classifier = Linear(config.hidden_size, config.num_labels,
                                 std=config.initializer_range,
                                 rng=np.random.default_rng([seed, 1]))


class BertForSequenceClassification(_BertWithHead):
    """BERT + dropout + linear on the pooled [CLS] state: logits (B, K)."""

    architecture = "BertForSequenceClassification"

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        """labels: (B,) class ids (optional) -> ModelOutput(logits (B, K), loss)."""
        out = self.bert(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(out.pooler_output))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits, _labels(labels, logits.shape[:-1]))
        return ModelOutput(logits=logits, loss=loss)


class BertForTokenClassification(_BertWithHead):
    """BERT (without the pooler, as in transformers) + dropout + linear on every token:
    logits (B, T, K)."""

    architecture = "BertForTokenClassification"
    add_pooling_layer = False

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        """labels: (B, T) tag ids, IGNORE_INDEX (-100) where no loss is taken -> logits
        (B, T, K), loss."""
        out = self.bert(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(out.last_hidden_state))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits, _labels(labels, logits.shape[:-1]))
        return ModelOutput(logits=logits, loss=loss)


def _share_rng(model, rng):
    """Make every Dropout in ``model`` draw from ``rng`` (one stream per model)."""
    model.rng = rng
    for _, m in model.named_modules():
        if isinstance(m, Dropout):
            m.rng = rng


def _labels(labels, shape):
    labels = labels.data if isinstance(labels, Tensor) else labels
    labels = get_array_module(labels).asarray(labels)
    if labels.shape != shape:
        raise ValueError(f"labels shape {labels.shape} does not match logits' leading "
                         f"shape {shape}")
    return labels.astype(np.int64, copy=False)
