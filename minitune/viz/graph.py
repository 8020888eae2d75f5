"""The graph behind a tensor as Graphviz DOT: every op and every tensor with its shape and dtype.

    loss = F.cross_entropy(model(x), y)
    print(to_dot(loss, params=model.named_parameters()))     # DOT text, no dependency
    save_graph(loss, "graph.svg", params=model.named_parameters())   # needs Graphviz's `dot`

Tensors are boxes (parameters yellow, the root green, constants dashed), ops are ellipses, and
edges follow the forward direction. The walk is the one ``backward()`` does, from the root's
creator through each function's inputs, so the picture shows exactly what backward will visit.
Draw it before ``backward()``: backward frees the graph unless called with retain_graph=True.
"""
import shutil
import subprocess
from pathlib import Path

from ..tensor import Tensor


def _tensor_label(t, name):
    shape = "(" + ", ".join(str(n) for n in t.shape) + (",)" if t.ndim == 1 else ")")
    return f"{name}\\n{shape} {t.dtype}" if name else f"{shape} {t.dtype}"


def to_dot(root, params=None, rankdir="TB"):
    """The DOT source of the graph that produced ``root``.

    Args:
        root: the Tensor to start from (usually a loss).
        params: names for leaf tensors: a dict name -> Tensor or (name, Tensor) pairs such as
            ``model.named_parameters()``.
        rankdir: "TB" (inputs at the top) or "LR" (left to right).

    Returns:
        A string; node ids are numbered in visiting order, so the same graph gives the same text.
    """
    if not isinstance(root, Tensor):
        raise TypeError(f"to_dot needs a Tensor, got {type(root).__name__}")
    pairs = params.items() if isinstance(params, dict) else (params or ())
    names = {id(t): n for n, t in pairs}
    ids = {}
    lines = [f"digraph minitune {{", f"  rankdir={rankdir};",
             '  node [fontname="Helvetica", fontsize=10];']

    def node(obj, label, **attrs):
        if id(obj) not in ids:
            ids[id(obj)] = f"n{len(ids)}"
            a = "".join(f', {k}="{v}"' for k, v in attrs.items())
            lines.append(f'  {ids[id(obj)]} [label="{label}"{a}];')
        return ids[id(obj)]

    def tensor_node(t):
        if t is root:
            return node(t, _tensor_label(t, names.get(id(t), "output")), shape="box",
                        style="filled", fillcolor="palegreen")
        if id(t) in names:
            return node(t, _tensor_label(t, names[id(t)]), shape="box", style="filled",
                        fillcolor="lightyellow")
        if t.creator is None and not t.requires_grad:
            return node(t, _tensor_label(t, "constant"), shape="box", style="dashed")
        return node(t, _tensor_label(t, "" if t.creator else "leaf"), shape="box")

    edges = []
    tensor_node(root)
    stack, seen = [root.creator] if root.creator is not None else [], set()
    while stack:
        f = stack.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        if getattr(f, "released", False):
            raise RuntimeError("to_dot: this graph was freed by backward(); draw it before "
                               "backward(), or call backward(retain_graph=True)")
        fid = node(f, type(f).__name__, shape="ellipse", style="filled", fillcolor="lightblue")
        for ref in f.outputs:
            y = ref()
            if y is not None:
                edges.append(f"  {fid} -> {tensor_node(y)};")
        for x in f.inputs:
            edges.append(f"  {tensor_node(x)} -> {fid};")
            if x.creator is not None:
                stack.append(x.creator)
    return "\n".join(lines + edges + ["}"]) + "\n"


def save_graph(root, path, params=None, rankdir="TB"):
    """Write the graph behind ``root`` to ``path``: DOT text for ``.dot``, otherwise rendered
    by Graphviz's ``dot`` in the format of the suffix (``.png``, ``.svg``, ``.pdf``).

    Graphviz is a system program, not a Python package: ``apt install graphviz``,
    ``brew install graphviz`` or ``conda install graphviz``. Returns the path written.
    """
    path = Path(path)
    source = to_dot(root, params, rankdir)
    fmt = path.suffix.lstrip(".").lower()
    if fmt in ("dot", "gv"):
        path.write_text(source)
        return path
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError(f"rendering {path.name} needs Graphviz's `dot` program, which is not "
                           f"installed (apt install graphviz, brew install graphviz or conda "
                           f"install graphviz); or save to a .dot file and render it elsewhere")
    done = subprocess.run([exe, f"-T{fmt}", "-o", str(path)], input=source, text=True,
                          capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"dot -T{fmt} failed: {done.stderr.strip()}")
    return path
