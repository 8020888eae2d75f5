"""minitune.io.tokenizer_files via Tokenizer.from_pretrained: bad files get errors naming the
file (and line or key)."""

import json

import pytest

from minitune import CheckpointError, ConfigError, Tokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]


def tok_dir(tmp_path, **files):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else
                                      content.encode("utf-8"))
    return tmp_path


def test_vocab_txt_line_endings_are_universal_newlines(tmp_path):
    for newline in ("\n", "\r\n", "\r"):
        path = tok_dir(tmp_path, **{"vocab.txt": newline.join(VOCAB) + newline})
        assert Tokenizer.from_pretrained(path).convert_tokens_to_ids("world") == 6


def test_vocab_txt_not_utf8_names_the_line(tmp_path):
    path = tok_dir(tmp_path, **{"vocab.txt": "\n".join(VOCAB).encode() + b"\nbad\xff\n"})
    with pytest.raises(CheckpointError, match=r"vocab.txt:8: not UTF-8"):
        Tokenizer.from_pretrained(path)


def test_vocab_without_unk_names_the_file(tmp_path):
    path = tok_dir(tmp_path, **{"vocab.txt": "a\nb\n"})
    with pytest.raises(CheckpointError, match=r"vocab.txt: vocabulary lacks the unk_token"):
        Tokenizer.from_pretrained(path)


@pytest.mark.parametrize("config, message", [
    ({"do_lower_case": "yes"}, "tokenizer_config.json:1: do_lower_case: invalid value 'yes'"),
    ({"model_max_length": 0}, "model_max_length: invalid value 0"),
    ({"unk_token": {"lstrip": True}}, "unk_token: must be a token string"),
    ([1, 2], "must be a JSON object"),
])
def test_tokenizer_config_values_are_checked(tmp_path, config, message):
    path = tok_dir(tmp_path, **{"vocab.txt": "\n".join(VOCAB),
                                "tokenizer_config.json": json.dumps(config)})
    with pytest.raises(ConfigError, match=message):
        Tokenizer.from_pretrained(path)


def test_tokenizer_json_the_library_rejects(tmp_path):
    path = tok_dir(tmp_path, **{"tokenizer.json": '{"model": 5}'})
    with pytest.raises(CheckpointError, match="tokenizer.json: the tokenizers library cannot"):
        Tokenizer.from_pretrained(path)


def test_no_tokenizer_files(tmp_path):
    with pytest.raises(CheckpointError, match="no tokenizer found"):
        Tokenizer.from_pretrained(tmp_path)
