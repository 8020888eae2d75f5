"""Optimizer base class: parameter groups, per-parameter state, zero_grad, state_dict.

An optimizer sees only raw arrays: ``p.data`` (the weights, updated IN PLACE because the model
holds references to them) and ``p.grad`` (same shape, or None = "no gradient, skip"). It never
builds an autograd graph, so no ``no_grad`` context is needed.

Parameter groups follow torch.optim: ``params`` may be an iterable of parameters (one group) or of
dicts ``{"params": [...], "lr": ..., "weight_decay": ...}``; keys a group leaves out take the
optimizer's defaults. A learning-rate schedule changes ``group["lr"]`` between steps.

State is kept per parameter (Adam's moments, SGD's momentum buffer) and saved by *index*: the
parameters of all groups are numbered in order (group 0's first, then group 1's, ...), exactly
like torch, so a state_dict can be loaded into a fresh optimizer built over a fresh model.
"""
import copy

from .. import backend


class Optimizer:
    """Base class. Subclasses set ``defaults`` through ``__init__`` and implement ``step()``.

    Args:
        params: iterable of parameters (objects with ``.data`` and ``.grad`` arrays) or of group
            dicts with a ``"params"`` entry.
        defaults: hyperparameters every group gets unless it sets its own (must include "lr").
    """

    def __init__(self, params, defaults):
        if "lr" not in defaults:
            raise ValueError(f"{type(self).__name__}: defaults must include 'lr'")
        self.defaults = dict(defaults)
        self.param_groups = []
        # state[id(p)] -> dict of arrays / counters. Keyed by id() because Tensor overloads ==
        # (elementwise), which makes parameters unusable as dict keys.
        self.state = {}
        self._scratch = {}     # (dtype, module) -> flat work buffer, see _work_buffer

        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)
        if not any(g["params"] for g in self.param_groups):
            raise ValueError(f"{type(self).__name__}: every parameter group is empty")

    def add_param_group(self, group):
        """Add a group dict; missing hyperparameters are filled from ``defaults``."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a parameter group must be a dict with a 'params' entry, "
                            f"got {group!r}")
        group = dict(group)
        params = group["params"]
        group["params"] = [params] if hasattr(params, "data") else list(params)
        for p in group["params"]:
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise TypeError("optimizer parameters need .data and .grad, "
                                f"got {type(p).__name__}")
        for key, value in self.defaults.items():
            group.setdefault(key, value)

        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(group["params"]):
            if id(p) in seen:
                raise ValueError(f"parameter {i} of group {len(self.param_groups)} already belongs "
                                 "to another group (or appears twice)")
            seen.add(id(p))
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Forget the gradients: ``p.grad = None`` (default) or fill them with zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad[...] = 0

    def step(self):
        """Update every parameter that has a gradient, in place."""
        raise NotImplementedError

    # ---- helpers for subclasses -------------------------------------------------------------

    def _params_with_grad(self, group):
        """Yield (p, grad, xp) for the group's parameters whose grad is not None; check shapes."""
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            if g.shape != p.data.shape:
                raise ValueError(f"{type(self).__name__}: grad shape {tuple(g.shape)} does not "
                                 f"match parameter shape {tuple(p.data.shape)}")
            yield p, g, backend.get_array_module(p.data)

    def _work_buffer(self, like):
        """A scratch array shaped like ``like``, shared by all parameters of one dtype/device.

        A BERT step updates ~22M numbers; reusing one buffer (sized for the largest parameter)
        instead of allocating fresh temporaries per operation keeps the update memory-bound.
        The buffer is overwritten by the next parameter, so never keep a reference to it.
        """
        xp = backend.get_array_module(like)
        key = (like.dtype.str, xp.__name__)
        buf = self._scratch.get(key)
        if buf is None or buf.size < like.size:
            buf = xp.empty(like.size, dtype=like.dtype)
            self._scratch[key] = buf
        return buf[:like.size].reshape(like.shape)

    # ---- saving and restoring ---------------------------------------------------------------

    def state_dict(self):
        """Return ``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``.

        Arrays are copied to NumPy (host) so the dict is a snapshot that later steps do not
        change and can be written to disk; integers stay Python ints.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            saved = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            saved["params"] = []
            for p in group["params"]:
                index[id(p)] = len(index)
                saved["params"].append(index[id(p)])
            groups.append(saved)
        state = {}
        for pid, s in self.state.items():
            if pid in index:
                state[index[pid]] = {k: _snapshot(v) for k, v in s.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and per-parameter state saved by ``state_dict()``.

        The optimizer must have the same group structure (number of groups, parameters per
        group, parameter shapes). Arrays are copied onto each parameter's device and dtype.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: saved state has {len(saved_groups)} parameter "
                             f"groups, this optimizer has {len(self.param_groups)}")
        by_index = []
        for gi, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"load_state_dict: group {gi} has {len(group['params'])} "
                                 f"parameters, the saved group has {len(saved['params'])}")
            by_index.extend(zip(saved["params"], group["params"]))

        new_state = {}
        for idx, p in by_index:
            if idx not in state_dict["state"]:
                continue
            xp = backend.get_array_module(p.data)
            entry = {}
            for key, value in state_dict["state"][idx].items():
                if hasattr(value, "shape") and value.ndim > 0:
                    if tuple(value.shape) != tuple(p.data.shape):
                        raise ValueError(f"load_state_dict: state '{key}' of parameter {idx} has "
                                         f"shape {tuple(value.shape)}, parameter has "
                                         f"{tuple(p.data.shape)}")
                    value = xp.array(value, dtype=p.data.dtype)     # copy onto p's device
                elif hasattr(value, "item"):
                    value = value.item()    # 0-d array / numpy scalar (e.g. read back from .npz)
                else:
                    value = copy.deepcopy(value)
                entry[key] = value
            new_state[id(p)] = entry
        self.state = new_state

        for group, saved in zip(self.param_groups, saved_groups):
            for key, value in saved.items():
                if key != "params":
                    group[key] = copy.deepcopy(value)

    def state_arrays(self):
        """``state_dict()`` split for saving: (arrays, rest). ``arrays`` maps
        "state.{index}.{key}" to each NumPy array (for safetensors); ``rest`` holds everything
        else and is JSON-serialisable. ``load_state_arrays`` takes the pair back."""
        sd = self.state_dict()
        arrays, scalars = {}, {}
        for i, s in sd["state"].items():
            scalars[str(i)] = {}
            for k, v in s.items():
                if hasattr(v, "shape"):
                    arrays[f"state.{i}.{k}"] = v
                else:
                    scalars[str(i)][k] = v
        return arrays, {"scalars": scalars, "param_groups": sd["param_groups"]}

    def load_state_arrays(self, arrays, rest):
        """Restore the pair written by ``state_arrays()``."""
        state = {int(i): dict(s) for i, s in rest["scalars"].items()}
        for key, v in arrays.items():
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v
        self.load_state_dict({"state": state, "param_groups": rest["param_groups"]})

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for i, group in enumerate(self.param_groups):
            hyper = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {hyper}")
        return "\n".join(lines + [")"])


def _snapshot(value):
    """A host copy of an array (numpy), or a deep copy of a scalar."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return backend.asnumpy(value).copy()
    return copy.deepcopy(value)
