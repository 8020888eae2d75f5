"""Attention maps: a head's (or a layer's heads') attention probabilities as heat maps, with
the tokens on both axes (rows: the query token attending, columns: the key token attended to).

    minitune attention --model all-MiniLM-L6-v2 "The cat sat on the mat." --layer 2

The probabilities are BertModel's ``output_attentions`` (tested equal to transformers'). Layers
and heads count from 0, as in ``out.attentions[layer][0, head]``.
"""
import math
from pathlib import Path

import numpy as np

from ..backend import asnumpy
from .curves import _matplotlib_figure


def attention_probabilities(model, tokenizer, text, max_length=128):
    """(tokens, probs): the T token strings of ``text`` and every layer's probabilities as a
    numpy array (L, NH, T, T). ``model`` is a BertModel (or a task model: its ``.bert``)."""
    from ..autograd import no_grad
    encoder = getattr(model, "bert", model)
    batch = tokenizer([text], max_length=max_length)
    was_training = encoder.training
    encoder.eval()
    try:
        with no_grad():
            out = encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                          output_attentions=True)
    finally:
        encoder.train(was_training)
    probs = np.stack([asnumpy(a.data)[0] for a in out.attentions])
    return batch.tokens(0), probs


def _heat_map(ax, probs, tokens, title, labels=True):
    ax.imshow(probs, cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_title(title, fontsize=9)
    ticks = range(len(tokens))
    if labels:
        ax.set_xticks(ticks, tokens, rotation=90, fontsize=7)
        ax.set_yticks(ticks, tokens, fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])


def plot_attention(tokens, probs, out, layer=0, head=None):
    """Write a PNG: one head's map (``head`` given) or a grid of all heads of ``layer``.

    Args:
        tokens: the T token strings.
        probs: (L, NH, T, T) attention probabilities.
        out: the PNG path.
    Returns:
        The path written.
    """
    L, NH, T, _ = probs.shape
    if not 0 <= layer < L:
        raise ValueError(f"--layer {layer} is out of range: the model has layers 0..{L - 1}")
    if head is not None and not 0 <= head < NH:
        raise ValueError(f"--head {head} is out of range: layers have heads 0..{NH - 1}")
    Figure = _matplotlib_figure()
    size = 3.0 + 0.25 * T
    if head is not None:
        figure = Figure(figsize=(size, size), layout="constrained")
        ax = figure.subplots()
        _heat_map(ax, probs[layer, head], tokens, f"layer {layer}, head {head}")
        ax.set_xlabel("attended to (key)")
        ax.set_ylabel("attending (query)")
        figure.colorbar(ax.images[0], ax=ax, shrink=0.8, label="probability")
    else:
        cols = math.ceil(math.sqrt(NH))
        rows = math.ceil(NH / cols)
        figure = Figure(figsize=(cols * size * 0.7, rows * size * 0.7), layout="constrained")
        axes = np.atleast_1d(figure.subplots(rows, cols)).reshape(-1)
        for h, ax in enumerate(axes):
            if h < NH:
                _heat_map(ax, probs[layer, h], tokens, f"head {h}", labels=h % cols == 0)
                if h % cols != 0:
                    ax.set_xticks(range(T), tokens, rotation=90, fontsize=6)
            else:
                ax.axis("off")
        figure.suptitle(f"layer {layer}: attention of each head (rows attend to columns)")
    out = Path(out)
    figure.savefig(out, dpi=100 if head is not None else 72)
    return out
