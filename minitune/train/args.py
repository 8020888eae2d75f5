"""The options of the ``minitune`` commands: one dataclass per command, the one source of truth.

Each field is declared with ``option()``: its default, its help text, and the range or the
choices its value must respect. ``minitune/cli.py`` builds every flag from these fields (name,
type, default, help), and ``validate()`` checks every range in one place, naming the flag::

    TrainArgs(max_grad_norm=-1).validate()
    ValueError: --max-grad-norm must be > 0, got -1

Python users of ``Trainer`` get the same checks as users of the command line.
"""
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields

from ..amp import PRECISIONS
from ..backend import DEVICES
from .tasks import TASKS


def option(default=None, help="", *, min=None, above=None, max=None, choices=None,
           required=False, positional=False, metavar=None, default_factory=MISSING):
    """A dataclass field with what the command line and ``validate()`` need to know.

    Args:
        default: the value when the flag is not given.
        help: one line for ``--help``.
        min / above / max: the value must be >= min, > above, <= max.
        choices: the allowed values.
        required: the command needs it (checked by ``validate``; ``--help`` says so).
        positional: an argument without a flag (a list: zero or more values).
    """
    meta = {"help": help, "min": min, "above": above, "max": max, "choices": choices,
            "required": required, "positional": positional, "metavar": metavar}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def device_option():
    """--device, shared by train, eval and predict."""
    return option("cpu", "where to compute: cpu; cuda, a CUDA GPU through CuPy (an error when "
                  "none is visible); auto, cuda when one is visible, else cpu", choices=DEVICES)


def precision_option():
    """--precision, shared by train, eval and predict (minitune/amp.py)."""
    return option("fp32", "number format of the matrix products' operands: fp32; bf16 or tf32 "
                  "on GPU tensor cores (float32 weights, accumulation and statistics; emulated, "
                  "and slower, on the CPU)", choices=PRECISIONS)


HEADER_CHOICES = {"auto": None, "yes": True, "no": False}


def header_option():
    """The --header option of commands that read TSV/CSV files."""
    return option("auto", "does a TSV/CSV file's first line name its columns? auto: detect "
                  "it; no: the columns are named 0, 1, ... (ChnSentiCorp's text<TAB>label)",
                  choices=tuple(HEADER_CHOICES))


def header_line(choice):
    """--header auto/yes/no -> the readers' header=None/True/False."""
    return HEADER_CHOICES[choice]


def flag(name):
    """The command-line spelling of a field: max_grad_norm -> --max-grad-norm."""
    return "--" + name.replace("_", "-")


def value_type(cls, f):
    """The type a field's values have: int, float, str, bool or list (``X | None`` -> X)."""
    hint = typing.get_type_hints(cls)[f.name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


class Options:
    """Base of the argument dataclasses: ``validate()`` checks types, ranges and choices from
    the fields' ``option()`` metadata, then the cross-field rules of ``check()``."""

    def validate(self, **context):
        """Raise ValueError naming the flag of the first field that is out of range; then
        ``check(**context)``. Returns self."""
        for f in fields(self):
            m, value, name = f.metadata, getattr(self, f.name), flag(f.name)
            if value is None or value == []:
                if m.get("required"):
                    raise ValueError(f"{name} is required")
                continue
            kind = value_type(type(self), f)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"{name} must be {kind.__name__}, got {value!r}")
            if kind is float and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
            if m.get("choices") is not None and value not in m["choices"]:
                raise ValueError(f"{name} must be one of {', '.join(m['choices'])}, "
                                 f"got {value!r}")
            if m.get("min") is not None and value < m["min"]:
                raise ValueError(f"{name} must be >= {m['min']}, got {value}")
            if m.get("above") is not None and value <= m["above"]:
                raise ValueError(f"{name} must be > {m['above']}, got {value}")
            if m.get("max") is not None and value > m["max"]:
                raise ValueError(f"{name} must be <= {m['max']}, got {value}")
        self.check(**context)
        return self

    def check(self):
        """Rules that involve several fields (subclasses)."""

    def changed(self):
        """The fields whose values differ from their defaults: {name: value}."""
        default = type(self)()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}


