"""Elementwise arithmetic and math: + - * / ** neg exp log sqrt tanh, and comparisons.

Binary ops broadcast like numpy; their backward sums each gradient back to its input's shape
with ``sum_to``. Shapes below: x, y any broadcast-compatible shapes; out the broadcast shape.
"""
import numpy as np

from ..autograd import Function, sum_to
from ..backend import get_array_module


def _binary(op_name, fn, a, b):
    """Run ``fn(a, b)``, turning numpy's broadcast error into one that names the op."""
    try:
        return fn(a, b)
    except ValueError as e:
        if "broadcast" in str(e):
            raise ValueError(f"{op_name}: shapes {np.shape(a)} and {np.shape(b)} do not broadcast"
                             ) from None
        raise


def _unbroadcast(f, ga, gb):
    """Sum ``ga``/``gb`` to the shapes of ``f``'s inputs, skipping inputs that need no grad."""
    return tuple(sum_to(g, shape) if x.requires_grad and g is not None else None
                 for g, shape, x in zip((ga, gb), f.shapes, f.inputs))


class Add(Function):
    def forward(self, a, b):
        self.shapes = (np.shape(a), np.shape(b))
        return _binary("add", lambda u, v: u + v, a, b)

    def backward(self, gy):
        # ga = gy, gb = gy (each summed over the dims it was broadcast along)
        return _unbroadcast(self, gy, gy)


class Sub(Function):
    def forward(self, a, b):
        self.shapes = (np.shape(a), np.shape(b))
        return _binary("sub", lambda u, v: u - v, a, b)

    def backward(self, gy):
        # ga = gy, gb = -gy
        return _unbroadcast(self, gy, -gy if self.inputs[1].requires_grad else None)


def _is_number(x):
    """A Python number: a constant that never needs a gradient."""
    return isinstance(x, (int, float))


class Mul(Function):
    def forward(self, a, b):
        # gb needs a, but never when b is a Python number: then a is not kept (in attention,
        # scores * scale would otherwise keep a (B, NH, T, T) array alive for nothing)
        self.shapes = (np.shape(a), np.shape(b))
        self.a = None if _is_number(b) else a
        self.b = b
        return _binary("mul", lambda u, v: u * v, a, b)

    def backward(self, gy):
        # ga = gy * b, gb = gy * a
        ga = sum_to(gy * self.b, self.shapes[0]) if self.inputs[0].requires_grad else None
        gb = sum_to(gy * self.a, self.shapes[1]) if self.inputs[1].requires_grad else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        # gb needs a, but never when b is a Python number (see Mul)
        self.shapes = (np.shape(a), np.shape(b))
        self.a = None if _is_number(b) else a
        self.b = b
        return _binary("div", lambda u, v: u / v, a, b)

    def backward(self, gy):
        # ga = gy / b, gb = -gy * a / b**2
        b = self.b
        ga = sum_to(gy / b, self.shapes[0]) if self.inputs[0].requires_grad else None
        gb = (sum_to(-gy * self.a / (b * b), self.shapes[1])
              if self.inputs[1].requires_grad else None)
        return ga, gb


class Pow(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        self.y = _binary("pow", lambda u, v: u ** v, a, b)
        return self.y

    def backward(self, gy):
        # ga = gy * b * a**(b-1);  gb = gy * a**b * log(a)   (only needed for a > 0)
        xp = get_array_module(gy)
        a, b = self.a, self.b
        ga = sum_to(gy * b * a ** (b - 1), np.shape(a)) if self.inputs[0].requires_grad else None
        gb = None
        if self.inputs[1].requires_grad:
            gb = sum_to(gy * self.y * xp.log(a), np.shape(b))
        return ga, gb


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        # gx = -gy
        return -gy


class Exp(Function):
    def forward(self, x):
        self.y = get_array_module(x).exp(x)
        return self.y

    def backward(self, gy):
        # d exp(x) = exp(x): gx = gy * y
        return gy * self.y


class Log(Function):
    def forward(self, x):
        self.x = x
        return get_array_module(x).log(x)

    def backward(self, gy):
        # gx = gy / x
        return gy / self.x


class Sqrt(Function):
    def forward(self, x):
        self.y = get_array_module(x).sqrt(x)
        return self.y

    def backward(self, gy):
        # y = x**0.5: gx = gy * 0.5 / y
        return gy * 0.5 / self.y


class Tanh(Function):
    def forward(self, x):
        self.y = get_array_module(x).tanh(x)
        return self.y

    def backward(self, gy):
        # gx = gy * (1 - y**2)
        return gy * (1 - self.y * self.y)


class Compare(Function):
    """Elementwise comparison; the boolean result carries no gradient."""
    differentiable = False

    def __init__(self, name, fn):
        self.name, self.fn = name, fn

    def forward(self, a, b):
        return _binary(self.name, self.fn, a, b)


def add(a, b):
    return Add().apply(a, b)


def sub(a, b):
    return Sub().apply(a, b)


def mul(a, b):
    return Mul().apply(a, b)


def div(a, b):
    return Div().apply(a, b)


def pow(a, b):
    return Pow().apply(a, b)


def neg(x):
    return Neg().apply(x)


def exp(x):
    return Exp().apply(x)


def log(x):
    return Log().apply(x)


def sqrt(x):
    return Sqrt().apply(x)


def tanh(x):
    return Tanh().apply(x)


def less(a, b):
    return Compare("less", lambda u, v: u < v).apply(a, b)


def less_equal(a, b):
    return Compare("less_equal", lambda u, v: u <= v).apply(a, b)


def greater(a, b):
    return Compare("greater", lambda u, v: u > v).apply(a, b)


def greater_equal(a, b):
    return Compare("greater_equal", lambda u, v: u >= v).apply(a, b)


def equal(a, b):
    return Compare("equal", lambda u, v: u == v).apply(a, b)


def not_equal(a, b):
    return Compare("not_equal", lambda u, v: u != v).apply(a, b)
