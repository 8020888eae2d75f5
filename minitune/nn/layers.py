"""Layers: Linear, Embedding, LayerNorm, Dropout. Weights use PyTorch's layouts so that
Hugging Face checkpoints load without transposes."""
import numpy as np

from .. import functional as F
from .module import Module, Parameter


class Linear(Module):
    """y = x @ weight.T + bias.  x (..., IN) -> (..., OUT); weight (OUT, IN), bias (OUT,).

    Initialised as BERT initialises its projections: weight ~ N(0, std), bias = 0.
    """

    def __init__(self, in_features, out_features, bias=True, std=0.02, rng=None, dtype=np.float32):
        self.in_features, self.out_features = in_features, out_features
        rng = rng if rng is not None else np.random.default_rng()
        self.weight = Parameter((rng.standard_normal((out_features, in_features)) * std)
                                .astype(dtype))
        self.bias = Parameter(np.zeros(out_features, dtype=dtype)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class Embedding(Module):
    """Table lookup: ids (...) in [0, V) -> (..., H); weight (V, H) ~ N(0, std)."""

    def __init__(self, num_embeddings, embedding_dim, std=0.02, rng=None, dtype=np.float32):
        rng = rng if rng is not None else np.random.default_rng()
        self.weight = Parameter((rng.standard_normal((num_embeddings, embedding_dim)) * std)
                                .astype(dtype))

    def forward(self, ids):
        return F.embedding(ids, self.weight)


class LayerNorm(Module):
    """Normalise the last axis (H) to zero mean, unit variance; then scale and shift.

    ``layer_norm(x, residual)`` normalises x + residual (the add fused in);
    ``layer_norm(x, residual, dropout=d)`` normalises d(x) + residual, the Dropout module d's
    mask applied inside the same op (its p, training mode and generator; d itself is not
    called)."""

    def __init__(self, hidden_size, eps=1e-12, dtype=np.float32):
        self.eps = eps
        self.weight = Parameter(np.ones(hidden_size, dtype=dtype))
        self.bias = Parameter(np.zeros(hidden_size, dtype=dtype))

    def forward(self, x, residual=None, dropout=None):
        if dropout is None:
            return F.layer_norm(x, self.weight, self.bias, self.eps, residual=residual)
        return F.layer_norm(x, self.weight, self.bias, self.eps, residual=residual,
                            dropout_p=dropout.p, training=dropout.training, rng=dropout.rng)


class Dropout(Module):
    """Inverted dropout, active only in training mode.

    Args:
        p: drop probability.
        rng: the ``numpy.random.Generator`` that draws the masks; models share one generator
            among all their Dropout layers so a run is reproducible from one seed (and its
            state can be saved in checkpoints).
    """

    def __init__(self, p, rng=None):
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng()

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.rng)
