"""A corpus of hostile model files, each loaded in a child process with a memory limit.

Every file must load or raise a CheckpointError (docs/security.md): no other exception,
no crash of the process, no run longer than 30 s, no load using more than 2 GiB, and
no payload executed (each would create a marker file). The corpus: code-execution
payloads in every container format, every pickle opcode, deep nesting, huge declared
sizes, compression bombs, and bad config.json / tokenizer / shard index files.
"""

import json
import shutil
import struct
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import torch_writer as tw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MEM_LIMIT = 2 << 30
TIME_LIMIT = 30.0


# --- building blocks -----------------------------------------------------------------------

def small_entries():
    return tw.tensor_entries({"w": np.arange(6, dtype=np.float32).reshape(2, 3)})


def zip_with_pickle(path, data, storages=None):
    tw.write_zip(path, data, storages or {})


def legacy_with_pickle(path, data, tail=b""):
    with open(path, "wb") as f:
        f.write(tw.legacy_header() + data + tail)


def tar_with_members(path, members):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, __import__("io").BytesIO(data))


def state_dict_with(value):
    """A pickle of {"w": value} (value given as pickle opcodes, without PROTO/STOP)."""
    return b"\x80\x02}X\x01\x00\x00\x00w" + value + b"s."


def raw_safetensors(header, data=b""):
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(body)) + body + data


def payloads(marker):
    """Pickle opcodes that would create ``marker`` if the loader executed them."""
    cmd = f"touch {marker}".encode()
    arg = b"X" + struct.pack("<I", len(cmd)) + cmd
    return {
        "global_reduce": b"\x80\x02cposix\nsystem\n(" + arg + b"tR.",
        "stack_global": (b"\x80\x04\x8c\x05posix\x8c\x06system\x93(" + arg + b"tR."),
        "builtins_eval": (b"\x80\x02cbuiltins\neval\n(X" + struct.pack(
            "<I", len(f"__import__('os').system('{cmd.decode()}')"))
            + f"__import__('os').system('{cmd.decode()}')".encode() + b"tR."),
        "inst": b"(" + arg + b"iposix\nsystem\n.",
        "obj": b"\x80\x02(cposix\nsystem\n" + arg + b"o.",
        "newobj": b"\x80\x02cbuiltins\nobject\n)\x81.",
        "ext1": b"\x80\x02\x82\x01)R.",
        "build_setstate": b"\x80\x02ccollections\nOrderedDict\n)R}bcposix\nsystem\nb.",
        "nested_loader": (b"\x80\x02ctorch.storage\n_load_from_bytes\n(C\x05hellotR."),
        "reduce_on_allowed_then_global": (b"\x80\x02ccollections\nOrderedDict\n)R(X\x01"
                                          b"\x00\x00\x00wcos\nsystem\nu."),
    }


# --- the corpus ------------------------------------------------------------------------------

def build_corpus(root, marker):
    """Write every hostile file under ``root``; return [(case id, kind, path)]."""
    cases = []

    def add(name, kind, path):
        cases.append((name, kind, path))

    def file(name, kind, data):
        path = root / name
        path.write_bytes(data)
        add(path.stem, kind, path)

    # code execution, in every container
    for name, payload in payloads(marker).items():
        zip_with_pickle(root / f"exec_{name}_zip.bin", payload)
        add(f"exec_{name}_zip", "bin", root / f"exec_{name}_zip.bin")
        legacy_with_pickle(root / f"exec_{name}_legacy.bin", payload)
        add(f"exec_{name}_legacy", "bin", root / f"exec_{name}_legacy.bin")
        file(f"exec_{name}_bare.bin", "bin", payload)
        entries = small_entries()
        tar_path = root / f"exec_{name}_tar.bin"
        tw.write_tar(tar_path, entries)
        with tarfile.open(tar_path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        members["pickle"] = payload
        tar_with_members(tar_path, members)
        add(f"exec_{name}_tar", "bin", tar_path)
    evil_storage = tw.dumps(tw.Call(tw.Global("torch._utils", "_rebuild_tensor_v2"), (
        tw.PersistentId(("storage", tw.Global("posix", "system"), "0", "cpu", 1)),
        0, (1,), (1,), False, tw.ODict())))
    zip_with_pickle(root / "exec_in_persistent_id.bin", evil_storage, {"0": b"\0" * 4})
    add("exec_in_persistent_id", "bin", root / "exec_in_persistent_id.bin")

    # every opcode byte, alone and after a plausible prefix
    for code in range(256):
        op = bytes([code])
        file(f"opcode_{code:02x}.bin", "bin", b"\x80\x02" + op + b"\x00" * 12 + b".")
        zip_with_pickle(root / f"opcode_{code:02x}_in_dict.bin",
                        state_dict_with(b"(" + op + b"\x01\x00\x00\x00" + b"t"))
        add(f"opcode_{code:02x}_in_dict", "bin", root / f"opcode_{code:02x}_in_dict.bin")

    # deep nesting
    zip_with_pickle(root / "deep_tuple_key.bin", b"\x80\x02})" + b"\x85" * 10**6 + b"Ns.")
    deep = 100_000
    add("deep_tuple_key", "bin", root / "deep_tuple_key.bin")
    zip_with_pickle(root / "deep_frozenset.bin", b"\x80\x02)" + b"\x85" * 1000 + b"\x91.")
    add("deep_frozenset", "bin", root / "deep_frozenset.bin")
    zip_with_pickle(root / "deep_lists.bin", b"\x80\x02" + b"]" * deep + b"a" * (deep - 1) + b".")
    add("deep_lists", "bin", root / "deep_lists.bin")
    zip_with_pickle(root / "deep_value.bin", state_dict_with(b")" + b"\x85" * deep))
    add("deep_value", "bin", root / "deep_value.bin")
    zip_with_pickle(root / "deep_marks.bin", b"\x80\x02" + b"(" * deep + b"N.")
    add("deep_marks", "bin", root / "deep_marks.bin")
    file("deep_safetensors_header.safetensors", "safetensors",
         raw_safetensors(b"[" * 100_000 + b"]" * 100_000))
    file("deep_header_value.safetensors", "safetensors", raw_safetensors(
        b'{"w": {"dtype": "F32", "shape": ' + b"[" * 50_000 + b"]" * 50_000
        + b', "data_offsets": [0, 0]}}'))

    # huge declared sizes
    entries = small_entries()
    good_legacy = root / "good_legacy.bin"
    tw.write_legacy(good_legacy, tw.state_dict_pickle(entries, legacy=True), entries.storages,
                    tw.itemsizes(entries))
    data = good_legacy.read_bytes()
    count_at = data.rindex(struct.pack("<q", 6))
    for n in (2**31, 2**40, 2**62, -1):
        file(f"legacy_count_{n}.bin", "bin",
             data[:count_at] + struct.pack("<q", n) + data[count_at + 8:])
    for name, op in {"binunicode8": b"\x8d", "binbytes8": b"\x8e"}.items():
        zip_with_pickle(root / f"huge_{name}.bin",
                        b"\x80\x04" + op + struct.pack("<Q", 2**60) + b"x.")
        add(f"huge_{name}", "bin", root / f"huge_{name}.bin")
    file("huge_binunicode.bin", "bin", b"\x80\x02X\xff\xff\xff\xffx.")
    file("huge_long4.bin", "bin", b"\x80\x02\x8b\xff\xff\xff\x7f" + b"\x01" * 64 + b".")
    zip_with_pickle(root / "huge_long4_zip.bin",
                    b"\x80\x02\x8b\x00\x00\x10\x00" + b"\x07" * (1 << 20) + b".")
    add("huge_long4_zip", "bin", root / "huge_long4_zip.bin")
    for name, (size, stride) in {
        "overflow_int64": ((2**62, 4), (0, 1)),
        "zero_times_huge": ((0, 2**62), (1, 1)),
        "broadcast": ((10**9,), (0,)),
        "many_dims": ((1,) * 70, (1,) * 70),
    }.items():
        entry = tw.Entry("w", "FloatStorage", "0", 6, 0, size, stride)
        zip_with_pickle(root / f"tensor_{name}.bin",
                        tw.state_dict_pickle(tw.Entries([entry], entries.storages)),
                        entries.storages)
        add(f"tensor_{name}", "bin", root / f"tensor_{name}.bin")
    storage = {"0": bytes(1 << 16)}
    many = [tw.Entry(f"w{i}", "FloatStorage", "0", 1 << 14, 0, (1 << 14,), (1,))
            for i in range(5000)]
    zip_with_pickle(root / "many_views_of_one_storage.bin",
                    tw.state_dict_pickle(tw.Entries(many, storage)), storage)
    add("many_views_of_one_storage", "bin", root / "many_views_of_one_storage.bin")
    big = tw.Entry("w", "FloatStorage", "0", 2**40, 0, (2**40,), (1,))
    zip_with_pickle(root / "zip_numel_2e40.bin",
                    tw.state_dict_pickle(tw.Entries([big], {})), {"0": b"\0" * 64})
    add("zip_numel_2e40", "bin", root / "zip_numel_2e40.bin")
    for name, header in {
        "header_len_2e63": struct.pack("<Q", 2**63) + b"{}",
        "shape_2e64": raw_safetensors({"w": {"dtype": "F32", "shape": [2**64],
                                             "data_offsets": [0, 4]}}, b"\0" * 4),
        "shape_product": raw_safetensors({"w": {"dtype": "F32", "shape": [2**40, 2**40, 0],
                                                "data_offsets": [0, 0]}}),
        "dtype_list": raw_safetensors({"w": {"dtype": ["F32"], "shape": [1],
                                             "data_offsets": [0, 4]}}, b"\0" * 4),
        "offsets_huge": raw_safetensors({"w": {"dtype": "U8", "shape": [1],
                                               "data_offsets": [2**70, 2**70 + 1]}}),
        "overlapping": raw_safetensors({"a": {"dtype": "U8", "shape": [4],
                                              "data_offsets": [0, 4]},
                                        "b": {"dtype": "U8", "shape": [4],
                                              "data_offsets": [0, 4]}}, b"\0" * 4),
        "metadata_list": raw_safetensors({"__metadata__": [1, 2]}),
        "not_utf8": struct.pack("<Q", 4) + b"\xff\xfe{}",
        "many_tensors": raw_safetensors({f"t{i}": {"dtype": "F32", "shape": [0],
                                                   "data_offsets": [0, 0]}
                                         for i in range(20_000)}),
    }.items():
        file(f"st_{name}.safetensors", "safetensors", header)
    tar_path = root / "tar_huge_member.bin"
    tw.write_tar(tar_path, small_entries())
    raw = bytearray(tar_path.read_bytes())
    raw[124:136] = b"\x80" + b"\x00" * 3 + b"\xff" * 8   # base-256 size field: 2**64 - 1
    file("tar_huge_member.bin", "bin", bytes(raw))
    storages = tw.dumps(1) + tw.dumps(("0", "cpu", tw.Global("torch", "FloatStorage")))
    tar_with_members(root / "tar_count_2e62.bin", {
        "storages": storages + struct.pack("<q", 2**62) + b"\0" * 16,
        "tensors": tw.dumps(0), "pickle": tw.dumps({})})
    add("tar_count_2e62", "bin", root / "tar_count_2e62.bin")
    tar_with_members(root / "tar_wrong_records.bin", {
        "storages": tw.dumps("three") + tw.dumps([1, 2]), "tensors": tw.dumps(None),
        "pickle": tw.dumps({})})
    add("tar_wrong_records", "bin", root / "tar_wrong_records.bin")
    tensors = tw.dumps(1) + tw.dumps(("t0", "0", None)) + struct.pack("<i", 2**31 - 1)
    tar_with_members(root / "tar_ndim_2e31.bin", {
        "storages": storages + struct.pack("<q", 1) + b"\0" * 4 + tw.dumps([]),
        "tensors": tensors + b"\0" * 64, "pickle": tw.dumps({})})
    add("tar_ndim_2e31", "bin", root / "tar_ndim_2e31.bin")

    # compression bombs: 64 MiB of zeros deflate to 64 KiB
    bomb = root / "zip_bomb_storage.bin"
    entry = tw.Entry("w", "FloatStorage", "0", 2**24, 0, (2**24,), (1,))
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", tw.state_dict_pickle(tw.Entries([entry], {})))
        with zf.open("archive/data/0", "w", force_zip64=True) as member:
            zeros = bytes(1 << 20)
            for _ in range(64):
                member.write(zeros)
    add("zip_bomb_storage", "bin", bomb)
    pickle_bomb = root / "zip_bomb_pickle.bin"
    with zipfile.ZipFile(pickle_bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("archive/data.pkl", "w", force_zip64=True) as member:
            member.write(b"\x80\x02")
            for _ in range(16):
                member.write(b"N" * (1 << 20))
    add("zip_bomb_pickle", "bin", pickle_bomb)
    compressed = zlib.compress(bytes(64 << 20), 9)
    file("legacy_then_bomb_bytes.bin", "bin", data + compressed)

    # config.json, model directories
    for name, change in {
        "vocab_1e12": {"vocab_size": 10**12},
        "intermediate_1e10": {"intermediate_size": 10**10},
        "layers_1e6": {"num_hidden_layers": 10**6},
        "labels_1e9": {"num_labels": 10**9, "id2label": None},
        "labels_1e5": {"num_labels": 100_000, "id2label": None},
        "hidden_1e6": {"hidden_size": 10**6},
        "heads_0": {"num_attention_heads": 0},
        "sizes_as_strings": {"hidden_size": "32"},
        "id2label_list": {"id2label": ["a", "b"]},
        "id2label_gaps": {"id2label": {"0": "a", "7": "b"}},
        "dropout_nan": {"hidden_dropout_prob": float("nan")},
        "dropout_1": {"attention_probs_dropout_prob": 1.0},
        "eps_negative": {"layer_norm_eps": -1},
        "act_list": {"hidden_act": ["gelu"]},
        "model_type_gpt2": {"model_type": "gpt2"},
        "bool_size": {"vocab_size": True},
        "pad_out_of_range": {"pad_token_id": 10**30},
    }.items():
        model_dir = root / f"config_{name}"
        shutil.copytree(FIXTURES / "tiny_bert", model_dir)
        config = json.loads((model_dir / "config.json").read_text())
        for key, value in change.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        (model_dir / "config.json").write_text(json.dumps(config))
        add(f"config_{name}", "model", model_dir)
    for name, text in {
        "deep": "[" * 100_000 + "]" * 100_000,
        "huge_number": '{"vocab_size": ' + "9" * 5000 + "}",
        "duplicate_keys": '{"hidden_size": 32, "hidden_size": 64}',
        "surrogate": '{"hidden_act": "\\ud800"}',
        "not_object": "[1, 2, 3]",
        "big_file": '{"x": "' + "a" * (17 << 20) + '"}',
    }.items():
        model_dir = root / f"configjson_{name}"
        shutil.copytree(FIXTURES / "tiny_bert", model_dir)
        (model_dir / "config.json").write_text(text)
        add(f"configjson_{name}", "model", model_dir)
    model_dir = root / "configjson_latin1"
    shutil.copytree(FIXTURES / "tiny_bert", model_dir)
    (model_dir / "config.json").write_bytes(b'{"hidden_act": "g\xe9lu"}')
    add("configjson_latin1", "model", model_dir)

    # shard indexes
    for name, index in {
        "escape": {"weight_map": {"w": "../model.safetensors"}},
        "list": {"weight_map": ["model.safetensors"]},
        "nul": {"weight_map": {"w": "a\u0000b"}},
        "long_name": {"weight_map": {"w": "a" * 5000}},
        "not_object": [1],
    }.items():
        model_dir = root / f"index_{name}"
        model_dir.mkdir()
        (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))
        add(f"index_{name}", "checkpoint", model_dir)

    # tokenizer files
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]
    for name, files in {
        "tokenizer_json_garbage": {"tokenizer.json": b"{\"model\": 5}"},
        "tokenizer_json_deep": {"tokenizer.json": b"[" * 100_000 + b"]" * 100_000},
        "tokenizer_json_not_utf8": {"tokenizer.json": b"{\"a\": \"\xff\"}"},
        "tokenizer_json_huge_ids": {"tokenizer.json": json.dumps({
            "version": "1.0", "model": {"type": "WordPiece", "unk_token": "[UNK]",
                                        "vocab": {"[UNK]": 2**62, "[CLS]": 2**63 - 1}}
        }).encode()},
        "vocab_not_utf8": {"vocab.txt": "\n".join(vocab).encode() + b"\n\xff\xfe\n"},
        "vocab_no_unk": {"vocab.txt": b"a\nb\n"},
        "config_wrong_types": {"vocab.txt": "\n".join(vocab).encode(),
                               "tokenizer_config.json": json.dumps({
                                   "do_lower_case": "yes", "model_max_length": "big",
                                   "unk_token": {"no_content": 1}}).encode()},
        "config_list": {"vocab.txt": "\n".join(vocab).encode(),
                        "special_tokens_map.json": b"[1, 2]"},
        "max_length_nan": {"vocab.txt": "\n".join(vocab).encode(),
                           "tokenizer_config.json": b'{"model_max_length": NaN}'},
    }.items():
        model_dir = root / f"tok_{name}"
        model_dir.mkdir()
        for filename, content in files.items():
            (model_dir / filename).write_bytes(content)
        add(f"tok_{name}", "tokenizer", model_dir)
    return cases


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every corpus file's outcome: {case id: outcome dict}, from one child process."""
    root = tmp_path_factory.mktemp("hostile")
    marker = root / "PWNED"
    cases = build_corpus(root, marker)
    results = {}
    with hostile.Child(mem_limit=MEM_LIMIT, timeout=2 * TIME_LIMIT) as child:
        for name, kind, path in cases:
            results[name] = child.run(kind, path)
    results["__marker__"] = marker.exists()
    return results


