"""The package as a whole: what ``import minitune`` loads, and the direction of its imports.

The engine core imports one way, backend <- autograd <- ops <- tensor <- functional, with no
import tucked inside a function to dodge a cycle; across the whole package the module-level
imports form no cycle.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minitune"
CORE_LAYERS = {"minitune.backend": 0, "minitune.autograd": 1, "minitune.ops": 2,
               "minitune.tensor": 3, "minitune.functional": 4}


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path, module_level_only):
    """The minitune modules that ``path`` imports (resolving relative imports)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for a in node.names:          # `from pkg import module` names the module itself
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


def layer(name):
    for prefix, rank in CORE_LAYERS.items():
        if name == prefix or name.startswith(prefix + "."):
            return rank
    return None


@pytest.mark.parametrize("name", sorted(n for n in MODULES if layer(n) is not None))
def test_the_engine_core_imports_one_way(name):
    for target in imports(MODULES[name], module_level_only=False):
        if layer(target) is None or target == "minitune":
            continue
        same_family = layer(target) == layer(name) == CORE_LAYERS["minitune.ops"]
        assert layer(target) < layer(name) or same_family, f"{name} imports {target}"


def test_module_level_imports_form_no_cycle():
    graph = {n: imports(p, module_level_only=True) for n, p in MODULES.items()}
    done, path = set(), []

    def visit(n):
        if n in path:
            cycle = path[path.index(n):] + [n]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if n in done:
            return
        path.append(n)
        for m in sorted(graph[n]):
            if m != "minitune" and not n.startswith(m + "."):   # a package's own __init__
                visit(m)
        path.pop()
        done.add(n)

    for n in sorted(graph):
        visit(n)


def test_import_minitune_reads_no_checkpoint_code():
    """io/ (checkpoint readers, the restricted unpickler) and the training pipeline load when
    first used, not with ``import minitune``."""
    code = ("import sys, minitune; print(' '.join(m for m in sys.modules if "
            "m.startswith(('minitune.io', 'minitune.train', 'minitune.cli', 'minitune.data'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == []
