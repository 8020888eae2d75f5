"""Property: for any bytes, a loader returns or raises a CheckpointError, quickly.

Hypothesis generates safetensors headers, pickle streams, config.json values and
tokenizer configs (structured, so most examples get past the first check), and raw
byte mutations of valid files. Each load must finish in TIME_LIMIT seconds and the
process's peak memory may not grow by more than MEMORY_LIMIT over the run. Under the
``ci`` profile the examples are derandomized; ``HYPOTHESIS_PROFILE=thorough`` runs
many more. tools/fuzz_loaders.py mutates files by the ten thousand in a child process.
"""

import json
import resource
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import torch_writer as tw
from minitune import CheckpointError, Tokenizer
from minitune.io import read_safetensors, read_torch_bin
from minitune.io.json_io import read_json
from minitune.models import BertForSequenceClassification

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TIME_LIMIT = 10.0
MEMORY_LIMIT_MIB = 1024


@pytest.fixture(scope="module", autouse=True)
def memory_bound():
    """The whole module may raise the process's peak RSS by at most MEMORY_LIMIT_MIB."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    yield
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert after - before < MEMORY_LIMIT_MIB, f"peak RSS grew by {after - before:.0f} MiB"


def loads_or_documented(load, *args):
    """Run a loader: it returns, or raises CheckpointError, within TIME_LIMIT."""
    start = time.perf_counter()
    try:
        load(*args)
    except CheckpointError as e:
        assert str(e), "a documented error must say what is wrong"
    assert time.perf_counter() - start < TIME_LIMIT


# --- strategies ------------------------------------------------------------------------------

json_atoms = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 2**64, 10**12]), st.text(max_size=8),
)
json_values = st.recursive(json_atoms, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)


def mutated(data, draw):
    """A few byte-level mutations of ``data``: flips, overwrites, cuts, insertions."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "set", "cut", "insert", "truncate"]))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif action == "cut":
            del data[at:at + draw(st.integers(1, 16))]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at:]
    return bytes(data)


@st.composite
def safetensors_files(draw):
    """A header of 0-3 entries whose fields are right, wrong-typed or out of range."""
    header = {}
    offset = 0
    for i in range(draw(st.integers(0, 3))):
        shape = draw(st.one_of(st.lists(st.integers(0, 4), max_size=3), json_values))
        dtype = draw(st.one_of(st.sampled_from(["F32", "F16", "BF16", "I64", "BOOL", "U8"]),
                               json_values))
        size = draw(st.integers(0, 64))
        offsets = draw(st.one_of(st.just([offset, offset + size]), json_values))
        header[f"t{i}"] = draw(st.one_of(
            st.just({"dtype": dtype, "shape": shape, "data_offsets": offsets}), json_values))
        offset += size
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.one_of(st.just({"format": "pt"}), json_values))
    body = json.dumps(header).encode()
    length = draw(st.one_of(st.just(len(body)), st.integers(0, 2**64 - 1)))
    return struct.pack("<Q", length) + body + draw(st.binary(max_size=256))


# Opcodes with plausible arguments, and any byte: the machine's whole input space.
_OPCODE_CHUNKS = [b"N", b"\x88", b"\x89", b"K\x05", b"J\x01\x00\x00\x00", b"M\x01\x00",
                  b"\x8a\x02\x01\x02", b"X\x01\x00\x00\x00w", b"\x8c\x01w", b"C\x01w",
                  b")", b"\x85", b"\x86", b"\x87", b"(", b"t", b"]", b"l", b"}", b"d",
                  b"a", b"e", b"s", b"u", b"0", b"1", b"2", b"q\x00", b"h\x00", b"\x94",
                  b"R", b"b", b"Q", b"ccollections\nOrderedDict\n",
                  b"ctorch._utils\n_rebuild_tensor_v2\n", b"ctorch\nFloatStorage\n",
                  b"ctorch._tensor\n_rebuild_from_type_v2\n", b"X\x07\x00\x00\x00storage"]


