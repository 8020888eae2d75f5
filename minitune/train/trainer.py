"""``Trainer``: fine-tune a BERT checkpoint from Python, with checkpoints, resume and callbacks.

    from minitune.train import Trainer, TrainArgs
    trainer = Trainer(TrainArgs(train="train.tsv", dev="dev.tsv", out="runs/sst2", epochs=1))
    trainer.fit()                                   # best/ and last/ in runs/sst2
    trainer.evaluate("test.tsv")                    # {"accuracy": ..., "macro_f1": ...}
    trainer.predict(["a gorgeous, witty film"])     # [{"label": ..., "probability": ...}]

The recipe (docs/finetuning.md): AdamW with weight decay on every weight except biases and
LayerNorm weights, linear warm-up then linear decay of the learning rate, cross-entropy on
sentence labels (classify) or on the first sub-token of each word (ner). ``minitune train``
is this class driven by the command line.
"""
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

from .. import amp
from .. import data as D
from .. import distributed
from ..backend import resolve_device
from ..io import atomic_write_text
from ..ops.loss import IGNORE_INDEX
from ..optim import (AdamW, clip_grad_norm, linear_schedule_with_warmup,
                     param_groups_with_weight_decay, warmup_steps_from_ratio)
from ..tokenizer import Tokenizer
from ..viz.curves import plot_run_if_possible
from . import checkpoints as C
from .args import TrainArgs, flag, header_line
from .callbacks import CtrlC, EarlyStopping, ProgressBar
from .evaluation import evaluate, predict_texts
from .graphs import graphs_for
from .tasks import TASKS


class TrainingError(RuntimeError):
    """Training stopped (a non-finite loss)."""


