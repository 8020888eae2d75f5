"""Fine-tuning: ``train(TrainArgs(...))`` runs the whole recipe and ``evaluate`` scores a model.

The recipe (docs/finetuning.md): AdamW with weight decay on every weight except biases and
LayerNorm weights, linear warm-up then linear decay of the learning rate, cross-entropy on
sentence labels (classify) or on the first sub-token of each word (ner).

Output directory layout:
    metrics.jsonl        one JSON object per training step and per evaluation
    best/                the model with the best dev score (Hugging Face format + tokenizer)
    last/                the latest state: model + tokenizer + optimizer.safetensors +
                         trainer_state.json (step, schedule, data position, RNG) for --resume
Checkpoints are written to a temporary directory and renamed into place, so an interrupted
write never leaves a half-written ``last/`` or ``best/``.
"""
import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import data as D
from . import distributed
from . import metrics as M
from .autograd import no_grad
from .backend import asnumpy
from .io import atomic_write_text, read_safetensors, write_safetensors
from .models import BertForSequenceClassification, BertForTokenClassification
from .ops.loss import IGNORE_INDEX
from .optim import (AdamW, clip_grad_norm, linear_schedule_with_warmup,
                    param_groups_with_weight_decay, warmup_steps_from_ratio)
from .tokenizer import Tokenizer
from .viz.curves import plot_run_if_possible

TASKS = {"classify": BertForSequenceClassification, "ner": BertForTokenClassification}
MAIN_METRIC = {"classify": "accuracy", "ner": "f1"}


class TrainingError(RuntimeError):
    """Training stopped (non-finite loss, refused output directory, ...)."""