def test_no_payload_ran(outcomes):
    assert not outcomes["__marker__"], "a pickle payload was executed"


def test_every_hostile_file_gets_a_documented_error(outcomes):
    bad = {name: (r["outcome"], r["error"], r["detail"][:200])
           for name, r in outcomes.items() if name != "__marker__"
           and r["outcome"] not in ("ok", "documented")}
    assert not bad, f"{len(bad)} files escaped the documented errors: {bad}"


def test_loads_stay_within_time_and_memory(outcomes):
    results = [r for name, r in outcomes.items() if name != "__marker__"]
    slow = {r["path"]: round(r["seconds"], 1) for r in results if r["seconds"] > TIME_LIMIT}
    assert not slow
    assert max(r["max_rss_mib"] for r in results) < MEM_LIMIT / 2**20 + 1024


@pytest.mark.parametrize("name, reason", [
    ("exec_global_reduce_zip", "posix.system"),
    ("exec_stack_global_legacy", "posix.system"),
    ("exec_builtins_eval_tar", "builtins.eval"),
    ("exec_inst_bare", "INST"),
    ("exec_ext1_zip", "EXT1"),
    ("deep_tuple_key", "dict key is a tuple"),
    ("huge_binbytes8", "bytes are left"),
    ("legacy_count_1099511627776", "truncated"),
    ("tensor_overflow_int64", "more than twice"),
    ("tensor_zero_times_huge", "larger than any tensor"),
    ("many_views_of_one_storage", "twice"),
    ("zip_numel_2e40", "more than the archive can hold"),
    ("zip_bomb_storage", "more than the archive can hold"),
    ("zip_bomb_pickle", "longer than"),
    ("st_dtype_list", "dtype"),
    ("st_overlapping", "overlaps"),
    ("config_heads_0", "config.json:\\d+: num_attention_heads: must be >= 1, got 0"),
    ("config_sizes_as_strings", "config.json:\\d+: hidden_size: must be an integer"),
    ("config_id2label_list", "config.json:\\d+: id2label: must be an object"),
    ("config_vocab_1e12", "config.json:\\d+: vocab_size: .* more than the 2.15e\\+09"),
    ("config_hidden_1e6", "config.json:\\d+: hidden_size: 1000000 makes a model of"),
    ("config_intermediate_1e10", "config.json:\\d+: intermediate_size: 10000000000 makes"),
    ("config_layers_1e6", "num_hidden_layers: must be >= 0 and <= 1024"),
    ("config_labels_1e9", "num_labels: must be >= 1 and <= 100000"),
    ("configjson_duplicate_keys", "config.json:1: hidden_size: appears twice"),
    ("configjson_latin1", "config.json:1: model config is not UTF-8"),
    ("index_escape", 'weight_map\\["w"\\]: .* is not a file name'),
    ("tok_vocab_not_utf8", "vocab.txt:8: not UTF-8"),
    ("tok_config_wrong_types", "tokenizer_config.json:1: do_lower_case"),
])
def test_messages_name_file_and_problem(outcomes, name, reason):
    import re
    result = outcomes[name]
    assert result["outcome"] == "documented", result
    assert re.search(reason, result["detail"]), result["detail"]
