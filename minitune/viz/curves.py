"""Training curves: loss, learning rate and the dev metric of a run, from its metrics.jsonl.

    minitune plot runs/demo                 # writes runs/demo/curves.png

matplotlib is imported only here, when a plot is asked for (``pip install minitune[viz]``).
"""
import json
from pathlib import Path

#: Dev metrics in order of preference: the main metric of classify, then of ner.
DEV_METRICS = ("accuracy", "f1")


def read_metrics(run_dir):
    """(train records, eval records) of ``run_dir/metrics.jsonl``; a bad line is named."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass a run directory written by "
                                f"`minitune train --out DIR`")
    train, evals = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
        (evals if rec.get("type") == "eval" else train).append(rec)
    if not train:
        raise ValueError(f"{path}: no training steps logged yet")
    return train, evals


def _matplotlib_figure():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError("plots need matplotlib: pip install 'minitune[viz]' "
                           "(make setup installs it)") from None
    return Figure


def _moving_average(values, window):
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot_run(run_dir, out=None, metric=None):
    """Write a PNG of the run's loss, learning rate and dev metric against the step.

    Args:
        run_dir: a directory written by ``minitune train`` (holding metrics.jsonl).
        out: the PNG path (default ``run_dir/curves.png``).
        metric: the dev metric to draw (default: accuracy, else f1).

    Returns:
        The path written.
    """
    train, evals = read_metrics(run_dir)
    dev = [e for e in evals if e.get("split", "dev") == "dev"]
    if metric is None:
        metric = next((m for m in DEV_METRICS if dev and m in dev[0]), None)
    elif dev and metric not in dev[0]:
        raise ValueError(f"metric {metric!r} is not logged; the dev records have "
                         f"{sorted(k for k in dev[0] if k not in ('type', 'split', 'step'))}")
    figure = _matplotlib_figure()(figsize=(7, 7), layout="constrained")
    ax_loss, ax_lr, ax_dev = figure.subplots(3, 1, sharex=True)
    steps = [r["step"] for r in train]
    losses = [r["loss"] for r in train]
    ax_loss.plot(steps, losses, color="tab:blue", alpha=0.35, linewidth=1, label="per step")
    window = max(1, len(losses) // 20)
    ax_loss.plot(steps, _moving_average(losses, window), color="tab:blue",
                 label=f"mean of {window}")
    ax_loss.set_ylabel("training loss")
    ax_loss.legend(loc="upper right")
    ax_lr.plot(steps, [r["lr"] for r in train], color="tab:orange")
    ax_lr.set_ylabel("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    if metric is not None:
        ax_dev.plot([e["step"] for e in dev], [e[metric] for e in dev], "o-", color="tab:green")
        ax_dev.set_ylabel(f"dev {metric}")
    else:
        ax_dev.text(0.5, 0.5, "no dev evaluation in this run", ha="center", va="center",
                    transform=ax_dev.transAxes)
    ax_dev.set_xlabel("step")
    for ax in (ax_loss, ax_lr, ax_dev):
        ax.grid(alpha=0.3)
    figure.suptitle(Path(run_dir).resolve().name)
    out = Path(out) if out is not None else Path(run_dir) / "curves.png"
    figure.savefig(out, dpi=100)
    return out


def plot_run_if_possible(run_dir):
    """``plot_run`` when matplotlib is installed, else None (the end of ``train`` calls this)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    return plot_run(run_dir)
