"""Pictures: the autograd graph as Graphviz DOT (no dependency), training curves and attention
maps (matplotlib, imported only when a plot is asked for: ``pip install minitune[viz]``)."""
from .graph import save_graph, to_dot

__all__ = ["to_dot", "save_graph"]
