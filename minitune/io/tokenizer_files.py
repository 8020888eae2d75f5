"""Read a model directory's tokenizer files as untrusted data (docs/security.md).

``tokenizer.json`` is size-bounded and handed to the Rust tokenizers library, whose
errors and panics become CheckpointError; ``vocab.txt`` is size-bounded and decoded with
the line of any bad byte named; the options of ``tokenizer_config.json`` and
``special_tokens_map.json`` that minitune uses are type-checked (ConfigError naming the
file, line and key). minitune/tokenizer.py builds the tokenizer from what these return.
"""

import io
import math
from pathlib import Path

from ..tokenizer import SPECIAL_TOKEN_KEYS
from .errors import CheckpointError, ConfigError
from .json_io import first_undecodable, key_error, read_json
from .limits import (MAX_TOKENIZER_JSON_BYTES, MAX_VOCAB_BYTES, describe, read_file_limited,
                     shorten)

# Options of tokenizer_config.json minitune reads, with the types they may have.
_OPTION_TYPES = {
    "do_lower_case": (bool,), "strip_accents": (bool, type(None)),
    "tokenize_chinese_chars": (bool,), "model_max_length": (int, float),
}


def read_tokenizer_config(model_dir):
    """tokenizer_config.json updated with special_tokens_map.json (both optional).

    Raises:
        ConfigError: not a JSON object, or an option minitune uses has the wrong type
            (``file:line: key: ...``).
    """
    config = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = Path(model_dir) / name
        if path.is_file():
            data = read_json(path, what="tokenizer config", error=ConfigError)
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: must be a JSON object, got {describe(data)}",
                                  path=path)
            _check_options(data, path)
            config.update(data)
    return config


def _check_options(data, path):
    for key, types in _OPTION_TYPES.items():
        value = data.get(key)
        if key in data and (not isinstance(value, types) or (
                key == "model_max_length" and (isinstance(value, bool) or value < 1 or (
                    isinstance(value, float) and not math.isfinite(value))))):
            raise key_error(path, key, f"invalid value {describe(value)}", ConfigError)
    for key in SPECIAL_TOKEN_KEYS:
        value = data.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if key in data and not (isinstance(value, str) and value):
            raise key_error(path, key, "must be a token string (or {\"content\": token}), "
                            f"got {describe(data[key])}", ConfigError)


def read_tokenizer_json(path):
    """Load tokenizer.json with the Rust library, after bounding its size and encoding."""
    from tokenizers import Tokenizer as RustTokenizer

    data = read_file_limited(path, "tokenizer file", MAX_TOKENIZER_JSON_BYTES)
    text = _utf8(data, path)
    try:
        return RustTokenizer.from_str(text)
    except BaseException as e:  # noqa: BLE001 - a Rust panic arrives as a BaseException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise CheckpointError(f"{path}: the tokenizers library cannot load it "
                              f"({shorten(str(e))})", path=path) from None


def read_vocab(path):
    """vocab.txt: one token per line; the id is the line number (0-based).

    Lines end at \\n, \\r\\n or \\r (Python's universal newlines, as transformers reads it).
    """
    path = Path(path)
    data = read_file_limited(path, "vocabulary file", MAX_VOCAB_BYTES)
    return [line.rstrip("\n") for line in io.StringIO(_utf8(data, path), newline=None)]


def _utf8(data, path):
    """Decode UTF-8; an error names the line of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        line, _, byte = first_undecodable(data)
        raise CheckpointError(f"{path}:{line}: not UTF-8 text (byte {byte!r})", path=path,
                              line=line) from None
