"""Callbacks: code that runs at fixed points of ``Trainer.fit`` without editing the library.

Subclass ``Callback`` and override the hooks you need; pass instances as
``Trainer(..., callbacks=[...])``. Every hook gets the trainer, so it can read
``trainer.state`` (step, best score, ...), ``trainer.model``, ``trainer.optimizer``, and ask
the run to end after the current step with ``trainer.should_stop = True`` (the run then saves
``last/``, scores dev and test and returns as if it had finished)::

    class StopBelow(Callback):
        def on_step_end(self, trainer, logs):
            if logs["loss"] < 0.05:
                trainer.should_stop = True
"""
import signal
import sys


class Callback:
    """Hooks of ``Trainer.fit``, in the order they run. All default to doing nothing."""

    def on_fit_start(self, trainer):
        """Before the first step (after a resume: before the first step still to do)."""

    def on_gradients(self, trainer):
        """After the step's backward passes, before clipping and the optimizer update: the
        gradients are in ``p.grad`` of ``trainer.model.parameters()``. The place for an
        all-reduce of the gradients across processes."""

    def on_step_end(self, trainer, logs):
        """After each optimizer step. ``logs``: step, epoch, loss, lr, step_s (grad_norm)."""

    def on_evaluate(self, trainer, metrics):
        """After each dev evaluation during training, with its scores."""

    def on_save(self, trainer, path):
        """After a checkpoint (``best/`` or ``last/``) has been written to ``path``."""

    def on_fit_end(self, trainer, result):
        """After the final scores, with the dict ``fit`` returns."""


class EarlyStopping(Callback):
    """Stop when the dev score has not improved for ``patience`` evaluations in a row.

    The count lives in ``trainer.state["evals_since_best"]``, so it survives a resume.
    """

    def __init__(self, patience):
        if patience < 1:
            raise ValueError(f"EarlyStopping: patience must be >= 1, got {patience}")
        self.patience = patience

    def on_evaluate(self, trainer, metrics):
        if trainer.state["evals_since_best"] >= self.patience:
            trainer.should_stop = True
            print(f"early stopping: no better dev {trainer.task.main_metric} for "
                  f"{self.patience} evaluations (best {trainer.state['best']:.4f} at step "
                  f"{trainer.state['best_step']})", file=sys.stderr)


class ProgressBar(Callback):
    """A tqdm bar on stderr: steps done, loss and learning rate."""

    def on_fit_start(self, trainer):
        from tqdm import tqdm
        self.bar = tqdm(total=trainer.total_steps, initial=trainer.state["step"], desc="train",
                        unit="step", dynamic_ncols=True, file=sys.stderr)

    def on_step_end(self, trainer, logs):
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}", refresh=False)

    def on_fit_end(self, trainer, result):
        self.close()

    def close(self):
        if getattr(self, "bar", None) is not None:
            self.bar.close()
            self.bar = None


class CtrlC:
    """While active, the first Ctrl-C asks the loop to stop after the current step (and
    save); the second one interrupts at once."""

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
