"""Looking inside a running model without editing it: ``summary`` and ``capture``.

    from minitune.nn.inspect import summary, capture

    print(summary(model, input_ids))            # each module: output shape, parameter count

    with capture(model, "encoder.layer.*.output") as cap:
        model(input_ids, labels=labels).loss.backward()
    cap.activations["encoder.layer.0.output"]   # (B, T, H) what the module returned
    cap.grads["encoder.layer.0.output"]         # (B, T, H) d loss / d that output

Both work through forward hooks (``Module.register_forward_hook``) that are removed when done.
Gradients of intermediate tensors are normally freed as soon as backward has used them; to keep
one, ``capture`` passes the module's output through an identity op (``_Tap``) whose backward
records the gradient flowing through it and hands it on unchanged.
"""
import contextlib
import re

from ..autograd import Function, is_grad_enabled, no_grad
from ..backend import asnumpy
from ..tensor import Tensor


def _pattern(p):
    """Module-name pattern -> regex: ``*`` stands for one name part (no dots), ``**`` for any
    run of parts, so "encoder.layer.*.output" is each layer's output, not attention.output."""
    parts = re.split(r"(\*\*|\*)", p)
    return re.compile("".join({"**": ".*", "*": "[^.]*"}.get(x, re.escape(x)) for x in parts)
                      + r"\Z")


def _shape_of(out):
    """Output shape(s) for a table: a Tensor's shape, or those of a tuple/ModelOutput's Tensors."""
    if isinstance(out, Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)):
        return tuple(_shape_of(o) for o in out)
    fields = getattr(out, "__dataclass_fields__", None)
    if fields:
        return {k: tuple(v.shape) for k in fields if isinstance(v := getattr(out, k), Tensor)}
    return type(out).__name__


class Summary:
    """The rows of ``summary``: (name, type, output shape, parameters), in tree order."""

    def __init__(self, rows, total, trainable):
        self.rows, self.total, self.trainable = rows, total, trainable

    def __str__(self):
        head = ("module", "type", "output shape", "params")
        body = [(name, kind, str(shape), f"{n:,}") for name, kind, shape, n in self.rows]
        widths = [max(len(r[i]) for r in [head] + body) for i in range(4)]
        line = "  ".join(f"{{:<{w}}}" for w in widths[:3]) + f"  {{:>{widths[3]}}}"
        out = [line.format(*head), "-" * (sum(widths) + 6)]
        out += [line.format(*r) for r in body]
        out.append(f"total parameters: {self.total:,} ({self.trainable:,} trainable)")
        return "\n".join(out)

    __repr__ = __str__


def summary(model, *args, depth=None, **kwargs):
    """Run ``model(*args, **kwargs)`` once and tabulate every module that ran.

    Args:
        model: a Module; it runs in eval mode under ``no_grad`` (its mode is restored after), so
            dropout draws nothing and the model's RNG is untouched.
        args, kwargs: a real input, e.g. a (B, T) array of token ids.
        depth: keep modules at most this many dots deep (1: the model's direct children).

    Returns:
        A ``Summary``; print it for the table. ``params`` of a row counts every parameter
        below that module (embeddings.word_embeddings: V * H).
    """
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    rows, handles = [], []
    for name, module in model.named_modules():
        if name and (depth is None or name.count(".") < depth):
            def record(m, inputs, out, name=name):
                rows.append((name, type(m).__name__, _shape_of(out),
                         sum(p.size for p in m.parameters())))
            handles.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(*args, **kwargs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    rows.sort(key=lambda r: order[r[0]])          # hooks fire children first; show parents first
    params = model.parameters()
    return Summary(rows, sum(p.size for p in params),
                   sum(p.size for p in params if p.requires_grad))


class _Tap(Function):
    """Identity whose backward records the gradient passing through: y = x, gx = gy."""

    def __init__(self, store, name):
        self.store, self.name = store, name

    def forward(self, x):
        return x

    def backward(self, gy):
        # gx = gy; a module called twice adds up its gradients, as autograd would
        previous = self.store.get(self.name)
        self.store[self.name] = asnumpy(gy).copy() if previous is None else previous + asnumpy(gy)
        return gy


class Captured:
    """What ``capture`` collected: ``activations`` and ``grads``, dicts name -> numpy array."""

    def __init__(self):
        self.activations, self.grads = {}, {}

    def __repr__(self):
        return f"Captured(activations={sorted(self.activations)}, grads={sorted(self.grads)})"


@contextlib.contextmanager
def capture(model, *patterns, grads=True):
    """Record the outputs of the modules named by ``patterns`` (and their gradients).

    Args:
        model: a Module.
        patterns: module names or patterns: ``*`` is one part of a dotted name
            ("encoder.layer.*.attention" for every layer's), ``**`` any number of parts
            ("**.dense"); none means every module. A pattern matching no module is an error.
        grads: also record d(loss)/d(output) during ``backward()`` (for outputs that are part
            of the graph, i.e. the forward ran with grad enabled on trainable parameters).

    Yields:
        A ``Captured``. Activations are numpy copies of each module's Tensor output (for a
        module called more than once, the last call); grads fill in when ``backward`` runs,
        which may be inside or after the ``with`` block.
    """
    names = [name for name, _ in model.named_modules() if name]
    regexes = [_pattern(p) for p in patterns or ("**",)]
    for p, r in zip(patterns, regexes):
        if not any(r.match(n) for n in names):
            raise ValueError(f"capture: no module of {type(model).__name__} matches {p!r}; "
                             f"names look like {names[:3] + names[-2:]}")
    result = Captured()
    handles = []
    for name, module in model.named_modules():
        if not name or not any(r.match(name) for r in regexes):
            continue

        def hook(m, inputs, out, name=name):
            if not isinstance(out, Tensor):
                return None
            result.activations[name] = asnumpy(out.data).copy()
            if grads and out.requires_grad and is_grad_enabled():
                return _Tap(result.grads, name).apply(out)
            return None
        handles.append(module.register_forward_hook(hook))
    try:
        yield result
    finally:
        for h in handles:
            h.remove()
