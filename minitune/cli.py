"""The ``minitune`` command. Each subcommand is an options dataclass (minitune/train/args.py)
and a function; the flags are generated from the dataclass, so names, types, defaults, help
and range checks live in one place.

    minitune train --task classify --model all-MiniLM-L6-v2 \\
        --train train.tsv --dev dev.tsv --out runs/sst2
    minitune eval --model runs/sst2 --data dev.tsv
    minitune predict --model runs/sst2 "a gorgeous, witty film"
    minitune predict --model runs/sst2 --input texts.csv --output predictions.csv
    minitune plot runs/sst2                      # runs/sst2/curves.png
    minitune attention --model runs/sst2 "a gorgeous, witty film" --layer 0 --head 3

The last line ``train`` and ``eval`` print on stdout is one JSON object with the scores.
A bad flag value, a bad file or a failing disk exits with status 2 and one line naming the
flag or file (``minitune train: error: ...``); ``--debug`` shows the traceback instead. An
unexpected exception (a bug) prints one line and exits with status 1.
"""
import argparse
import json
import os
import sys
from dataclasses import MISSING, dataclass, fields

from . import __version__, amp
from .data import read_texts
from .data.readers import TEXT_FORMATS, file_format
from .distributed import StoppedTogether, abort_job, launched_rank, launched_world_size
from .errors import DataError
from .predict import (evaluate_file, load_finetuned, open_output, predict_texts, record_ids,
                      trained_columns, write_predictions)
from .models import BertModel
from .tokenizer import Tokenizer
from .train import AttentionArgs, EvalArgs, PlotArgs, PredictArgs, TrainArgs, Trainer
from .train.args import flag, header_line, value_type
from .train.checkpoints import run_model_dir
from .viz.attention import attention_probabilities, plot_attention
from .viz.curves import plot_run


def run_train(args):
    result = Trainer(args).fit()
    if launched_rank() == 0:             # under mpirun, rank 0 alone prints the result
        print(json.dumps(result))


def run_eval(args):
    model, tokenizer = load_finetuned(args.model, device=args.device)
    columns = (args.text_column, args.text_pair_column, args.label_column)
    with amp.autocast(args.precision):
        scores, report = evaluate_file(model, tokenizer, args.data, columns, args.max_len,
                                       args.batch_size, header_line(args.header),
                                       args.encoding)
    print(report)
    print(json.dumps({"model": model.name_or_path, "data": args.data, **scores}))


def run_predict(args):
    model, tokenizer = load_finetuned(args.model, device=args.device)
    if args.texts:
        texts, pairs = args.texts, None
    else:
        text_column, pair_column, label_column = trained_columns(model)
        texts, pairs = read_texts(args.input or "-", args.text_column or text_column,
                                  args.text_pair_column or pair_column, label_column,
                                  args.input_format, header_line(args.header),
                                  encoding=args.encoding)
        if not texts:
            raise DataError(f"{args.input or 'stdin'}: no texts to label (nothing but blank "
                            "lines)")
    ids = None
    if args.output_format == "cluener" and args.input and file_format(
            args.input, TEXT_FORMATS) == "jsonl":
        ids = record_ids(args.input, args.encoding)
    with amp.autocast(args.precision):
        predictions = predict_texts(model, tokenizer, texts, pairs, args.max_len,
                                    args.batch_size)
    out = open_output(args.output)
    try:
        write_predictions(out, texts, predictions, args.output, args.output_format, ids)
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output:
        print(f"{len(texts)} predictions written to {args.output}", file=sys.stderr)


def run_plot(args):
    print(plot_run(args.run_dir, args.out, args.metric))


def run_attention(args):
    from .io import resolve_model_dir
    path, warning = run_model_dir(resolve_model_dir(args.model))
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    model = BertModel.from_pretrained(path)
    tokens, probs = attention_probabilities(model, Tokenizer.from_pretrained(path), args.text)
    out = args.out or f"attention_L{args.layer}" + ("" if args.head is None
                                                   else f"_H{args.head}") + ".png"
    print(plot_attention(tokens, probs, out, args.layer, args.head))


@dataclass(frozen=True)
class Command:
    options: type          # the dataclass of its flags
    run: callable          # run(options instance)
    help: str


# The subcommands, in the order `minitune --help` lists them.
COMMANDS = {
    "train": Command(TrainArgs, run_train, "fine-tune a BERT checkpoint"),
    "eval": Command(EvalArgs, run_eval, "score a fine-tuned model on a labelled file"),
    "predict": Command(PredictArgs, run_predict, "label texts (arguments, --input FILE or stdin)"),
    "plot": Command(PlotArgs, run_plot, "training curves of a run (loss, lr, dev metric) as a "
                    "PNG"),
    "attention": Command(AttentionArgs, run_attention, "attention maps of a text (heat maps, "
                         "tokens on both axes) as a PNG"),
}