@dataclass
class TrainArgs(Options):
    """Fine-tune a BERT checkpoint on a labelled file. Defaults are the reference recipe
    (AdamW 5e-5, weight decay 0.01, 10% warm-up then linear decay, batch 32, 3 epochs)."""

    task: str = option("classify", "classify: one label per text; ner: one tag per word",
                       choices=tuple(TASKS))
    model: str = option("all-MiniLM-L6-v2", "a Hugging Face BERT directory, or the name "
                        "all-MiniLM-L6-v2 (installed by make setup)")
    train: str | None = option(None, "training file: TSV/CSV (see --header) or JSONL for "
                               "classify; CoNLL or CLUENER span JSON (.json/.jsonl) for ner",
                               metavar="FILE")
    dev: str | None = option(None, "dev file, scored after every epoch (or --eval-steps); the "
                             "best model is kept in OUT/best", metavar="FILE")
    test: str | None = option(None, "test file, scored once at the end", metavar="FILE")
    out: str = option("runs/minitune", "output directory: metrics.jsonl, best/, last/, "
                      "results.json", metavar="DIR")
    epochs: float = option(3.0, "passes over the training data", above=0)
    max_steps: int | None = option(None, "stop after this many optimizer steps (overrides "
                                   "--epochs)", min=1)
    batch_size: int = option(32, "examples per forward/backward pass", min=1)
    grad_accum_steps: int = option(1, "passes whose gradients are summed into one optimizer "
                                   "step: a step sees batch-size x grad-accum-steps examples",
                                   min=1)
    eval_batch_size: int = option(128, "examples per pass when scoring", min=1)
    lr: float = option(5e-5, "peak learning rate", above=0)
    max_len: int = option(128, "truncate inputs to this many tokens, [CLS] and [SEP] included",
                          min=3)
    warmup_ratio: float = option(0.1, "fraction of the steps over which the learning rate "
                                 "rises from 0", min=0, max=1)
    weight_decay: float = option(0.01, "AdamW decay (not applied to biases and LayerNorm)",
                                 min=0)
    max_grad_norm: float | None = option(None, "clip the global gradient norm to this (default: "
                                         "no clipping)", above=0)
    seed: int = option(0, "seeds the data order, the new head and dropout", min=0)
    max_train_examples: int | None = option(None, "train on default_rng(seed).permutation(N)"
                                            "[:n] of the training file", min=1)
    group_by_length: bool = option(False, "batch similar lengths together (less padding)")
    eval_steps: int | None = option(None, "score --dev every N steps instead of every epoch",
                                    min=1)
    save_steps: int = option(200, "write the resumable OUT/last every N steps (0: at epoch "
                             "ends and at the end only)", min=0)
    log_every: int = option(1, "write a training line to metrics.jsonl every N steps", min=1)
    early_stopping_patience: int | None = option(None, "stop when the dev score has not "
                                                 "improved for N evaluations", min=1)
    text_column: str | None = option(None, "text column of classify files (default: text, "
                                     "sentence, sentence1 or content)", metavar="NAME")
    text_pair_column: str | None = option(None, "second text column of classify files "
                                          "(default: text_pair or sentence2 when present)",
                                          metavar="NAME")
    label_column: str | None = option(None, "label column of classify files (default: label)",
                                      metavar="NAME")
    header: str = header_option()
    encoding: str = option("utf-8", "text encoding of the data files, e.g. latin-1, cp1252, "
                           "gb18030")
    device: str = device_option()
    precision: str = precision_option()
    cuda_graphs: bool = option(True, "with --device cuda, capture each training step (forward, "
                               "backward, AdamW) as a CUDA graph per padded shape and replay it")
    overwrite: bool = option(False, "replace a finished or stopped run in --out")
    resume: bool = option(False, "continue the run saved in --out (its own settings; --device "
                          "and --cuda-graphs may change)")
    progress: bool = option(True, "show a progress bar")

    def check(self, have_train_data=False):
        """have_train_data: the training data comes as an object (Trainer(train_data=...))."""
        if not self.train and not self.resume and not have_train_data:
            raise ValueError("a training file is required: --train FILE (or --resume --out DIR "
                             "to continue a run)")
        if self.early_stopping_patience is not None and not self.dev:
            raise ValueError("--early-stopping-patience needs --dev FILE to score")

    @property
    def columns(self):
        """(text, text pair, label) column names of classify files."""
        return self.text_column, self.text_pair_column, self.label_column