class Trainer:
    """Fine-tunes a task model; ``fit()`` trains, ``evaluate()`` scores, ``predict()`` labels.

    Whatever is not given is built from ``args``: the tokenizer and model from ``args.model``
    (with a new head for the training labels), the data from ``args.train/dev/test``. With
    ``args.resume`` everything comes from the checkpoint in ``args.out``.

    Args:
        args: TrainArgs (validated here; a bad value raises ValueError naming its flag).
        model: a BertForSequenceClassification / BertForTokenClassification to train.
        tokenizer: its Tokenizer.
        train_data, dev_data, test_data: file paths, or data as the readers return it
            (ClassificationData; for ner a list of (tokens, tags) sentences).
        callbacks: Callback instances (see callbacks.py); early stopping and the progress bar
            are added from ``args``.

    After ``fit()``, ``trainer.state`` holds step, best (dev score), best_step, and
    evals_since_best.
    """

    def __init__(self, args=None, *, model=None, tokenizer=None, train_data=None,
                 dev_data=None, test_data=None, callbacks=()):
        self._t0 = time.perf_counter()
        args = TrainArgs() if args is None else args
        self.resume_dir, saved, self._restart = None, None, False
        if args.resume:
            self.resume_dir = C.resume_dir_or_explain(args.out)
            if self.resume_dir is None:   # killed before its first checkpoint: start again
                self._restart = True
                args = _resumed_args(args, C.load_run_args(args.out), Path(args.out) / "run.json")
            else:
                saved = C.load_trainer_state(self.resume_dir)
                args = _resumed_args(args, saved, self.resume_dir / "trainer_state.json")
        args.validate(have_train_data=train_data is not None)
        self.args, self.task, self.out = args, TASKS[args.task], Path(args.out)
        self.device = resolve_device(args.device)      # "cpu" or "gpu"; fails fast, in one line
        self.dist = _data_parallel(args, self.device)  # under mpirun -n N; else None
        if self.is_writer and (train_data is not None or args.train is not None):
            C.check_writable(self.out)        # before any data is read or model loaded
        self.raw = self._read_splits(train=train_data, dev=dev_data, test=test_data)
        self.tokenizer = tokenizer or Tokenizer.from_pretrained(self.resume_dir or args.model)
        self.id2label = self._label_map(saved, model)
        self.model = model or self.task.model_class.from_pretrained(
            self.resume_dir or args.model, id2label=self.id2label, seed=args.seed)
        self._check_model()
        self.model.to(self.device)                     # before the optimizer and its state
        self.examples = {split: self._encode(split, raw) for split, raw in self.raw.items()}
        self.loader = self._build_loader()
        if self.dist is not None:             # each rank reads its share of every batch
            self.loader.shard(self.dist.rank, self.dist.size)
        self.steps_per_epoch = math.ceil(len(self.loader) / args.grad_accum_steps)
        self.total_steps = args.max_steps or math.ceil(args.epochs * self.steps_per_epoch)
        self.optimizer, self.schedule = self._build_optimizer()
        self.state = {"step": 0, "best": None, "best_step": None, "evals_since_best": 0}
        if saved is not None:
            self._restore(saved)
        if self.dist is not None:
            self._start_data_parallel()
        self.callbacks = list(callbacks)
        if args.early_stopping_patience:
            self.callbacks.append(EarlyStopping(args.early_stopping_patience))
        self._progress = ProgressBar() if args.progress and self.is_writer else None
        if self._progress:
            self.callbacks.append(self._progress)
        self._graphs = graphs_for(self)       # CUDA graphs of the step (GPU only), or None
        self.should_stop = False

    # ------------------------------------------------------------------ building

    def _read_splits(self, **given):
        """The raw data of each split: given objects as they are, paths read by the task."""
        raw = {}
        for split, data in given.items():
            source = data if data is not None else getattr(self.args, split)
            if source is None:
                continue
            is_path = isinstance(source, (str, Path))
            raw[split] = (self.task.read(source, self.args.columns,
                                         header_line(self.args.header), self.args.encoding)
                          if is_path else source)
        return raw

    def _label_map(self, saved, model):
        """id -> label: the checkpoint's on resume, else the training labels' (labels.py's
        order), else the given model's."""
        if saved is not None:
            return list(saved["id2label"])
        if "train" in self.raw:
            return D.build_label_map(self.task.labels(self.raw["train"]))
        if model is not None:
            return [model.config.id2label[i] for i in range(model.config.num_labels)]
        raise ValueError("Trainer needs training data (--train FILE) or a fine-tuned model")

    def _check_model(self):
        """The model fits the labels and --max-len; record what eval/predict must reuse."""
        config, args = self.model.config, self.args
        if not isinstance(self.model, self.task.model_class):
            raise ValueError(f"--task {args.task} trains a {self.task.model_class.__name__}, "
                             f"got a {type(self.model).__name__}")
        if config.num_labels != len(self.id2label):
            raise ValueError(f"the model has {config.num_labels} labels, the training data "
                             f"{len(self.id2label)}: {self.id2label}")
        config.id2label = dict(enumerate(self.id2label))
        if args.max_len > config.max_position_embeddings:
            raise ValueError(f"--max-len {args.max_len} exceeds the model's position limit "
                             f"max_position_embeddings={config.max_position_embeddings}")
        # kept in config.json so that `minitune eval/predict` read and truncate as training did
        config.extra["minitune_max_length"] = args.max_len
        config.extra["minitune_columns"] = dict(zip(("text", "text_pair", "label"),
                                                    args.columns))

    def _encode(self, split, raw):
        examples, n_truncated = self.task.encode(self.tokenizer, raw, self.id2label,
                                                 self.args.max_len)
        if n_truncated:
            print(f"{getattr(raw, 'path', split)}: {n_truncated} sentences longer than "
                  f"{self.args.max_len} sub-tokens were truncated (their last words are not "
                  f"trained on and predicted 'O')", file=sys.stderr)
        return examples

    def _build_loader(self):
        """The training order. Epoch e visits default_rng(seed + e).permutation(N) (the CONLL-A
        order). With --max-train-examples n, the examples are default_rng(seed).permutation(N)
        [:n] and epoch 0 visits them in that order (the SST2-A subset); later epochs reshuffle
        them. A step takes grad_accum_steps consecutive batches of batch_size."""
        if "train" not in self.examples:
            raise ValueError("Trainer needs training data: --train FILE (TrainArgs(train=...)) "
                             "or Trainer(train_data=...)")
        args, examples = self.args, self.examples["train"]
        subset = args.max_train_examples is not None
        if subset:
            examples = D.subset(examples, args.max_train_examples, args.seed)
        return D.DataLoader(examples, args.batch_size, shuffle=True, seed=args.seed,
                            group_by_length=args.group_by_length,
                            pad_id=self.tokenizer.pad_token_id, first_epoch_in_order=subset)

    def _build_optimizer(self):
        args = self.args
        groups = param_groups_with_weight_decay(self.model.named_parameters(), args.weight_decay)
        optimizer = AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
        warmup = warmup_steps_from_ratio(args.warmup_ratio, self.total_steps)
        return optimizer, linear_schedule_with_warmup(optimizer, warmup, self.total_steps)

    def _restore(self, saved):
        """Continue exactly where the checkpoint stopped: optimizer moments, schedule, data
        position, dropout generator, step and best score."""
        parts = {
            "optimizer": lambda: self.optimizer.load_state_arrays(
                C.load_optimizer_arrays(self.resume_dir), saved["optimizer"]),
            "schedule": lambda: self.schedule.load_state_dict(saved["schedule"]),
            "loader": lambda: self.loader.load_state_dict(saved["loader"]),
            "rng": lambda: setattr(self.model.rng.bit_generator, "state", saved["rng"]),
        }
        for key, restore in parts.items():
            C.restore_part(self.resume_dir, key, restore)
        for key in self.state:
            self.state[key] = saved.get(key, self.state[key])

    # ------------------------------------------------------------------ training

    def fit(self):
        """Train to ``total_steps`` (or until a callback sets ``should_stop``); returns the
        final scores, also written to OUT/results.json.

        Raises TrainingError when the loss becomes NaN/inf (the last good checkpoint stays
        intact), KeyboardInterrupt after Ctrl-C (once last/ is saved).
        """
        self._open_run()
        self.model.train()
        self.should_stop = False
        try:
            log_path = self.out / "metrics.jsonl" if self.is_writer else os.devnull
            with open(log_path, "a") as self._log_file, CtrlC() as ctrl_c, \
                    amp.autocast(self.args.precision):
                self._call("on_fit_start")
                while self.state["step"] < self.total_steps and not self.should_stop:
                    logs = self.training_step()
                    self._after_step(logs, ctrl_c)
        finally:
            if self._progress:
                self._progress.close()
        return self._finish()

    def training_step(self):
        """One optimizer step: the backward passes of its batches, then ``on_gradients``,
        clipping and the update. Returns the step's log record."""
        t0 = time.perf_counter()
        batches = self._next_batches()
        lr = self.optimizer.param_groups[0]["lr"]
        if self._graphs is not None and len(batches) == 1:
            # forward, backward and AdamW as one CUDA graph; the loss is read after it
            loss, grad_norm = self._finite(self._graphs.step(batches[0])), None
            self.schedule.step()
        else:
            loss = self._accumulate_gradients(batches)
            if self.dist is not None:
                loss = self._all_reduce_gradients(loss)
            self._call("on_gradients")
            grad_norm = self._clip_gradients()
            self._update()
        self.state["step"] += 1
        step = self.state["step"]
        logs = {"step": step, "epoch": step / self.steps_per_epoch, "loss": loss, "lr": lr,
                "step_s": time.perf_counter() - t0}
        if grad_norm is not None:
            logs["grad_norm"] = grad_norm
        return logs

    def _next_batches(self):
        """The step's grad_accum_steps batches; the last step of an epoch takes what is left,
        so a step never spans two epochs (and equals one batch of the summed size)."""
        loader = self.loader
        if loader.position >= len(loader):
            loader.set_epoch(loader.epoch + 1)
        n = min(self.args.grad_accum_steps, len(loader) - loader.position)
        return [loader.next_batch() for _ in range(n)]

    def _accumulate_gradients(self, batches):
        """Forward and backward each batch, summing gradients into ``p.grad``.

        The step's loss is the mean over all labelled positions of all its batches (what one
        batch holding them all would give): batch i's mean loss is weighted by n_i / N, its
        share of the labelled positions. Returns that loss as a float."""
        counts = [int((b["labels"] != IGNORE_INDEX).sum()) for b in batches]
        total, step_loss = sum(counts), 0.0
        self._step_terms = total              # this rank's loss terms (data parallelism)
        for batch, n in zip(batches, counts):
            if n == 0:                        # a rank's empty share of a short last batch
                continue
            out = self.model(batch["input_ids"], batch["attention_mask"],
                             batch["token_type_ids"], labels=batch["labels"])
            value = self._finite(out.loss.item())
            weight = n / total if total else 0.0
            loss = out.loss if len(batches) == 1 else out.loss * weight
            loss.backward()
            step_loss += value * weight if len(batches) > 1 else value
        return step_loss

    def _finite(self, loss):
        """``loss`` (a float), or TrainingError when it is NaN or infinite."""
        if not math.isfinite(loss):
            raise TrainingError(
                f"loss is {loss} at step {self.state['step'] + 1} (epoch {self.loader.epoch}, "
                f"batch {self.loader.position}); stopping. The last good checkpoint "
                f"({self.out / 'last'}) is intact; try a lower --lr")
        return loss

    def _clip_gradients(self):
        if self.args.max_grad_norm is None:
            return None
        return clip_grad_norm(self.model.parameters(), self.args.max_grad_norm)

    def _update(self):
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad()

    def _after_step(self, logs, ctrl_c):
        """Log, evaluate and save when due; end the run on Ctrl-C."""
        args, step = self.args, self.state["step"]
        if step % args.log_every == 0:
            self._log({"type": "train", **logs})
        self._call("on_step_end", logs)
        end_of_epoch = self.loader.position == len(self.loader)
        last = step == self.total_steps
        if (args.eval_steps and step % args.eval_steps == 0) or \
                (end_of_epoch and not args.eval_steps) or last:
            self._evaluate_and_keep_best()
        interrupted = ctrl_c.requested
        if self.dist is not None:             # a stop on any rank stops every rank here
            interrupted, self.should_stop = self.dist.any(interrupted, self.should_stop)
        if last or end_of_epoch or interrupted or self.should_stop or \
                (args.save_steps and step % args.save_steps == 0):
            self._save_last()
        if interrupted:
            if self._progress:
                self._progress.close()
            if self.is_writer:
                print(f"interrupted at step {step}/{self.total_steps}; checkpoint saved in "
                      f"{self.out / 'last'}. Resume with:\n  minitune train --resume --out "
                      f"{self.out}", file=sys.stderr)
            raise KeyboardInterrupt if self.dist is None else distributed.StoppedTogether

    def _evaluate_and_keep_best(self):
        if "dev" not in self.examples:
            return
        state, metric = self.state, self.task.main_metric
        scores = self.evaluate("dev")
        self._log({"type": "eval", "split": "dev", "step": state["step"],
                   "epoch": state["step"] / self.steps_per_epoch, **scores})
        if self.is_writer:
            print(f"step {state['step']}: dev " + " ".join(f"{k} {v:.4f}" for k, v in
                                                           scores.items()), file=sys.stderr)
        if state["best"] is None or scores[metric] > state["best"]:
            state.update(best=scores[metric], best_step=state["step"], evals_since_best=0)
            if self.is_writer:
                C.save_model_dir(self.out / "best", self.model, self.tokenizer)
                self._call("on_save", self.out / "best")
        else:
            state["evals_since_best"] += 1
        self._call("on_evaluate", scores)

    def _save_last(self):
        if not self.is_writer:
            return
        trainer_state = dict(self.state, args=_args_to_save(self.args), id2label=self.id2label,
                             task=self.args.task, schedule=self.schedule.state_dict(),
                             loader=self.loader.state_dict(),
                             rng=self.model.rng.bit_generator.state)
        C.save_training_state(self.out / "last", self.model, self.tokenizer, self.optimizer,
                              trainer_state)
        self._call("on_save", self.out / "last")

    def _open_run(self):
        """Prepare OUT (or, on resume, drop the log lines after the checkpoint's step)."""
        if self.dist is not None:             # rank 0 prepares; every rank sees its error
            self.dist.on_writer(self._prepare_out)
        else:
            self._prepare_out()
        if not self.is_writer:
            return
        if self.resume_dir is not None:
            print(f"resuming from {self.resume_dir} at step {self.state['step']}/"
                  f"{self.total_steps}", file=sys.stderr)
        warmup = warmup_steps_from_ratio(self.args.warmup_ratio, self.total_steps)
        print(f"{self.args.task}: {self.loader.num_examples} training examples, "
              f"{self.steps_per_epoch} steps/epoch, {self.total_steps} steps (warm-up {warmup}), "
              f"labels {self.id2label}" + (f", {self.dist.size} ranks" if self.dist else ""),
              file=sys.stderr)

    def _prepare_out(self):
        """A new run: an empty OUT, then run.json. A resumed one: the newest complete
        checkpoint moved to last/, leftovers of crashes removed, the log cut back to its
        step (the writer rank only)."""
        if self.resume_dir is None:
            C.prepare_out_dir(self.out, self.args.overwrite or self._restart)
            C.write_run_args(self.out, _args_to_save(self.args))
        else:
            self.resume_dir = C.recover_run_dir(self.out)
            C.truncate_metrics(self.out / "metrics.jsonl", self.state["step"])

    def _finish(self):
        result = {"task": self.args.task, "steps": self.state["step"],
                  "train_s": time.perf_counter() - self._t0, "best_dev": self.state["best"],
                  "best_step": self.state["best_step"], "out": str(self.out),
                  "stopped_early": self.state["step"] < self.total_steps}
        for split in ("dev", "test"):
            if split in self.examples:
                result[split] = self.evaluate(split)
        if self.is_writer:
            atomic_write_text(self.out / "results.json", json.dumps(result, indent=2))
            curves = plot_run_if_possible(self.out)
            if curves is not None:
                print(f"training curves: {curves}", file=sys.stderr)
        self._call("on_fit_end", result)
        return result

    # ------------------------------------------------------------------ data parallelism

    @property
    def is_writer(self):
        """True in a single process and on rank 0: the one process that writes files."""
        return self.dist is None or self.dist.is_writer

    def _start_data_parallel(self):
        """Every rank has built the same run: check it, give all rank 0's weights, and give
        each rank its own dropout stream (docs/distributed.md)."""
        sizes = {f"{split} examples": len(ex) for split, ex in self.examples.items()}
        self.dist.handshake({**sizes, "labels": self.id2label, "step": self.state["step"],
                             "parameters": sum(p.data.size for p in self.model.parameters())})
        self.dist.share_weights(self.model)
        self.dist.seed_dropout(self.model.rng, self.args.seed, self.state["step"])

    def _all_reduce_gradients(self, loss):
        """Sum the ranks' gradients, each weighted by its share of the global batch's loss
        terms: every rank then holds the gradient of the global batch's mean loss. Returns
        that batch's mean loss (the same on every rank)."""
        n_total, loss = self.dist.sync_step(self._step_terms, loss)
        self.dist.reduce_gradients(self._step_terms, n_total)
        return loss

    def _log(self, record):
        self._log_file.write(json.dumps(record) + "\n")
        self._log_file.flush()

    def _call(self, hook, *args):
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    # ------------------------------------------------------------------ using the model

    def evaluate(self, data="dev"):
        """Scores of the current model: ``data`` is "dev" or "test" (the run's splits), a file
        in the training format, or data as the readers return it."""
        if isinstance(data, str) and data in ("dev", "test"):
            if data not in self.examples:
                raise ValueError(f"this run has no {data} data (--{data} FILE); pass a file")
            raw, examples = self.raw[data], self.examples[data]
        else:
            raw = self._read_splits(eval=data)["eval"]
            examples = self._encode("eval", raw)
        with amp.autocast(self.args.precision):
            scores, _ = evaluate(self.model, self.task, raw, examples, self.id2label,
                                 self.args.eval_batch_size, self.tokenizer.pad_token_id,
                                 self.dist)
        return scores

    def predict(self, texts, text_pairs=None):
        """Label texts with the current model (see ``evaluation.predict_texts``)."""
        return predict_texts(self.model, self.tokenizer, texts, text_pairs,
                             max_len=self.args.max_len, batch_size=self.args.eval_batch_size)