@st.composite
def pickle_streams(draw):
    chunks = draw(st.lists(st.one_of(st.sampled_from(_OPCODE_CHUNKS),
                                     st.binary(min_size=1, max_size=9)), max_size=40))
    return b"\x80\x02" + b"".join(chunks) + b"."


# --- the properties ----------------------------------------------------------------------------

@given(data=safetensors_files())
def test_safetensors_headers(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("st") / "m.safetensors"
    path.write_bytes(data)
    loads_or_documented(read_safetensors, path)


@given(st.data())
def test_safetensors_mutations(tmp_path_factory, data):
    seed = (FIXTURES / "tiny_bert" / "model.safetensors").read_bytes()[:6000]
    path = tmp_path_factory.mktemp("st") / "m.safetensors"
    path.write_bytes(mutated(seed, data.draw))
    loads_or_documented(read_safetensors, path)


@given(stream=pickle_streams(), container=st.sampled_from(["zip", "legacy", "bare"]))
def test_pickle_streams(tmp_path_factory, stream, container):
    path = tmp_path_factory.mktemp("pkl") / "m.bin"
    entries = tw.tensor_entries({"w": np.ones(3, np.float32)})
    if container == "zip":
        tw.write_zip(path, stream, entries.storages)
    elif container == "legacy":
        path.write_bytes(tw.legacy_header() + stream + tw.dumps(["0"]))
    else:
        path.write_bytes(stream)
    loads_or_documented(read_torch_bin, path)


@given(st.data(), st.sampled_from(["zip", "legacy", "tar"]))
def test_torch_file_mutations(tmp_path_factory, data, container):
    path = tmp_path_factory.mktemp("bin") / "m.bin"
    entries = tw.tensor_entries({"a": np.arange(6, dtype=np.float32).reshape(2, 3),
                                 "b": np.ones(2, np.int64)})
    if container == "zip":
        tw.write_zip(path, tw.state_dict_pickle(entries), entries.storages)
    elif container == "legacy":
        tw.write_legacy(path, tw.state_dict_pickle(entries, legacy=True), entries.storages,
                        tw.itemsizes(entries))
    else:
        tw.write_tar(path, entries)
    path.write_bytes(mutated(path.read_bytes(), data.draw))
    loads_or_documented(read_torch_bin, path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    shutil.copy(FIXTURES / "tiny_bert" / "model.safetensors", path)
    return path


@given(changes=st.dictionaries(st.sampled_from([
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "hidden_act", "hidden_dropout_prob", "max_position_embeddings",
    "type_vocab_size", "layer_norm_eps", "pad_token_id", "classifier_dropout", "id2label",
    "num_labels", "label2id", "model_type", "position_embedding_type"]), json_values,
    max_size=3))
def test_config_json_values(model_dir, changes):
    config = json.loads((FIXTURES / "tiny_bert" / "config.json").read_text())
    config.update(changes)
    (model_dir / "config.json").write_text(json.dumps(config))
    loads_or_documented(BertForSequenceClassification.from_pretrained, model_dir)


@given(st.data())
def test_json_reader_on_mutated_bytes(tmp_path_factory, data):
    seed = (FIXTURES / "tiny_bert" / "config.json").read_bytes()
    path = tmp_path_factory.mktemp("json") / "config.json"
    path.write_bytes(mutated(seed, data.draw))
    loads_or_documented(read_json, path)


@given(options=st.dictionaries(st.sampled_from([
    "do_lower_case", "strip_accents", "tokenize_chinese_chars", "model_max_length",
    "unk_token", "cls_token", "sep_token", "pad_token", "mask_token"]), json_values,
    max_size=3))
def test_tokenizer_config_values(tmp_path_factory, options):
    path = tmp_path_factory.mktemp("tok")
    (path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n")
    (path / "tokenizer_config.json").write_text(json.dumps(options))
    loads_or_documented(Tokenizer.from_pretrained, path)
