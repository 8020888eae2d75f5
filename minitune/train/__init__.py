"""Fine-tuning: ``Trainer`` (fit, evaluate, predict), its options ``TrainArgs``, callbacks.

    args.py         TrainArgs / EvalArgs / PredictArgs: every option, its default, range, help
    tasks.py        classify and ner: model class, files, encoding, scores, predictions
    trainer.py      Trainer: the training loop as short named steps, with callbacks
    callbacks.py    Callback hooks, EarlyStopping, ProgressBar
    evaluation.py   the model in eval mode over encoded examples: scores and predictions
    checkpoints.py  the run directory: best/, last/ (resumable), atomic writes
"""
from .args import AttentionArgs, EvalArgs, PlotArgs, PredictArgs, TrainArgs
from .callbacks import Callback, EarlyStopping
from .checkpoints import RunDirError
from .evaluation import evaluate
from .tasks import TASKS
from .trainer import Trainer, TrainingError, train

__all__ = ["Trainer", "TrainArgs", "EvalArgs", "PredictArgs", "PlotArgs", "AttentionArgs",
           "Callback", "EarlyStopping",
           "TrainingError", "RunDirError", "TASKS", "evaluate", "train"]