def add_options(parser, options):
    """One argument per field of the dataclass ``options``: --name-with-dashes, its type, its
    default (shown by --help), its help text; a bool is a --flag / --no-flag pair."""
    for f in fields(options):
        m, kind = f.metadata, value_type(options, f)
        default = f.default if f.default is not MISSING else None
        help_text = m.get("help", "")
        if m.get("required"):
            help_text += " (required)"
        elif kind is not bool and default is not None:
            help_text += f" (default: {default})"
        if m.get("positional"):                     # a list: zero or more; else exactly one
            parser.add_argument(f.name, nargs="*" if kind is list else None, help=help_text,
                                default=[] if kind is list else None, metavar=m.get("metavar"))
        elif kind is bool:
            parser.add_argument(flag(f.name), action=argparse.BooleanOptionalAction,
                                default=default, help=help_text + " (default: %(default)s)")
        else:
            parser.add_argument(flag(f.name), dest=f.name, type=kind, default=default,
                                choices=m.get("choices"), metavar=m.get("metavar"),
                                help=help_text)


def build_parser():
    parser = argparse.ArgumentParser(prog="minitune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"minitune {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument("--threads", type=int, metavar="N",
                        help="most threads to compute with, BLAS's and minitune's own (default: "
                             "the cores available; fewer while other processes keep them busy)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.options.__doc__)
        add_options(p, command.options)
        # also after the command; SUPPRESS keeps a --debug given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help=DEBUG_HELP)
    return parser


DEBUG_HELP = "on an error, show the Python traceback instead of a one-line message"
# Errors that are about the user's input or machine (files, flags, disk, memory): one line,
# exit status 2. Anything else is a bug in minitune: one line, exit status 1.
USER_ERRORS = (ValueError, OSError, MemoryError, RuntimeError)

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
    if launched_world_size() <= 1 or any(v in os.environ for v in THREAD_VARS):
        return None
    local = os.environ.get("MPI_LOCALNRANKS") or os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE")
    local = int(local) if local else launched_world_size()
    return str(max(1, (os.cpu_count() or 1) // local))


def main(argv=None):
    if argv is None:                       # a real command line (not a call from Python)
        argv = sys.argv[1:]
        _restart_with_threads(argv)
    parsed = vars(build_parser().parse_args(argv))
    name = parsed.pop("command")
    parsed.pop("threads")
    debug = parsed.pop("debug", False)
    command = COMMANDS[name]
    where = f" (rank {launched_rank()})" if launched_world_size() > 1 else ""
    try:
        command.run(command.options(**parsed).validate())
    except StoppedTogether:          # every rank stopped after the same step and saved
        return 130
    except KeyboardInterrupt:
        abort_job(130)               # under mpirun: this rank alone stopped; end them all
        return 130
    except Exception as e:  # noqa: BLE001 - every error ends as one line (or --debug)
        if debug:
            _end_job_with_traceback(where, 2 if isinstance(e, USER_ERRORS) else 1, e)
            raise
        if isinstance(e, USER_ERRORS):
            print(f"minitune {name}{where}: error: {one_line(e)}", file=sys.stderr)
            abort_job(2, e)
            return 2
        print(f"minitune {name}{where}: internal error: {type(e).__name__}: {one_line(e)} (a "
              f"bug in minitune: run again with --debug for the traceback and report it)",
              file=sys.stderr)
        abort_job(1, e)
        return 1
    except BaseException:
        _end_job_with_traceback(where, 1)
        raise
    return 0


def _end_job_with_traceback(where, status, error=None):
    """Under mpirun (``where`` names the rank), one failing rank ends the whole job (unless
    every rank raised ``error`` alike: ``abort_job``)."""
    if where:
        import traceback
        traceback.print_exc()
        abort_job(status, error)


def one_line(error):
    """An exception as one line: a file error as 'file: reason'; a message listing several
    problems on indented lines joined with '; '."""
    if isinstance(error, OSError) and error.strerror:
        where = error.filename if error.filename is not None else ""
        return f"{where}: {error.strerror}" if where else error.strerror
    if isinstance(error, MemoryError):
        return "out of memory" + (f" ({error})" if str(error) else "")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[0] + "".join(("; " if i > 1 else " ") + line
                              for i, line in enumerate(lines[1:], start=1))


if __name__ == "__main__":
    sys.exit(main())
