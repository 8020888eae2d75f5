"""A pickle reader that builds plain data and calls nothing but what it is given.

A pickle is a program for a small stack machine: each opcode pushes a value (an int,
a string), groups values into a container (MARK ... TUPLE), remembers one in a memo
table (BINPUT) or fetches one back (BINGET), and -- the dangerous part -- imports a
global by name (GLOBAL "os" "system") and calls it (REDUCE). This module runs that
machine itself instead of using ``pickle.Unpickler``, for three reasons found by
attacking the C unpickler with hostile checkpoints:

* it hashes dict keys and set elements in C without a recursion check, so a tuple
  nested a million deep used as a dict key kills the process (SIGSEGV);
* it re-hashes a tuple key on every SETITEM, so a 10 MB file can make it hash 10**12
  tuple items (hours of CPU);
* it allocates the length a string opcode declares before reading the bytes, so
  ``BINBYTES8 2**60`` raises MemoryError.

Here every opcode's cost is visible: lengths are checked against the bytes present
before anything is sliced, dict keys must be atoms (str, int, float, bool, None,
bytes) so hashing never recurses, integers are limited to MAX_PICKLE_INT_BYTES, and
the only callables are those in the caller's table. Opcodes a torch state dict never
contains -- sets, object construction by class (NEWOBJ, INST, OBJ), the copyreg
extension registry (EXT1/2/4), out-of-band buffers and protocol 0's text forms of
numbers and strings -- are refused with a CheckpointError naming them.

    value, end = run_pickle(data, "model.bin:archive/data.pkl", find_global, calls)
"""

import struct
import types

from .errors import CheckpointError, UnsafeCheckpointError
from .limits import MAX_PICKLE_INT_BYTES, describe

# Values that may be dict keys: hashing them costs at most their length, never recursion.
_ATOMS = (str, bytes, int, float, bool, type(None))
# Longest module or name of a GLOBAL opcode (a line of text).
_MAX_GLOBAL_LINE = 1024


class PickleTruncated(CheckpointError):
    """The pickle ends before its STOP opcode (the caller may retry with more bytes)."""


class _Mark:
    """What MARK pushes: the start of a group of items for TUPLE, LIST, DICT, ..."""

    def __repr__(self):
        return "MARK"


_MARK = _Mark()


def run_pickle(data, source, find_global, calls, persistent_load=None, start=0):
    """Run the pickle that starts at ``data[start]`` and return its value.

    Args:
        data: bytes holding the pickle (and possibly more after its STOP).
        source: what to name in error messages (file, archive member).
        find_global: function(module, name) -> object for GLOBAL/STACK_GLOBAL; it
            raises UnsafeCheckpointError for names it does not allow.
        calls: dict callable -> (min, max) positional arguments: the only objects
            REDUCE may call. Each must come from ``find_global``.
        persistent_load: function(pid) -> object for BINPERSID, or None to refuse.
        start: offset of the pickle's first opcode in ``data``.

    Returns:
        (value, end): the unpickled value and the offset just after STOP.

    Raises:
        UnsafeCheckpointError: a global outside the allowed table.
        CheckpointError: anything else wrong; PickleTruncated when the data ends early.
    """
    machine = _Machine(data, source, find_global, calls, persistent_load)
    return machine.run(start)


class _Machine:
    """The stack machine; ``run`` executes opcodes until STOP.

    As in Python's own pickle.py, MARK moves the current stack onto ``metastack`` and
    starts an empty one, so "the items since the last MARK" are simply ``stack``, and
    popping below a MARK is popping an empty list (an IndexError, reported as such).
    """

    def __init__(self, data, source, find_global, calls, persistent_load):
        self.data = data
        self.source = source
        self.find_global = find_global
        self.calls = calls
        self.persistent_load = persistent_load
        self.stack = []
        self.metastack = []
        self.memo = {}
        self.pos = 0
        self.op_pos = 0          # where the current opcode started (for messages)

    # --- reading the byte stream ------------------------------------------------------

    def fail(self, message, error=CheckpointError):
        return error(f"{self.source}: corrupt pickle at byte {self.op_pos}: {message}",
                     path=self.source)

    def take(self, n, what):
        """The next ``n`` bytes; ``n`` is checked against what is left first."""
        pos = self.pos
        if n < 0 or n > len(self.data) - pos:
            raise PickleTruncated(
                f"{self.source}: corrupt pickle at byte {self.op_pos}: {what} of {n} bytes "
                f"but only {len(self.data) - pos} bytes are left (truncated?)",
                path=self.source)
        self.pos = pos + n
        return bytes(self.data[pos:pos + n])

    def unpack(self, fmt, what):
        return fmt.unpack(self.take(fmt.size, what))[0]

    def text(self, n, what):
        try:
            return self.take(n, what).decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.fail(f"{what} is not UTF-8 ({e.reason})") from None

    def line(self, what):
        """A newline-terminated ASCII line (GLOBAL's module and name)."""
        end = bytes(self.data[self.pos:self.pos + _MAX_GLOBAL_LINE]).find(b"\n")
        if end < 0:
            raise self.fail(f"{what} is not a line of at most {_MAX_GLOBAL_LINE} bytes")
        raw = self.take(end + 1, what)[:-1]
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"{what} {raw[:40]!r} is not ASCII") from None

    # --- the stack --------------------------------------------------------------------

    def pop_mark(self):
        """The items pushed since the last MARK; the stack before it becomes current."""
        if not self.metastack:
            raise self.fail("an opcode needs a MARK but there is none")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def check_key(self, key):
        if not isinstance(key, _ATOMS):
            raise self.fail(f"a dict key is a {type(key).__name__}; a state dict's keys are "
                            "strings or numbers")
        return key

    def container(self, kind, what):
        target = self.stack[-1]
        if not isinstance(target, kind):
            raise self.fail(f"{what} on a {type(target).__name__}")
        return target

    # --- the loop -----------------------------------------------------------------------

    def run(self, start):
        data, end, handlers = self.data, len(self.data), _HANDLERS
        pos = start
        try:
            while pos < end:
                self.op_pos = pos
                code = data[pos]
                self.pos = pos + 1
                if code == _STOP:
                    return self.stack.pop(), self.pos
                handlers[code](self)
                pos = self.pos
        except IndexError:  # pop/peek of an empty stack (or below a MARK)
            raise self.fail("an opcode needs a value but the stack is empty") from None
        self.op_pos = pos
        raise self.fail("the pickle ends without a STOP opcode (truncated?)", PickleTruncated)