@dataclass
class TrainArgs:
    """Everything a run needs; the CLI flags map one to one (defaults: the reference recipe)."""
    task: str = "classify"
    model: str = "all-MiniLM-L6-v2"
    train: str = None
    dev: str = None
    test: str = None
    out: str = "runs/minitune"
    epochs: float = 3
    max_steps: int = None
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float = 5e-5
    max_len: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = None
    seed: int = 0
    max_train_examples: int = None
    group_by_length: bool = False
    eval_steps: int = None
    save_steps: int = 200
    log_every: int = 1
    text_column: str = None
    text_pair_column: str = None
    label_column: str = None
    overwrite: bool = False
    resume: bool = False
    progress: bool = True

    def validate(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {self.task!r}")
        if not self.train:
            raise ValueError("a training file is required (--train FILE)")
        for name in ("batch_size", "eval_batch_size", "max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if self.epochs <= 0 and not self.max_steps:
            raise ValueError(f"epochs must be > 0 (or give max_steps), got {self.epochs}")


# --------------------------------------------------------------------------- data

def load_task_data(args, tokenizer, id2label=None):
    """Read and encode the train/dev/test files of ``args.task``.

    Returns a dict with id2label, and per split: raw data and encoded examples.
    The label set comes from the training file unless ``id2label`` is given (resume/eval).
    """
    out = {}
    if args.task == "classify":
        read = lambda p: D.read_classification(  # noqa: E731
            p, args.text_column, args.text_pair_column, args.label_column)
        train = read(args.train) if args.train else None
        if id2label is None:
            id2label = D.build_label_map(train.labels)
        for split, path in (("train", args.train), ("dev", args.dev), ("test", args.test)):
            if not path:
                continue
            raw = train if split == "train" else read(path)
            label2id = {label: i for i, label in enumerate(id2label)}
            D.check_labels(raw.labels, label2id, path, raw.lines)
            out[split] = (raw, D.encode_classification(tokenizer, raw, id2label, args.max_len))
    else:
        train = D.read_conll(args.train) if args.train else None
        if id2label is None:
            id2label = D.build_label_map([t for _, tags in train for t in tags])
        for split, path in (("train", args.train), ("dev", args.dev), ("test", args.test)):
            if not path:
                continue
            raw = train if split == "train" else D.read_conll(path)
            examples, n_trunc = D.encode_ner(tokenizer, raw, id2label, args.max_len)
            if n_trunc:
                print(f"{path}: {n_trunc} sentences longer than {args.max_len} sub-tokens were "
                      f"truncated (their last words are not trained on and predicted 'O')",
                      file=sys.stderr)
            out[split] = (raw, examples)
    out["id2label"] = list(id2label)
    return out


# --------------------------------------------------------------------------- evaluation

def predict_logits(model, examples, batch_size=128, pad_id=0):
    """Run the model in eval mode over encoded examples; yields (indices, logits) per batch.

    Examples are batched by length (less padding); ``indices`` map rows back to examples.
    """
    loader = D.DataLoader(examples, batch_size, shuffle=False, group_by_length=True,
                          pad_id=pad_id)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for batch in loader:
                out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                yield batch.indices, asnumpy(out.logits.data), batch["attention_mask"]
    finally:
        model.train(was_training)


def predictions(model, task, examples, id2label, batch_size=128, pad_id=0, dist=None):
    """One prediction per example, in order: a class id (classify) or the word tags (ner).
    With ``dist`` (data parallelism) each rank predicts its share and every rank gets all."""
    share = examples if dist is None else examples[dist.my_share(len(examples))]
    pred = [None] * len(share)
    if share:
        for idx, logits, _ in predict_logits(model, share, batch_size, pad_id):
            for row, i in enumerate(idx):
                pred[i] = (int(logits[row].argmax(-1)) if task == "classify" else
                           D.word_tags(logits[row].argmax(-1), share[i], id2label))
    return pred if dist is None else dist.gather(pred)


def evaluate(model, task, raw, examples, id2label, batch_size=128, pad_id=0, dist=None):
    """Score ``model`` on encoded ``examples`` of ``raw`` data (split across the ranks of
    ``dist``, when given).

    Returns (metrics dict, predictions): classify -> accuracy, macro F1 (and binary F1 for two
    labels); ner -> entity-level precision/recall/F1 (seqeval's default) and token accuracy.
    """
    pred = predictions(model, task, examples, id2label, batch_size, pad_id, dist)
    if task == "classify":
        pred = np.array(pred, dtype=np.int64)
        true = np.array([e["label"] for e in examples])
        result = {"accuracy": M.accuracy(true, pred),
                  "macro_f1": M.precision_recall_f1(true, pred, average="macro")[2]}
        if len(id2label) == 2:
            result["f1"] = M.precision_recall_f1(true, pred, average="binary", pos_label=1)[2]
        return result, [id2label[i] for i in pred]
    pred_tags = pred
    true_tags = [list(tags) for _, tags in raw]
    p, r, f = M.span_precision_recall_f1(true_tags, pred_tags)
    flat_t = [t for s in true_tags for t in s]
    flat_p = [t for s in pred_tags for t in s]
    return {"precision": p, "recall": r, "f1": f,
            "token_accuracy": M.accuracy(flat_t, flat_p)}, pred_tags


# --------------------------------------------------------------------------- checkpoints

def _replace_dir(tmp, final):
    """Move the finished directory ``tmp`` to ``final``, replacing it: rename the old one
    aside, rename the new one in, delete the old. At every instant a complete copy exists
    (``final`` or ``final.old``), and ``find_resume_dir`` knows to look at both."""
    final, old = Path(final), Path(str(final) + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def save_model_dir(directory, model, tokenizer, extra_files=None):
    """Write a Hugging Face-format model directory atomically (temp dir + rename)."""
    directory = Path(directory)
    tmp = Path(f"{directory}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, tokenizer=tokenizer)
    for name, writer in (extra_files or {}).items():
        writer(tmp / name)
    _replace_dir(tmp, directory)


def _optimizer_arrays(opt_state):
    """Split an optimizer state_dict into flat arrays (safetensors) and JSON-able rest."""
    arrays, scalars = {}, {}
    for i, s in opt_state["state"].items():
        scalars[str(i)] = {}
        for k, v in s.items():
            if isinstance(v, np.ndarray):
                arrays[f"state.{i}.{k}"] = np.ascontiguousarray(v)
            else:
                scalars[str(i)][k] = v
    return arrays, {"scalars": scalars, "param_groups": opt_state["param_groups"]}


def _optimizer_state(arrays, meta):
    state = {}
    for i, s in meta["scalars"].items():
        state[int(i)] = dict(s)
    for key, v in arrays.items():
        _, i, k = key.split(".", 2)
        state.setdefault(int(i), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_state(directory, model, tokenizer, optimizer, schedule, loader, state):
    """The resumable checkpoint: model, tokenizer, optimizer moments, and trainer_state.json
    with step/epoch, schedule, data position and the dropout RNG state."""
    arrays, opt_meta = _optimizer_arrays(optimizer.state_dict())
    trainer_state = dict(state, optimizer=opt_meta, schedule=schedule.state_dict(),
                         loader=loader.state_dict(), rng=model.rng.bit_generator.state)
    save_model_dir(directory, model, tokenizer, extra_files={
        "optimizer.safetensors": lambda p: write_safetensors(arrays, p),
        "trainer_state.json": lambda p: atomic_write_text(p, json.dumps(trainer_state,
                                                                        indent=1)),
    })


def find_resume_dir(out):
    """``out/last`` (or ``out/last.old`` if a replacement was interrupted), else None."""
    for name in ("last", "last.old"):
        d = Path(out) / name
        if (d / "trainer_state.json").is_file():
            return d
    return None


# --------------------------------------------------------------------------- the loop

class _StopFlag:
    """First Ctrl-C asks the loop to stop after the current step (and save); the second one
    interrupts at once."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.previous = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, self._handler)
        except ValueError:          # not the main thread: leave Ctrl-C alone
            self.previous = None
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step (Ctrl-C again to abort without saving)...",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _prepare_out_dir(args):
    out = Path(args.out)
    if args.resume:
        if find_resume_dir(out) is None:
            raise TrainingError(f"--resume: no checkpoint found in {out}/last "
                                f"(trainer_state.json missing)")
        return out
    if out.exists() and any(out.iterdir()):
        holds_run = any((out / n).exists() for n in ("metrics.jsonl", "last", "best"))
        if holds_run and not args.overwrite:
            raise TrainingError(f"output directory {out} holds another run; use --overwrite to "
                                f"replace it or --resume to continue it")
        if holds_run:
            for n in ("metrics.jsonl", "last", "best", "last.old", "results.json"):
                p = out / n
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _log(fh, record):
    fh.write(json.dumps(record) + "\n")
    fh.flush()


def _truncate_metrics(path, step):
    """On resume, drop log lines written after the checkpoint's step (they will be redone)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def train(args):
    """Fine-tune ``args.model`` on ``args.train``; returns the final metrics dict.

    Raises TrainingError when the loss becomes NaN/inf (the last good checkpoint stays intact)
    or when the output directory would overwrite another run.
    """
    if args.resume:
        saved = find_resume_dir(args.out)
        if saved is not None:
            st = json.loads((saved / "trainer_state.json").read_text())
            keep = {"out": args.out, "resume": True, "progress": args.progress}
            args = TrainArgs(**{**st["args"], **keep})
    args.validate()
    dist = _data_parallel(args)          # None in a single process
    writer = dist is None or dist.is_writer
    if dist is None:
        out = _prepare_out_dir(args)
    else:                                # rank 0 prepares, every rank sees its error
        dist.on_writer(lambda: _prepare_out_dir(args))
        out = Path(args.out)
    t_start = time.perf_counter()

    resume_dir = find_resume_dir(out) if args.resume else None
    tokenizer = Tokenizer.from_pretrained(resume_dir or args.model)
    resume_state = None
    if resume_dir is not None:
        resume_state = json.loads((resume_dir / "trainer_state.json").read_text())
    data = load_task_data(args, tokenizer,
                          id2label=resume_state["id2label"] if resume_state else None)
    id2label = data["id2label"]
    model_cls = TASKS[args.task]
    model = model_cls.from_pretrained(resume_dir or args.model, id2label=id2label,
                                      seed=args.seed)
    max_pos = model.config.max_position_embeddings
    if args.max_len > max_pos:
        raise ValueError(f"--max-len {args.max_len} exceeds the model's position limit "
                         f"max_position_embeddings={max_pos}")
    # saved in config.json so that `minitune eval/predict` truncate as training did
    model.config.extra["minitune_max_length"] = args.max_len

    # The training order. Epoch e visits default_rng(seed + e).permutation(N) (the CONLL-A
    # order). With --max-train-examples n, the examples are default_rng(seed).permutation(N)[:n]
    # and epoch 0 visits them in that order (the SST2-A subset); later epochs reshuffle them.
    train_examples = data["train"][1]
    subset = args.max_train_examples is not None
    if subset:
        train_examples = D.subset(train_examples, args.max_train_examples, args.seed)
    loader = D.DataLoader(train_examples, args.batch_size, shuffle=True, seed=args.seed,
                          group_by_length=args.group_by_length, pad_id=tokenizer.pad_token_id,
                          first_epoch_in_order=subset)
    if dist is not None:                 # each rank reads its share of every global batch
        loader.shard(dist.rank, dist.size)
    steps_per_epoch = len(loader)
    total_steps = args.max_steps or int(math.ceil(args.epochs * steps_per_epoch))
    warmup = warmup_steps_from_ratio(args.warmup_ratio, total_steps)

    groups = param_groups_with_weight_decay(model.named_parameters(), args.weight_decay)
    optimizer = AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    schedule = linear_schedule_with_warmup(optimizer, warmup, total_steps)
    state = {"step": 0, "best": None, "best_step": None, "args": asdict(args),
             "id2label": id2label, "task": args.task}
    if resume_state is not None:
        arrays = read_safetensors(resume_dir / "optimizer.safetensors")
        optimizer.load_state_dict(_optimizer_state(arrays, resume_state["optimizer"]))
        schedule.load_state_dict(resume_state["schedule"])
        loader.load_state_dict(resume_state["loader"])
        model.rng.bit_generator.state = resume_state["rng"]
        state.update(step=resume_state["step"], best=resume_state["best"],
                     best_step=resume_state["best_step"])
        if writer:
            _truncate_metrics(out / "metrics.jsonl", state["step"])
            print(f"resuming from {resume_dir} at step {state['step']}/{total_steps}",
                  file=sys.stderr)
    if dist is not None:
        dist.handshake({"train examples": len(train_examples), "labels": id2label,
                        **{f"{s} examples": len(data[s][1]) for s in ("dev", "test") if s in data},
                        "parameters": sum(p.data.size for p in model.parameters()),
                        "step": state["step"]})
        dist.share_weights(model)
        dist.seed_dropout(model.rng, args.seed, state["step"])

    if writer:
        print(f"{args.task}: {len(train_examples)} training examples, {steps_per_epoch} "
              f"steps/epoch, {total_steps} steps (warm-up {warmup}), labels {id2label}"
              + (f", {dist.size} ranks" if dist else ""), file=sys.stderr)
    metric_name = MAIN_METRIC[args.task]

    def run_eval(split):
        raw, examples = data[split]
        result, _ = evaluate(model, args.task, raw, examples, id2label, args.eval_batch_size,
                             tokenizer.pad_token_id, dist)
        return result

    def save_last():
        if writer:
            save_training_state(out / "last", model, tokenizer, optimizer, schedule, loader,
                                state)

    def evaluate_and_keep_best(fh):
        if "dev" not in data:
            return
        result = run_eval("dev")
        _log(fh, {"type": "eval", "split": "dev", "step": state["step"],
                  "epoch": state["step"] / steps_per_epoch, **result})
        if writer:
            print(f"step {state['step']}: dev " + " ".join(f"{k} {v:.4f}" for k, v in
                                                           result.items()), file=sys.stderr)
        if state["best"] is None or result[metric_name] > state["best"]:
            state["best"], state["best_step"] = result[metric_name], state["step"]
            if writer:
                save_model_dir(out / "best", model, tokenizer)

    model.train()
    # only rank 0 writes the log; the other ranks write theirs nowhere
    log_path = out / "metrics.jsonl" if writer else os.devnull
    with open(log_path, "a") as fh, _StopFlag() as stop:
        bar = _progress(args.progress and writer, total_steps, state["step"])
        while state["step"] < total_steps:
            batch = _next_batch(loader)
            step_t = time.perf_counter()
            if dist is None:
                out_ = model(batch["input_ids"], batch["attention_mask"],
                             batch["token_type_ids"], labels=batch["labels"])
                loss = out_.loss.item()
                _check_finite(loss, state["step"], loader, out)
                out_.loss.backward()
            else:
                loss = _data_parallel_backward(model, batch, dist)
                _check_finite(loss, state["step"], loader, out)
            grad_norm = None
            if args.max_grad_norm:
                grad_norm = clip_grad_norm(model.parameters(), args.max_grad_norm)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            state["step"] += 1
            step = state["step"]
            if step % args.log_every == 0:
                rec = {"type": "train", "step": step, "epoch": step / steps_per_epoch,
                       "loss": loss, "lr": lr, "step_s": time.perf_counter() - step_t}
                if grad_norm is not None:
                    rec["grad_norm"] = grad_norm
                _log(fh, rec)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
            end_of_epoch = loader.position == steps_per_epoch
            # a Ctrl-C on any rank stops every rank after this same step
            stop_now = stop.requested if dist is None else dist.any(stop.requested)
            if (args.eval_steps and step % args.eval_steps == 0) or \
                    (end_of_epoch and not args.eval_steps) or step == total_steps:
                evaluate_and_keep_best(fh)
            if step == total_steps or stop_now or end_of_epoch or \
                    (args.save_steps and step % args.save_steps == 0):
                save_last()
            if stop_now:
                bar.close()
                if writer:
                    print(f"interrupted at step {step}/{total_steps}; checkpoint saved in "
                          f"{out / 'last'}. Resume with:\n  minitune train --resume --out "
                          f"{out}", file=sys.stderr)
                raise KeyboardInterrupt if dist is None else distributed.StoppedTogether
        bar.close()

    result = {"task": args.task, "steps": state["step"], "train_s": time.perf_counter() - t_start,
              "best_dev": state["best"], "best_step": state["best_step"], "out": str(out)}
    for split in ("dev", "test"):
        if split in data:
            result[split] = run_eval(split)
    if writer:
        atomic_write_text(out / "results.json", json.dumps(result, indent=2))
        curves = plot_run_if_possible(out)
        if curves is not None:
            print(f"training curves: {curves}", file=sys.stderr)
    return result


def _next_batch(loader):
    """The loader's next batch (this rank's share of it, under mpirun); (epoch, position)
    always names the next batch, so saving it at any step boundary gives an exact resume
    point."""
    return loader.next_batch()


def _check_finite(loss, step, loader, out):
    if not math.isfinite(loss):
        raise TrainingError(
            f"loss is {loss} at step {step + 1} (epoch {loader.epoch}, batch "
            f"{loader.position}); stopping. The last good checkpoint ({out / 'last'}) is "
            f"intact; try a lower --lr")


# --------------------------------------------------------------------------- data parallelism

def _data_parallel(args):
    """A DataParallel when an MPI launcher started several processes (docs/distributed.md),
    else None: the single-process run imports no MPI."""
    comm = distributed.communicator()
    if comm.size == 1:
        return None
    dist = distributed.DataParallel(comm)
    # a rank that fails to start, or that was given other flags, is named here
    dist.handshake({f"--{k.replace('_', '-')}": v for k, v in asdict(args).items()})
    return dist


def _data_parallel_backward(model, batch, dist):
    """Forward and backward on this rank's share of the global batch, then the gradients of
    all ranks summed so that every rank holds the gradient of the global batch's mean loss.
    Returns that mean loss (the same on every rank)."""
    n_local = int((batch["labels"] != IGNORE_INDEX).sum())   # this rank's loss terms
    loss_local = 0.0
    if n_local:                                  # a short last batch may leave a rank nothing
        out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                    labels=batch["labels"])
        loss_local = out.loss.item()
        out.loss.backward()
    n_total, loss = dist.sync_step(n_local, loss_local)
    dist.reduce_gradients(n_local, n_total)
    return loss


def _progress(enabled, total, initial):
    """A tqdm bar on stderr (or a silent stand-in)."""
    if enabled:
        from tqdm import tqdm
        return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True,
                    file=sys.stderr)

    class _Silent:
        def update(self, n):
            pass

        def set_postfix(self, **kw):
            pass

        def close(self):
            pass
    return _Silent()
