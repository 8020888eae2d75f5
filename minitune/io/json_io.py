"""The one JSON reader for model files: config.json, tokenizer configs, shard indexes.

JSON from a model directory is untrusted, so reading it is bounded and every problem
is reported in one format, naming the file, the line and the key::

    model/config.json: model config not found
    model/config.json: model config is 20000000 bytes; at most 16777216 are read
    model/config.json:7:3: model config is not valid JSON: Expecting ',' delimiter
    model/config.json:5: num_attention_heads: must be an integer >= 1, got 0

The bounds (minitune/io/limits.py): the file size is checked before reading, nesting
depth after parsing (Python's parser itself stops at ~1,000 levels with a
RecursionError, reported here too; a deeper limit is then counted on the text), and numbers of more than 4,300 digits are refused
by Python. Duplicate keys, which ``json`` would silently resolve to the last value,
are errors, and so are strings holding unpaired UTF-16 surrogates (``"\\ud800"``),
which no UTF-8 file or the Rust tokenizer can hold.
"""

import json
import re
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .limits import MAX_JSON_BYTES, MAX_JSON_DEPTH, read_file_limited


# A JSON escape of a UTF-16 surrogate: the only way a lone surrogate gets into a string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abAB]")
# A JSON string (in valid JSON), and the bracket bytes that open and close containers.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_OPENING = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSING = np.frombuffer(b"]}", dtype=np.uint8)


class DuplicateKey(Exception):
    """Raised inside json.loads by ``refuse_duplicate_keys``; its caller turns it into an
    error that says where (``key`` is the key given twice)."""

    def __init__(self, key):
        super().__init__(key)
        self.key = key


def read_json(path, what="JSON file", error=CheckpointError, max_bytes=MAX_JSON_BYTES,
              max_depth=MAX_JSON_DEPTH):
    """Read and parse a JSON file from a model directory.

    Args:
        path: the file.
        what: what the file is, for messages ("model config", "shard index").
        error: the exception class to raise (a CheckpointError subclass).
        max_bytes / max_depth: the bounds checked before and after parsing.

    Returns:
        The parsed value (dict, list, str, int, float, bool or None).

    Raises:
        ``error``: missing file, too large, not UTF-8, not valid JSON, too deep,
            a duplicate key or an unpaired surrogate; the message names the file and,
            where it applies, the line and key.
    """
    path = Path(path)
    data = read_file_limited(path, what, max_bytes, error)
    return parse_json(data, path, what, error, max_depth)


# Line ends as Python's universal newlines count them (so every line number in messages).
LINE_END = re.compile(rb"\r\n|\r|\n")


def first_undecodable(data, codec="utf-8"):
    """Where ``data`` (bytes) stops being ``codec`` text: (line, offset, byte) of the first
    byte that does not decode, or None when all of it does. A UTF-8 byte-order mark is
    skipped (and counted in the offset); lines end at \\n, \\r\\n or \\r."""
    data = bytes(data)
    skip = 3 if codec.replace("_", "-").lower() in ("utf-8", "utf-8-sig", "utf8") and \
        data.startswith(b"\xef\xbb\xbf") else 0
    try:
        data[skip:].decode(codec)
    except UnicodeDecodeError as e:
        offset = skip + e.start
        return len(LINE_END.findall(data, 0, offset)) + 1, offset, data[offset:offset + 1]
    return None