def train(args, **kwargs):
    """``Trainer(args, **kwargs).fit()``: train and return the final scores."""
    return Trainer(args, **kwargs).fit()


def _data_parallel(args, device):
    """A DataParallel when an MPI launcher started several processes, else None: the
    single-process run imports no MPI. A rank that does not start, or that was given other
    flags, is named here."""
    comm = distributed.communicator(device)
    if comm.size == 1:
        return None
    dist = distributed.DataParallel(comm)
    dist.handshake({flag(k): v for k, v in dataclasses.asdict(args).items()})
    return dist


def _args_to_save(args):
    """The run's settings for trainer_state.json, with files as absolute paths so that
    ``--resume`` works from any directory (a model name such as all-MiniLM-L6-v2 stays)."""
    saved = dataclasses.asdict(args)
    for name in ("train", "dev", "test", "model"):
        if saved[name] and (name != "model" or Path(saved[name]).exists()):
            saved[name] = str(Path(saved[name]).resolve())
    return saved


def _resumed_args(given, saved, saved_file):
    """The saved run's settings, keeping the given out/progress and where to compute (a run
    started on a GPU may go on on the CPU, and back). Flags that would change the run are
    ignored with a warning; data files that have gone missing are an error."""
    known = {f.name for f in dataclasses.fields(TrainArgs)}
    args = TrainArgs(**{k: v for k, v in saved["args"].items() if k in known})
    args.out, args.resume, args.progress = given.out, True, given.progress
    args.device, args.cuda_graphs = given.device, given.cuda_graphs
    ignored = sorted(set(given.changed()) - {"out", "resume", "progress", "overwrite", "device",
                                             "cuda_graphs"})
    if ignored:
        print(f"--resume continues the saved run with its own settings; ignoring "
              f"{', '.join(flag(k) for k in ignored)}", file=sys.stderr)
    for split in ("train", "dev", "test"):
        path = getattr(args, split)
        if path and not Path(path).is_file():
            raise C.RunDirError(f"--resume: the run's {flag(split)} file {path} (saved in "
                                f"{saved_file}) does not exist")
    return args
