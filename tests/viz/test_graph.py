"""to_dot draws exactly the graph backward walks; save_graph renders it when Graphviz is there."""
import re
import shutil

import numpy as np
import pytest

import minitune as mt
import minitune.functional as F
from minitune.autograd import _topological_order
from minitune.nn import Linear
from minitune.viz import save_graph, to_dot


def small_graph():
    lin = Linear(3, 2, rng=np.random.default_rng(0))
    x = mt.tensor(np.ones((4, 3), dtype=np.float32))
    h = lin(x)
    loss = F.cross_entropy(h * h + h, np.array([0, 1, 1, 0]))
    return loss, lin


def test_every_op_and_tensor_appears_with_shape_and_dtype():
    loss, lin = small_graph()
    dot = to_dot(loss, params=lin.named_parameters())
    ops = re.findall(r'label="(\w+)", shape="ellipse"', dot)
    assert sorted(ops) == sorted(type(f).__name__ for f in _topological_order(loss.creator))
    assert 'label="weight\\n(2, 3) float32"' in dot and 'label="bias\\n(2,) float32"' in dot
    assert 'label="constant\\n(4,) int64"' in dot and 'label="output\\n() float32"' in dot
    # h feeds Mul twice and Add once: one node, three edges out
    linear = re.search(r'(n\d+) \[label="Linear"', dot).group(1)
    h = re.search(rf"  {linear} -> (n\d+);", dot).group(1)
    assert len(re.findall(rf"  {h} -> ", dot)) == 3
    assert to_dot(loss, params=dict(lin.named_parameters())) == dot     # deterministic


def test_a_freed_graph_is_refused_with_advice():
    loss, _ = small_graph()
    loss.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        to_dot(loss)


def test_save_graph_writes_dot_without_graphviz(tmp_path):
    loss, _ = small_graph()
    path = save_graph(loss, tmp_path / "g.dot")
    assert path.read_text().startswith("digraph")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_save_graph_renders_png(tmp_path):
    loss, _ = small_graph()
    path = save_graph(loss, tmp_path / "g.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_graph_without_dot_says_how_to_install(tmp_path, monkeypatch):
    loss, _ = small_graph()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt install graphviz"):
        save_graph(loss, tmp_path / "g.svg")