def parse_json(data, source, what, error=CheckpointError, max_depth=MAX_JSON_DEPTH):
    """Parse JSON ``data`` (bytes or str) read from ``source`` (a path, or a description
    such as "model.safetensors header"); see ``read_json`` for what is checked."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8-sig")  # editors on Windows add a BOM
        except UnicodeDecodeError:
            line, offset, byte = first_undecodable(data)
            raise error(f"{source}:{line}: {what} is not UTF-8 text (byte {byte!r} at offset "
                        f"{offset})", path=source, line=line) from None
    else:
        text = data
    try:
        value = json.loads(text, object_pairs_hook=refuse_duplicate_keys)
    except json.JSONDecodeError as e:
        raise error(f"{source}:{e.lineno}:{e.colno}: {what} is not valid JSON: {e.msg}",
                    path=source, line=e.lineno) from None
    except DuplicateKey as e:
        raise key_error(source, e.key, "appears twice in the same object", error,
                        text=text) from None
    except RecursionError:
        raise error(f"{source}: {what} is nested too deeply (more than {max_depth} "
                    "levels of arrays/objects)", path=source) from None
    except ValueError as e:  # Python refuses integers of more than 4,300 digits
        raise error(f"{source}: {what} is not usable JSON: {e}", path=source) from None
    if isinstance(value, (dict, list)) and _depth(text) > max_depth:
        raise error(f"{source}: {what} is nested more than {max_depth} levels deep",
                    path=source)
    if _SURROGATE_ESCAPE.search(text):
        _check_surrogates(value, source, what, error)
    return value


def refuse_duplicate_keys(pairs):
    """``object_pairs_hook`` for json.loads: a dict, or DuplicateKey for a key given twice
    (json.loads would silently keep the last value)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return result


def _depth(text):
    """Deepest nesting of arrays/objects in *valid* JSON text, counted without recursion.

    String contents are blanked first (they may hold brackets); on valid JSON the
    pattern matches each string once, so this is linear. Then +1 per opening and -1
    per closing bracket, and the running sum's maximum is the depth (NumPy: a 10 MB
    file takes milliseconds, where walking 3 million parsed lists takes seconds).
    """
    structure = _STRING.sub('""', text).encode("ascii", "replace")
    codes = np.frombuffer(structure, dtype=np.uint8)
    step = np.isin(codes, _OPENING).astype(np.int8) - np.isin(codes, _CLOSING)
    return int(np.cumsum(step, dtype=np.int32).max(initial=0))


def _check_surrogates(value, source, what, error):
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_text(item, source, what, error)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _check_text(text, source, what, error):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise error(f"{source}: {what} holds an unpaired surrogate "
                    f"{text[e.start:e.start + 1]!r} in {text[:40]!r}", path=source) from None


def key_error(source, key, message, error=CheckpointError, text=None):
    """An ``error`` about one key of a JSON file: ``file:line: key: message``.

    Args:
        source: the file (Path) or a description of where the JSON came from.
        key: a key, or a tuple of keys from the top level down (``("id2label", "3")``).
        message: what is wrong with its value.
        error: the exception class.
        text: the JSON text, if at hand; else it is read from ``source`` when that is
            a file, to find the line where the key first appears (omitted if not found).

    Returns:
        The exception (for ``raise``).
    """
    keys = key if isinstance(key, tuple) else (key,)
    shown = format_key(keys)
    line = _line_of(source, keys, text)
    where = f"{source}:{line}" if line else f"{source}"
    return error(f"{where}: {shown}: {message}", path=source, key=shown, line=line)


def format_key(keys):
    """("weight_map", "bert.x") -> 'weight_map["bert.x"]'; a plain key stays as it is."""
    keys = keys if isinstance(keys, tuple) else (keys,)
    first, rest = str(keys[0]), keys[1:]
    return first + "".join(f"[{json.dumps(k, ensure_ascii=False)}]" for k in rest)


def _line_of(source, keys, text):
    """Line (1-based) where the key path first appears in the JSON text, or None."""
    if text is None:
        try:
            path = Path(source)
            if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
                return None
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError, TypeError, ValueError):
            return None
    position = 0
    for key in keys:
        if not isinstance(key, str):
            continue  # an array index: stay where the enclosing key was found
        quoted = re.escape(json.dumps(key, ensure_ascii=False))
        match = re.compile(quoted + r"\s*:").search(text, position)
        if match is None:
            return None
        position = match.start()
    return text.count("\n", 0, position) + 1