# --- opcode handlers, grouped by family ------------------------------------------------
# Each takes the machine; the table _HANDLERS maps opcode bytes to them.

def _proto(m):
    version = m.take(1, "PROTO")[0]
    if version > 5:
        raise m.fail(f"pickle protocol {version} (at most 5 exists)")


def _frame(m):
    m.take(8, "FRAME length")  # frames only group opcodes for buffered reading


# constants and numbers
def _push(value):
    return lambda m: m.stack.append(value)


def _binint(fmt):
    fmt = struct.Struct(fmt)
    return lambda m: m.stack.append(m.unpack(fmt, "integer"))


def _long(length_fmt):
    length_fmt = struct.Struct(length_fmt)

    def handler(m):
        n = m.unpack(length_fmt, "LONG length")
        if not 0 <= n <= MAX_PICKLE_INT_BYTES:
            raise m.fail(f"an integer of {n} bytes (at most {MAX_PICKLE_INT_BYTES} allowed)")
        m.stack.append(int.from_bytes(m.take(n, "LONG"), "little", signed=True))
    return handler


def _binfloat(m):
    m.stack.append(m.unpack(_DOUBLE, "BINFLOAT"))


_DOUBLE = struct.Struct(">d")


# strings and bytes: a length, then that many bytes
def _string(length_fmt, kind):
    length_fmt = struct.Struct(length_fmt)

    def handler(m):
        n = m.unpack(length_fmt, f"{kind} length")
        m.stack.append(m.text(n, kind) if kind != "bytes" else m.take(n, kind))
    return handler


# containers
def _tuple1(m):
    m.stack[-1] = (m.stack[-1],)


def _tuple2(m):
    last = m.stack.pop()
    m.stack[-1] = (m.stack[-1], last)


def _tuple3(m):
    last, middle = m.stack.pop(), m.stack.pop()
    m.stack[-1] = (m.stack[-1], middle, last)


def _mark(m):
    m.metastack.append(m.stack)
    m.stack = []


def _tuple(m):
    items = m.pop_mark()  # first: it changes m.stack
    m.stack.append(tuple(items))


def _list(m):
    items = m.pop_mark()
    m.stack.append(items)


def _dict(m):
    items = m.pop_mark()
    if len(items) % 2:
        raise m.fail("DICT with an odd number of items")
    m.stack.append({m.check_key(k): v for k, v in zip(items[::2], items[1::2])})


def _append(m):
    value = m.stack.pop()
    m.container(list, "APPEND").append(value)


def _appends(m):
    items = m.pop_mark()
    m.container(list, "APPENDS").extend(items)


def _setitem(m):
    value, key = m.stack.pop(), m.stack.pop()
    m.container(dict, "SETITEM")[m.check_key(key)] = value


def _setitems(m):
    items = m.pop_mark()
    if len(items) % 2:
        raise m.fail("SETITEMS with an odd number of items")
    target = m.container(dict, "SETITEMS")
    for key, value in zip(items[::2], items[1::2]):
        target[m.check_key(key)] = value


# stack manipulation
def _pop(m):
    if m.stack:
        m.stack.pop()
    else:
        m.pop_mark()  # POP right after a MARK removes the MARK, as pickle does


def _pop_mark(m):
    m.pop_mark()


def _dup(m):
    m.stack.append(m.stack[-1])


# the memo: values remembered by index
def _put(index_fmt):
    index_fmt = struct.Struct(index_fmt)

    def handler(m):
        m.memo[m.unpack(index_fmt, "memo index")] = m.stack[-1]
    return handler


