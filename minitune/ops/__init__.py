"""Differentiable ops, one file per family. Each op is one ``Function`` subclass whose
``forward`` and ``backward`` sit side by side, plus a lowercase function that applies it."""
