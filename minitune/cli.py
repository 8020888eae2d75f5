"""The ``minitune`` command: ``train``, ``eval``, ``predict``, ``plot`` and ``attention``.

    minitune train --task classify --model all-MiniLM-L6-v2 \\
        --train train.tsv --dev dev.tsv --out runs/sst2
    minitune eval --model runs/sst2/best --data dev.tsv
    minitune predict --model runs/sst2/best "a gorgeous, witty film"
    minitune plot runs/sst2                      # runs/sst2/curves.png
    minitune attention --model runs/sst2 "a gorgeous, witty film" --layer 0 --head 3

The last line ``train`` and ``eval`` print on stdout is one JSON object with the metrics.
"""
import argparse
import json
import os
import sys
from pathlib import Path


def _add_train(sub):
    p = sub.add_parser("train", help="fine-tune a BERT checkpoint",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", choices=["classify", "ner"], default="classify")
    p.add_argument("--model", default="all-MiniLM-L6-v2",
                   help="checkpoint directory or name (all-MiniLM-L6-v2 is installed)")
    p.add_argument("--train", help="training file (TSV/CSV/JSONL for classify, CoNLL for ner)")
    p.add_argument("--dev", help="dev file, evaluated every epoch (best model kept)")
    p.add_argument("--test", help="test file, evaluated at the end")
    p.add_argument("--out", default="runs/minitune", help="output directory")
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--max-steps", type=int, help="stop after this many steps (overrides epochs)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-len", type=int, default=128, help="truncate inputs to this many tokens")
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-grad-norm", type=float, help="clip the global gradient norm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-train-examples", type=int,
                   help="train on default_rng(seed).permutation(N)[:n] of the training file")
    p.add_argument("--group-by-length", action="store_true",
                   help="batch similar lengths together (less padding)")
    p.add_argument("--eval-steps", type=int, help="evaluate every N steps instead of per epoch")
    p.add_argument("--save-steps", type=int, default=200,
                   help="write the resumable checkpoint every N steps")
    p.add_argument("--text-column")
    p.add_argument("--text-pair-column")
    p.add_argument("--label-column")
    p.add_argument("--overwrite", action="store_true", help="replace a run in --out")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_eval(sub):
    p = sub.add_parser("eval", help="score a fine-tuned model on a labelled file")
    p.add_argument("--model", required=True, help="directory written by minitune train")
    p.add_argument("--data", required=True, help="labelled file in the training format")
    p.add_argument("--max-len", type=int, default=None,
                   help="truncation (default: the --max-len used in training)")
    p.add_argument("--batch-size", type=int, default=128)


def _add_predict(sub):
    p = sub.add_parser("predict", help="label texts (or read one per line from stdin)")
    p.add_argument("--model", required=True, help="directory written by minitune train")
    p.add_argument("texts", nargs="*", help="texts to label; stdin when none are given")
    p.add_argument("--max-len", type=int, default=None)


def _add_plot(sub):
    p = sub.add_parser("plot", help="training curves of a run (loss, lr, dev metric) as a PNG")
    p.add_argument("run_dir", help="directory written by minitune train (has metrics.jsonl)")
    p.add_argument("--out", help="PNG path (default RUN_DIR/curves.png)")
    p.add_argument("--metric", help="dev metric to draw (default accuracy, else f1)")


def _add_attention(sub):
    p = sub.add_parser("attention", help="attention maps of a text (heat maps, tokens on both "
                                         "axes) as a PNG")
    p.add_argument("--model", default="all-MiniLM-L6-v2",
                   help="checkpoint or run directory, or all-MiniLM-L6-v2")
    p.add_argument("text")
    p.add_argument("--layer", type=int, default=0, help="layer, counted from 0")
    p.add_argument("--head", type=int, help="one head (counted from 0); default: all heads")
    p.add_argument("--out", help="PNG path (default attention_L<layer>[_H<head>].png)")


def _model_dir(path):
    """Accept a run directory too: prefer its best/ then last/ model."""
    path = Path(path)
    if not (path / "config.json").exists():
        for sub in ("best", "last"):
            if (path / sub / "config.json").exists():
                return path / sub
    return path


def _load_finetuned(path):
    from .models import BertConfig, BertForSequenceClassification, BertForTokenClassification
    from .tokenizer import Tokenizer
    from .io import resolve_model_dir
    path = _model_dir(resolve_model_dir(path))
    config = BertConfig.from_json_file(path / "config.json")
    arch = (config.extra.get("architectures") or ["BertForSequenceClassification"])[0]
    classes = {"BertForSequenceClassification": ("classify", BertForSequenceClassification),
               "BertForTokenClassification": ("ner", BertForTokenClassification)}
    if arch not in classes:
        raise ValueError(f"{path}/config.json: architecture {arch!r} is not a fine-tuned "
                         f"classifier; expected one of {sorted(classes)}")
    task, cls = classes[arch]
    model = cls.from_pretrained(path).eval()
    return task, model, Tokenizer.from_pretrained(path), path