def _memoize(m):
    m.memo[len(m.memo)] = m.stack[-1]


def _get(index_fmt):
    index_fmt = struct.Struct(index_fmt)

    def handler(m):
        index = m.unpack(index_fmt, "memo index")
        if index not in m.memo:
            raise m.fail(f"memo index {index} was never stored")
        m.stack.append(m.memo[index])
    return handler


# globals, calls and persistent ids
def _global(m):
    module = m.line("GLOBAL module")
    name = m.line("GLOBAL name")
    m.stack.append(m.find_global(module, name))


def _stack_global(m):
    name, module = m.stack.pop(), m.stack.pop()
    if not (isinstance(module, str) and isinstance(name, str)):
        raise m.fail("STACK_GLOBAL needs two strings")
    m.stack.append(m.find_global(module, name))


def _reduce(m):
    args, func = m.stack.pop(), m.stack.pop()
    # Only functions from the caller's table: the pickle cannot make a function itself
    arity = m.calls.get(func) if type(func) is types.FunctionType else None
    if arity is None:
        raise m.fail(f"REDUCE calls {describe(func)}, which is not a function a state dict "
                     "uses")
    if not isinstance(args, tuple) or not arity[0] <= len(args) <= arity[1]:
        raise m.fail(f"REDUCE calls {func.__name__} with {describe(args)}; it takes "
                     f"{arity[0]} to {arity[1]} arguments")
    m.stack.append(func(*args))


def _build(m):
    m.stack.pop()  # the state: attributes such as OrderedDict._metadata, which minitune ignores
    m.container(dict, "BUILD (setting attributes)")


def _binpersid(m):
    pid = m.stack.pop()
    if m.persistent_load is None:
        raise m.fail(f"unexpected persistent id {describe(pid)}")
    m.stack.append(m.persistent_load(pid))


_OPCODES = {
    b"\x80": _proto, b"\x95": _frame,
    b"N": _push(None), b"\x88": _push(True), b"\x89": _push(False),
    b"J": _binint("<i"), b"K": _binint("<B"), b"M": _binint("<H"),
    b"\x8a": _long("<B"), b"\x8b": _long("<i"), b"G": _binfloat,
    b"X": _string("<I", "str"), b"\x8c": _string("<B", "str"), b"\x8d": _string("<Q", "str"),
    b"T": _string("<i", "str"), b"U": _string("<B", "str"),  # Python 2 str, read as UTF-8
    b"B": _string("<I", "bytes"), b"C": _string("<B", "bytes"), b"\x8e": _string("<Q", "bytes"),
    b")": _push(()), b"\x85": _tuple1, b"\x86": _tuple2, b"\x87": _tuple3,
    b"(": _mark, b"t": _tuple, b"]": lambda m: m.stack.append([]), b"l": _list,
    b"}": lambda m: m.stack.append({}), b"d": _dict,
    b"a": _append, b"e": _appends, b"s": _setitem, b"u": _setitems,
    b"0": _pop, b"1": _pop_mark, b"2": _dup,
    b"q": _put("<B"), b"r": _put("<I"), b"\x94": _memoize,
    b"h": _get("<B"), b"j": _get("<I"),
    b"c": _global, b"\x93": _stack_global, b"R": _reduce, b"b": _build, b"Q": _binpersid,
}

_STOP = ord(".")


def _refuse(name):
    """Handler of a valid pickle opcode this reader refuses."""
    def handler(m):
        if name in _IMPORTING:
            raise m.fail(f"opcode {name} imports a class or function by name or number; "
                         "refused, nothing was executed", UnsafeCheckpointError)
        raise m.fail(f"opcode {name} never appears in a torch state dict")
    return handler


def _unknown(m):
    raise m.fail(f"unknown opcode {m.data[m.op_pos:m.op_pos + 1]!r}")


# Valid pickle opcodes this reader refuses, by name (see the module docstring).
_REFUSED = {
    b"F": "FLOAT (text)", b"I": "INT (text)", b"L": "LONG (text)", b"S": "STRING (text)",
    b"V": "UNICODE (text)", b"P": "PERSID (text)", b"g": "GET (text)", b"p": "PUT (text)",
    b"i": "INST", b"o": "OBJ", b"\x81": "NEWOBJ", b"\x92": "NEWOBJ_EX",
    b"\x82": "EXT1", b"\x83": "EXT2", b"\x84": "EXT4",
    b"\x8f": "EMPTY_SET", b"\x90": "ADDITEMS", b"\x91": "FROZENSET",
    b"\x96": "BYTEARRAY8", b"\x97": "NEXT_BUFFER", b"\x98": "READONLY_BUFFER",
}
# Refused opcodes that reach Python globals: reported as UnsafeCheckpointError.
_IMPORTING = {"INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"}

# Opcode byte -> handler, as a list indexed by the byte (the fastest dispatch in Python).
_HANDLERS = [_unknown] * 256
for _code, _name in _REFUSED.items():
    _HANDLERS[_code[0]] = _refuse(_name)
for _code, _handler in _OPCODES.items():
    _HANDLERS[_code[0]] = _handler

