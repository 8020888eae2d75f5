"""minitune.io.json_io: one bounded JSON reader, one error format (file:line: key: ...)."""

import json

import pytest

from minitune import CheckpointError, ConfigError
from minitune.io.json_io import format_key, key_error, parse_json, read_json


def write(tmp_path, text, name="config.json"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_reads_objects_and_accepts_a_bom(tmp_path):
    assert read_json(write(tmp_path, '{"a": [1, 2.5, null]}')) == {"a": [1, 2.5, None]}
    assert read_json(write(tmp_path, b'\xef\xbb\xbf{"a": 1}')) == {"a": 1}


@pytest.mark.parametrize("text, message", [
    ('{\n  "a": 1,\n  oops\n}', r"config.json:3:3: model config is not valid JSON"),
    (b'{\n"a": "\xff"}', r"config.json:2: model config is not UTF-8"),
    ('{"a": 1,\n "a": 2}', r"config.json:1: a: appears twice"),
    ('{"a": "\\ud800"}', r"unpaired surrogate"),
    ("[" * 5000 + "]" * 5000, r"nested too deeply"),
    ("[" * 70 + "]" * 70, r"nested more than 64 levels"),
    ('{"a": ' + "9" * 5000 + "}", r"not usable JSON"),
])
def test_bad_json_names_file_line_and_problem(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        read_json(write(tmp_path, text), what="model config", error=ConfigError)
    assert info.value.path is not None


def test_missing_and_too_large_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_json(tmp_path / "absent.json")
    path = write(tmp_path, '{"a": "' + "x" * 100 + '"}')
    with pytest.raises(CheckpointError, match="at most 50 are read"):
        read_json(path, max_bytes=50)


def test_key_error_finds_the_line_of_a_nested_key(tmp_path):
    text = json.dumps({"x": 1, "weight_map": {"a.b": "s1", "c": "../s2"}}, indent=2)
    path = write(tmp_path, text, "index.json")
    error = key_error(path, ("weight_map", "c"), "is not a file name")
    assert str(error) == f'{path}:5: weight_map["c"]: is not a file name'
    assert (error.key, error.line) == ('weight_map["c"]', 5)
    assert str(key_error(path, "absent", "missing")) == f"{path}: absent: missing"


def test_format_key():
    assert format_key("a") == "a"
    assert format_key(("id2label", "3")) == 'id2label["3"]'


def test_parse_json_of_embedded_text():
    with pytest.raises(CheckpointError, match=r"^m.safetensors:1:2: header is not valid JSON"):
        parse_json(b"{nope", "m.safetensors", "header")


def test_the_first_bad_byte_is_found_after_a_byte_order_mark_and_any_line_end(tmp_path):
    """One helper finds the line of the first undecodable byte for every reader: a UTF-8 BOM
    counts in the offset, not as a line, and \\r alone ends a line (as in vocab.txt)."""
    from minitune import data
    from minitune.io.json_io import first_undecodable
    from minitune.io.tokenizer_files import read_vocab

    assert first_undecodable(b"\xef\xbb\xbfab\n\xffc") == (2, 6, b"\xff")
    assert first_undecodable(b"a\rb\r\nc\r\xff") == (4, 7, b"\xff")
    assert first_undecodable(b"\xef\xbb\xbfok") is None
    assert first_undecodable(b"caf\xe9", "latin-1") is None
    (tmp_path / "x.txt").write_bytes(b"\xef\xbb\xbfab\n\xffc\n")
    with pytest.raises(ValueError, match=r"x\.txt:2: not utf-8"):
        data.read_texts(tmp_path / "x.txt")
    (tmp_path / "c.json").write_bytes(b'\xef\xbb\xbf{\n"a":\n"\xff"}')
    with pytest.raises(CheckpointError, match=r"c\.json:3: .* \(byte b'\\xff' at offset 11\)"):
        read_json(tmp_path / "c.json", what="a config")
    (tmp_path / "vocab.txt").write_bytes(b"a\rb\rc\r\xff\r")
    with pytest.raises(CheckpointError, match=r"vocab\.txt:4: not UTF-8"):
        read_vocab(tmp_path / "vocab.txt")