@dataclass
class EvalArgs(Options):
    """Score a fine-tuned model on a labelled file. Columns, label map and --max-len default to
    those the model was trained with."""

    model: str | None = option(None, "a run directory (its best/ model, else last/) or a "
                               "model directory written by minitune train", required=True,
                               metavar="DIR")
    data: str | None = option(None, "labelled file in the training format", required=True,
                              metavar="FILE")
    device: str = device_option()
    precision: str = precision_option()
    text_column: str | None = option(None, "text column (default: the training run's)",
                                     metavar="NAME")
    text_pair_column: str | None = option(None, "second text column (default: the training "
                                          "run's)", metavar="NAME")
    label_column: str | None = option(None, "label column (default: the training run's)",
                                      metavar="NAME")
    header: str = header_option()
    encoding: str = option("utf-8", "text encoding of the data files, e.g. latin-1, cp1252, "
                           "gb18030")
    max_len: int | None = option(None, "truncation (default: the training run's --max-len)",
                                 min=3)
    batch_size: int = option(128, "examples per pass", min=1)


@dataclass
class PredictArgs(Options):
    """Label texts given as arguments, in a file (--input) or on stdin (one per line)."""

    model: str | None = option(None, "a run directory (its best/ model, else last/) or a "
                               "model directory written by minitune train", required=True,
                               metavar="DIR")
    texts: list[str] = option(help="texts to label (none: read --input, or stdin)",
                              positional=True, default_factory=list)
    input: str | None = option(None, "read the texts from FILE: .txt (one per line), .tsv/.csv "
                               "(see --header) or .jsonl (a CLUENER file too); - is stdin",
                               metavar="FILE")
    input_format: str | None = option(None, "format of --input (default: from its name; "
                                      "stdin: txt)", choices=("txt", "tsv", "csv", "jsonl"))
    text_column: str | None = option(None, "text column of a .tsv/.csv/.jsonl input (default: "
                                     "the training run's, else text/sentence/...)",
                                     metavar="NAME")
    text_pair_column: str | None = option(None, "second text column (default: the training "
                                          "run's)", metavar="NAME")
    header: str = header_option()
    encoding: str = option("utf-8", "text encoding of --input or stdin, e.g. latin-1, cp1252, "
                           "gb18030")
    output: str | None = option(None, "write the predictions to FILE: .jsonl or .csv "
                                "(default: JSON lines on stdout)", metavar="FILE")
    output_format: str | None = option(None, "jsonl, csv, or cluener (NER: CLUENER's {\"id\", "
                                       "\"text\", \"label\": {type: {entity: [[start, end]]}}}, "
                                       "ends inclusive); default: from --output's name",
                                       choices=("jsonl", "csv", "cluener"))
    max_len: int | None = option(None, "truncation (default: the training run's --max-len)",
                                 min=3)
    batch_size: int = option(64, "texts per pass", min=1)
    device: str = device_option()
    precision: str = precision_option()

    def check(self):
        if self.texts and self.input:
            raise ValueError("give texts as arguments or --input FILE, not both")
        if self.output and not self.output.lower().endswith((".jsonl", ".json", ".csv")):
            raise ValueError(f"--output {self.output}: the file name must end in .jsonl or "
                             f".csv (the format written)")


@dataclass
class PlotArgs(Options):
    """Draw a run's training curves (loss, learning rate, dev metric) as a PNG (needs
    matplotlib: pip install minitune[viz])."""

    run_dir: str | None = option(None, "directory written by minitune train (has "
                                 "metrics.jsonl)", required=True, positional=True,
                                 metavar="RUN_DIR")
    out: str | None = option(None, "PNG path (default: RUN_DIR/curves.png)", metavar="FILE")
    metric: str | None = option(None, "dev metric to draw (default: accuracy, else f1)")


@dataclass
class AttentionArgs(Options):
    """Draw the attention maps of a text (heat maps, tokens on both axes) as a PNG."""

    text: str | None = option(None, "the text", required=True, positional=True, metavar="TEXT")
    model: str = option("all-MiniLM-L6-v2", "checkpoint or run directory, or all-MiniLM-L6-v2",
                        metavar="DIR")
    layer: int = option(0, "layer, counted from 0", min=0)
    head: int | None = option(None, "one head, counted from 0 (default: all heads)", min=0)
    out: str | None = option(None, "PNG path (default: attention_L<layer>[_H<head>].png)",
                             metavar="FILE")