def cmd_train(a):
    from .train import TrainArgs, train
    args = TrainArgs(task=a.task, model=a.model, train=a.train, dev=a.dev, test=a.test,
                     out=a.out, epochs=a.epochs, max_steps=a.max_steps, batch_size=a.batch_size,
                     eval_batch_size=a.eval_batch_size, lr=a.lr, max_len=a.max_len,
                     warmup_ratio=a.warmup_ratio, weight_decay=a.weight_decay,
                     max_grad_norm=a.max_grad_norm, seed=a.seed,
                     max_train_examples=a.max_train_examples,
                     group_by_length=a.group_by_length, eval_steps=a.eval_steps,
                     save_steps=a.save_steps, text_column=a.text_column,
                     text_pair_column=a.text_pair_column, label_column=a.label_column,
                     overwrite=a.overwrite, resume=a.resume, progress=not a.no_progress)
    if not a.resume and not a.train:
        raise ValueError("--train FILE is required (or --resume --out DIR)")
    result = train(args)
    from .distributed import launched_rank
    if launched_rank() == 0:             # under mpirun, rank 0 alone prints the result
        print(json.dumps(result))


def cmd_eval(a):
    from . import metrics as M
    from .train import TrainArgs, evaluate, load_task_data
    task, model, tok, path = _load_finetuned(a.model)
    id2label = [model.config.id2label[i] for i in range(model.config.num_labels)]
    from .predict import trained_max_length
    max_len = a.max_len or trained_max_length(model)
    args = TrainArgs(task=task, train=None, dev=a.data, max_len=max_len)
    data = load_task_data(args, tok, id2label=id2label)
    raw, examples = data["dev"]
    result, pred = evaluate(model, task, raw, examples, id2label, a.batch_size,
                            tok.pad_token_id)
    if task == "classify":
        print(M.classification_report(raw.labels, pred, digits=4))
    else:
        print(M.ner_classification_report([list(t) for _, t in raw], pred, digits=4))
    print(json.dumps({"model": str(path), "data": a.data, **result}))


def cmd_plot(a):
    from .viz.curves import plot_run
    print(plot_run(a.run_dir, a.out, a.metric))


def cmd_attention(a):
    from .io import resolve_model_dir
    from .models import BertModel
    from .tokenizer import Tokenizer
    from .viz.attention import attention_probabilities, plot_attention
    path = _model_dir(resolve_model_dir(a.model))
    model = BertModel.from_pretrained(path)
    tokens, probs = attention_probabilities(model, Tokenizer.from_pretrained(path), a.text)
    out = a.out or f"attention_L{a.layer}" + ("" if a.head is None else f"_H{a.head}") + ".png"
    print(plot_attention(tokens, probs, out, a.layer, a.head))


def cmd_predict(a):
    from .predict import predict_texts
    task, model, tok, _ = _load_finetuned(a.model)
    texts = a.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    for text, pred in zip(texts, predict_texts(model, tok, task, texts, a.max_len)):
        print(json.dumps({"text": text, **pred}, ensure_ascii=False))


THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _restart_with_threads(argv):
    """``--threads N``: BLAS reads its thread count once, when numpy loads it, and numpy is
    already loaded by the time arguments are parsed. So set the variables and restart this
    command once in a fresh interpreter (nothing has run yet)."""
    n = None
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            n = argv[i + 1]
        elif arg.startswith("--threads="):
            n = arg.split("=", 1)[1]
    if n is None:
        n = _threads_per_rank()
    if n is None or all(os.environ.get(v) == n for v in THREAD_VARS):
        return
    env = dict(os.environ, **{v: n for v in THREAD_VARS})
    os.execve(sys.executable, [sys.executable, "-m", "minitune.cli"] + list(argv), env)


def _threads_per_rank():
    """Under ``mpirun -n N`` with no thread setting given, each of the N ranks sharing a machine
    gets cores / N BLAS threads (at least 1) instead of all the cores each, which would
    oversubscribe the machine N times over."""
    from .distributed.comm import launched_world_size
    local = os.environ.get("MPI_LOCALNRANKS") or os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE")
    if launched_world_size() <= 1 or any(v in os.environ for v in THREAD_VARS):
        return None
    local = int(local) if local else launched_world_size()
    return str(max(1, (os.cpu_count() or 1) // local))


def main(argv=None):
    if argv is None:                       # a real command line (not a call from Python)
        argv = sys.argv[1:]
        _restart_with_threads(argv)
    parser = argparse.ArgumentParser(prog="minitune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int,
                        help="BLAS threads (default: the BLAS library's choice). On a shared "
                             "or small machine 1 is often fastest")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_eval(sub)
    _add_predict(sub)
    _add_plot(sub)
    _add_attention(sub)
    a = parser.parse_args(argv)
    from .distributed import StoppedTogether, abort_job, launched_rank, launched_world_size
    where = f" (rank {launched_rank()})" if launched_world_size() > 1 else ""
    try:
        {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "plot": cmd_plot,
         "attention": cmd_attention}[a.command](a)
    except StoppedTogether:          # every rank stopped after the same step and saved
        return 130
    except KeyboardInterrupt:
        abort_job(130)               # under mpirun: this rank alone stopped; end them all
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"minitune {a.command}{where}: error: {e}", file=sys.stderr)
        abort_job(2)
        return 2
    except BaseException:
        if where:                    # any other failure of one rank ends the whole job
            import traceback
            traceback.print_exc()
            abort_job(1)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())

