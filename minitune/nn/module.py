"""``Module`` and ``Parameter``: named trees of weights, as in PyTorch.

A Module finds its parameters and submodules by walking its attributes in the order they were
assigned, so names come out as ``encoder.layer.0.attention.self.query.weight`` with no registry.
"""
from collections import OrderedDict

import numpy as np

from ..backend import get_array_module, to_device
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that is a trainable weight of a Module (requires_grad=True)."""

    def __init__(self, data):
        super().__init__(data, requires_grad=True)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    """Base class of layers and models. Subclasses assign Parameters and Modules as attributes
    in ``__init__`` and implement ``forward``; calling the module calls ``forward``."""

    training = True

    def __call__(self, *args, **kwargs):
        return self.run_hooks(args, self.forward(*args, **kwargs))

    def run_hooks(self, args, out):
        """Pass ``out``, this module's output for ``args``, through its forward hooks; returns
        the output (a hook may replace it). ``__call__`` does this after ``forward``; a parent
        that computes a child's output another way (BERT's stacked query/key/value product)
        calls it so that the child's hooks still see that output."""
        for hook in self.__dict__.get("_forward_hooks", ()):
            replaced = hook(self, args, out)
            out = out if replaced is None else replaced
        return out

    def register_forward_hook(self, hook):
        """Call ``hook(module, args, output)`` after every forward of this module; a hook
        may return a replacement output. Returns a handle whose ``remove()`` unregisters it.
        Used by ``minitune.nn.inspect`` (summary, capture) to look inside a running model."""
        hooks = self.__dict__.setdefault("_forward_hooks", [])
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    # ---- the tree
    def named_children(self):
        """(name, Module) for each direct submodule, in assignment order."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_modules(self, prefix=""):
        """(dotted name, Module) for this module and every descendant."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) for every parameter in the tree, in assignment order."""
        for name, value in vars(self).items():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(value, Parameter):
                yield full, value
            elif isinstance(value, Module):
                yield from value.named_parameters(full)

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    # ---- modes and grads
    def train(self, mode=True):
        """Training mode (dropout on) for the whole tree; returns self."""
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self):
        """Evaluation mode (dropout off); returns self."""
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move every parameter (and gradient) to ``device``, "cpu" or "gpu", in place; returns
        self. The Parameter objects stay the same, so build optimizers after moving: their
        state (Adam's moments) is created on the device of the parameters they first see."""
        for p in self.parameters():
            p.data = to_device(p.data, device)
            p.grad = None if p.grad is None else to_device(p.grad, device)
        return self

    def astype(self, dtype):
        """Convert every parameter to ``dtype`` in place (e.g. float64 for gradient checks)."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        return self

    # ---- state
    def state_dict(self):
        """OrderedDict name -> array (the live parameter arrays, not copies)."""
        return OrderedDict((n, p.data) for n, p in self.named_parameters())

    def load_state_dict(self, state, strict=True):
        """Copy arrays from ``state`` into the parameters (cast to each parameter's dtype).

        With ``strict``, every parameter must be present and every key used; all missing and
        unexpected keys and every shape mismatch are listed in one ValueError. Without it,
        only shape mismatches are errors. Returns (missing, unexpected) key lists.
        """
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        mismatched = [f"{k}: checkpoint {tuple(np.shape(v))} vs model {params[k].shape}"
                      for k, v in state.items() if k in params and
                      tuple(np.shape(v)) != params[k].shape]
        problems = []
        if mismatched:
            problems.append("shape mismatches:\n  " + "\n  ".join(mismatched))
        if strict and missing:
            problems.append("missing keys:\n  " + "\n  ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys:\n  " + "\n  ".join(unexpected))
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__} failed; "
                             + "\n".join(problems))
        for k, v in state.items():
            if k in params:
                p = params[k]
                xp = get_array_module(p.data)
                p.data = xp.array(v, dtype=p.dtype)
                p.grad = None
        return missing, unexpected


class _HookHandle:
    def __init__(self, hooks, hook):
        self.hooks, self.hook = hooks, hook

    def remove(self):
        if self.hook in self.hooks:
            self.hooks.remove(self.hook)


class ModuleList(Module):
    """A list of modules whose parameters are named by index (``layer.0.``, ``layer.1.``...)."""

    def __init__(self, modules=()):
        for i, m in enumerate(modules):
            setattr(self, str(i), m)
        self._len = len(modules)

    def __len__(self):
        return self._len

    def __iter__(self):
        return (getattr(self, str(i)) for i in range(self._len))

    def __getitem__(self, i):
        if not -self._len <= i < self._len:
            raise IndexError(f"ModuleList index {i} out of range for length {self._len}")
        return getattr(self, str(i % self._len))
