"""minitune.io.read_torch_bin: PyTorch checkpoints read without torch, and refused when
they try to run code.

Valid files are written by tests/torch_writer.py, which emits the pickle opcodes by hand
(no torch needed); real torch-saved files from tests/fixtures are compared when present.
"""

import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

import torch_writer as tw  # tests/ is on sys.path (pyproject.toml)
from minitune.io import CheckpointError, UnsafeCheckpointError, read_torch_bin
from minitune.testing import assert_close
from paths import FIXTURES


def sample_tensors():
    rng = np.random.default_rng(0)
    return {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f64": rng.standard_normal((2, 2, 2)),
        "i64": np.arange(-3, 4, dtype=np.int64),
        "i32": np.array([[1, -2], [3, 4]], dtype=np.int32),
        "i16": np.array([7, -8], dtype=np.int16),
        "i8": np.array([-1, 2], dtype=np.int8),
        "u8": np.array([0, 255], dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def assert_same(got, want):
    """The same names, in order, and bitwise the same arrays (shape and dtype included)."""
    assert list(got) == list(want)
    for name, array in want.items():
        assert_close(got[name], array, rtol=0, atol=0, check_dtype=True, msg=name)


# --- valid files --------------------------------------------------------------------------


def write_zip(path, tensors):
    entries = tw.tensor_entries(tensors)
    tw.write_zip(path, tw.state_dict_pickle(entries), entries.storages)


def write_legacy(path, tensors):
    entries = tw.tensor_entries(tensors, key_prefix="9400")
    tw.write_legacy(path, tw.state_dict_pickle(entries, legacy=True), entries.storages,
                    tw.itemsizes(entries))


def write_tar(path, tensors):
    tw.write_tar(path, tw.tensor_entries(tensors))


@pytest.mark.parametrize("write, names", [
    (write_zip, None),                         # every dtype
    (write_legacy, None),
    (write_tar, ("f32", "i64", "scalar")),     # the 2017 tar format: a few are enough
])
def test_each_format_round_trips(tmp_path, write, names):
    tensors = {k: v for k, v in sample_tensors().items() if names is None or k in names}
    write(tmp_path / "m.bin", tensors)
    assert_same(read_torch_bin(tmp_path / "m.bin"), tensors)


def test_half_and_bfloat16_become_float32(tmp_path):
    values = np.array([[1.0, -2.0, 0.5], [3.25, -0.125, 1024.0]], dtype=np.float32)
    entries = tw.tensor_entries({"half": values.astype(np.float16), "bf16": values},
                                bf16={"bf16"})
    assert entries.items[1].storage_name == "BFloat16Storage"
    tw.write_zip(tmp_path / "m.bin", tw.state_dict_pickle(entries), entries.storages)
    got = read_torch_bin(tmp_path / "m.bin")
    for name in ("half", "bf16"):
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], values)


def test_shared_storage_offsets_and_strides(tmp_path):
    """Tensors are views of a storage: offset, size and stride are honoured, then copied."""
    storage = np.arange(12, dtype=np.float32)
    items = [
        tw.Entry("matrix", "FloatStorage", "0", 12, 0, (3, 4), (4, 1)),
        tw.Entry("transposed", "FloatStorage", "0", 12, 0, (4, 3), (1, 4)),
        tw.Entry("row1", "FloatStorage", "0", 12, 4, (4,), (1,)),
        tw.Entry("column2", "FloatStorage", "0", 12, 2, (3,), (4,)),
    ]
    entries = tw.Entries(items, {"0": storage.tobytes()})
    tw.write_zip(tmp_path / "m.bin", tw.state_dict_pickle(entries), entries.storages)
    got = read_torch_bin(tmp_path / "m.bin")
    matrix = storage.reshape(3, 4)
    np.testing.assert_array_equal(got["matrix"], matrix)
    np.testing.assert_array_equal(got["transposed"], matrix.T)
    np.testing.assert_array_equal(got["row1"], matrix[1])
    np.testing.assert_array_equal(got["column2"], matrix[:, 2])
    assert got["transposed"].flags.c_contiguous and got["transposed"].flags.writeable
    got["row1"][0] = -1  # copies: writing one does not change another
    assert got["matrix"][1, 0] == 4


def test_big_endian_zip(tmp_path):
    values = np.array([1.5, -2.0, 3.0], dtype=np.float32)
    ints = np.array([1, 2**40], dtype=np.int64)
    entries = tw.tensor_entries({"f": values, "i": ints})
    storages = {"0": values.astype(">f4").tobytes(), "1": ints.astype(">i8").tobytes()}
    tw.write_zip(tmp_path / "m.bin", tw.state_dict_pickle(entries), storages, byteorder="big")
    got = read_torch_bin(tmp_path / "m.bin")
    np.testing.assert_array_equal(got["f"], values)
    np.testing.assert_array_equal(got["i"], ints)
    assert got["f"].dtype.isnative and got["i"].dtype.isnative


def test_other_archive_name_and_no_byteorder_record(tmp_path):
    """Older torch names the folder after the file and writes no byteorder record."""
    tensors = {"w": np.ones((2, 2), np.float32)}
    entries = tw.tensor_entries(tensors)
    tw.write_zip(tmp_path / "m.bin", tw.state_dict_pickle(entries), entries.storages,
                 archive="pytorch_model", byteorder=None)
    assert_same(read_torch_bin(tmp_path / "m.bin"), tensors)


def test_parameters_and_tensor_subclass_wrappers(tmp_path):
    """nn.Parameter (_rebuild_parameter) and _rebuild_from_type_v2 unwrap to the data."""
    entries = tw.tensor_entries({"a": np.float32([1, 2]), "b": np.float32([3])})
    a, b = (tw.rebuild_call(e) for e in entries.items)
    wrapped = tw.ODict([
        ("a", tw.Call(tw.Global("torch._utils", "_rebuild_parameter"), (a, True, tw.ODict()))),
        ("b", tw.Call(tw.Global("torch._tensor", "_rebuild_from_type_v2"),
                      (tw.Global("torch._utils", "_rebuild_tensor_v2"),
                       tw.Global("torch.nn.parameter", "Parameter"), b.args, {}))),
    ])
    tw.write_zip(tmp_path / "m.bin", tw.dumps(wrapped), entries.storages)
    got = read_torch_bin(tmp_path / "m.bin")
    np.testing.assert_array_equal(got["a"], [1, 2])
    np.testing.assert_array_equal(got["b"], [3])


def test_legacy_storage_view(tmp_path):
    """Legacy persistent ids may name a view (view_key, offset, numel) of a root storage."""
    storage = np.arange(10, dtype=np.float32)
    pid = ("storage", tw.Global("torch", "FloatStorage"), "root", "cpu", 10, ("view", 6, 3))
    call = tw.Call(tw.Global("torch._utils", "_rebuild_tensor_v2"),
                   (tw.PersistentId(pid), 1, (2,), (1,), False, tw.ODict()))
    tw.write_legacy(tmp_path / "m.bin", tw.dumps(tw.ODict([("v", call)])),
                    {"root": storage.tobytes()}, {"root": 4})
    np.testing.assert_array_equal(read_torch_bin(tmp_path / "m.bin")["v"], [7, 8])


@pytest.mark.parametrize("dirname", ["tiny_bert_bin", "tiny_bert_legacy"])
def test_real_torch_files_equal_safetensors(dirname):
    """Files written by torch.save (tools/make_hf_fixtures.py) hold the safetensors weights."""
    path = FIXTURES / dirname / "pytorch_model.bin"
    reference = FIXTURES / "tiny_bert" / "model.safetensors"
    if not (path.is_file() and reference.is_file()):
        pytest.skip(f"fixture {path} or {reference} not present")
    from minitune.io import read_safetensors

    got, want = read_torch_bin(path), read_safetensors(reference)
    assert set(got) == set(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


# --- malicious files ----------------------------------------------------------------------


class Evil:
    """Unpickling this runs a shell command (the classic pickle attack)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_pickle(marker):
    return pickle.dumps(Evil(marker), protocol=2)


def test_the_payload_really_runs_with_plain_pickle(tmp_path):
    """Sanity check of the attack used below: the standard unpickler executes it."""
    marker = tmp_path / "pwned_plain"
    pickle.loads(evil_pickle(marker))
    assert marker.exists()


@pytest.mark.parametrize("frame", [
    lambda path, marker: tw.write_zip(path, evil_pickle(marker), {}),
    lambda path, marker: path.write_bytes(tw.legacy_header() + evil_pickle(marker)
                                          + tw.dumps([])),
    # a .bin that is just a pickle (no torch framing), protocol 4 (STACK_GLOBAL)
    lambda path, marker: path.write_bytes(pickle.dumps(Evil(marker), protocol=4)),
], ids=["zip", "legacy", "bare"])
def test_os_system_is_refused(tmp_path, frame):
    marker = tmp_path / "pwned"
    frame(tmp_path / "m.bin", marker)
    with pytest.raises(UnsafeCheckpointError, match=r"\.system") as info:
        read_torch_bin(tmp_path / "m.bin")
    assert "m.bin" in str(info.value)
    assert not marker.exists()


def test_malicious_tar_pickle_is_refused(tmp_path):
    import tarfile

    marker = tmp_path / "pwned_tar"
    good = tw.tensor_entries({"w": np.ones(2, np.float32)})
    tw.write_tar(tmp_path / "ok.bin", good)
    with tarfile.open(tmp_path / "ok.bin") as src, tarfile.open(tmp_path / "m.bin", "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == "pickle":
                data = evil_pickle(marker)
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    with pytest.raises(UnsafeCheckpointError):
        read_torch_bin(tmp_path / "m.bin")
    assert not marker.exists()


@pytest.mark.parametrize("module, name, arg", [
    ("builtins", "eval", "__import__('os').system('touch {marker}')"),
    ("builtins", "exec", "import os; os.system('touch {marker}')"),
    ("builtins", "getattr", None),
    ("torch.storage", "_load_from_bytes", None),
    ("subprocess", "check_call", None),
    ("builtins", "__import__", "os"),
    ("copyreg", "_reconstructor", None),
])
def test_dangerous_globals_are_refused(tmp_path, module, name, arg):
    marker = tmp_path / "pwned"
    args = (arg.format(marker=marker),) if arg else ("x",)
    payload = tw.ODict([("w", tw.Call(tw.Global(module, name), args))])
    tw.write_zip(tmp_path / "m.bin", tw.dumps(payload), {})
    with pytest.raises(UnsafeCheckpointError, match=f"{module}.{name}"):
        read_torch_bin(tmp_path / "m.bin")
    assert not marker.exists()


def test_evil_entry_after_valid_tensors_is_refused(tmp_path):
    marker = tmp_path / "pwned_late"
    entries = tw.tensor_entries({"w": np.ones(2, np.float32)})
    evil = tw.Call(tw.Global("posix", "system"), (f"touch {marker}",))
    data = tw.state_dict_pickle(entries, extra_items=[("late", evil)])
    tw.write_zip(tmp_path / "m.bin", data, entries.storages)
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        read_torch_bin(tmp_path / "m.bin")
    assert not marker.exists()


def test_evil_global_as_storage_type_is_refused(tmp_path):
    pid = ("storage", tw.Global("posix", "system"), "0", "cpu", 1)
    call = tw.Call(tw.Global("torch._utils", "_rebuild_tensor_v2"),
                   (tw.PersistentId(pid), 0, (1,), (1,), False, tw.ODict()))
    tw.write_zip(tmp_path / "m.bin", tw.dumps(tw.ODict([("w", call)])), {"0": b"\0" * 4})
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        read_torch_bin(tmp_path / "m.bin")


def test_unsafe_error_is_a_checkpoint_error():
    assert issubclass(UnsafeCheckpointError, CheckpointError)
    assert issubclass(CheckpointError, ValueError)


# --- corrupt files ------------------------------------------------------------------------


def write_valid_zip(path):
    entries = tw.tensor_entries({"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    tw.write_zip(path, tw.state_dict_pickle(entries), entries.storages)
    return entries


def test_truncated_zip(tmp_path):
    write_valid_zip(tmp_path / "ok.bin")
    data = (tmp_path / "ok.bin").read_bytes()
    (tmp_path / "m.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="m.bin"):
        read_torch_bin(tmp_path / "m.bin")


def test_missing_storage_record(tmp_path):
    entries = tw.tensor_entries({"w": np.ones(3, np.float32)})
    tw.write_zip(tmp_path / "m.bin", tw.state_dict_pickle(entries), {})
    with pytest.raises(CheckpointError, match="archive/data/0 is missing"):
        read_torch_bin(tmp_path / "m.bin")


def test_storage_too_short(tmp_path):
    entries = tw.tensor_entries({"w": np.ones(3, np.float32)})
    tw.write_zip(tmp_path / "m.bin", tw.state_dict_pickle(entries), {"0": b"\0" * 8})
    with pytest.raises(CheckpointError, match="8 bytes, expected 12"):
        read_torch_bin(tmp_path / "m.bin")


@pytest.mark.parametrize("offset, size, stride", [
    (0, (4, 4), (4, 1)),   # more elements than the storage
    (10, (3,), (1,)),      # runs off the end
    (0, (2, 2), (1, 12)),  # a stride beyond the end
    (-1, (2,), (1,)),      # negative offset
    (0, (2,), (-1,)),      # negative stride
])
def test_out_of_bounds_views_are_errors_not_crashes(tmp_path, offset, size, stride):
    entry = tw.Entry("w", "FloatStorage", "0", 12, offset, size, stride)
    entries = tw.Entries([entry], {"0": np.zeros(12, np.float32).tobytes()})
    tw.write_zip(tmp_path / "m.bin", tw.state_dict_pickle(entries), entries.storages)
    with pytest.raises(CheckpointError, match="'w'"):
        read_torch_bin(tmp_path / "m.bin")


def test_truncated_legacy_storage(tmp_path):
    entries = tw.tensor_entries({"w": np.ones(4, np.float32)})
    tw.write_legacy(tmp_path / "ok.bin", tw.state_dict_pickle(entries, legacy=True),
                    entries.storages, tw.itemsizes(entries))
    data = (tmp_path / "ok.bin").read_bytes()
    (tmp_path / "m.bin").write_bytes(data[:-5])
    with pytest.raises(CheckpointError, match="truncated"):
        read_torch_bin(tmp_path / "m.bin")


def test_legacy_wrong_protocol_version(tmp_path):
    with open(tmp_path / "m.bin", "wb") as f:
        f.write(tw.dumps(tw.LEGACY_MAGIC) + tw.dumps(999))
    with pytest.raises(CheckpointError, match="protocol version 999"):
        read_torch_bin(tmp_path / "m.bin")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "m.bin").write_bytes(struct.pack("<4d", 1, 2, 3, 4))
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_torch_bin(tmp_path / "m.bin")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_torch_bin(tmp_path / "nope.bin")


def test_zip_without_data_pkl(tmp_path):
    with zipfile.ZipFile(tmp_path / "m.bin", "w") as zf:
        zf.writestr("something/else.txt", "hi")
    with pytest.raises(CheckpointError, match="data.pkl"):
        read_torch_bin(tmp_path / "m.bin")


def test_non_tensor_entries_are_rejected(tmp_path):
    entries = tw.tensor_entries({"w": np.ones(2, np.float32)})
    data = tw.state_dict_pickle(entries, extra_items=[("epoch", 3)])
    tw.write_zip(tmp_path / "m.bin", data, entries.storages)
    with pytest.raises(CheckpointError, match="'epoch'"):
        read_torch_bin(tmp_path / "m.bin")


def test_corrupt_pickle_bytes(tmp_path):
    tw.write_zip(tmp_path / "m.bin", b"\x80\x02}q\x00(X\xff\xff", {})
    with pytest.raises(CheckpointError, match="corrupt pickle"):
        read_torch_bin(tmp_path / "m.bin")


def test_build_opcode_cannot_alter_the_allowed_table(tmp_path):
    """BUILD rewrites an object's __dict__; it is refused on anything but a dict."""
    from minitune.io.torch_pickle import ALLOWED_GLOBALS

    payload = (b"\x80\x02ctorch\nFloatStorage\n}X\x04\x00\x00\x00nameX\x0b\x00\x00\x00"
               b"LongStoragesb.")  # FloatStorage.__dict__.update({"name": "LongStorage"})
    tw.write_zip(tmp_path / "evil.bin", payload, {})
    with pytest.raises(CheckpointError, match="BUILD"):
        read_torch_bin(tmp_path / "evil.bin")
    assert ALLOWED_GLOBALS[("torch", "FloatStorage")].name == "FloatStorage"
    write_valid_zip(tmp_path / "ok.bin")
    assert read_torch_bin(tmp_path / "ok.bin")["w"].dtype == np.float32


def test_build_opcode_cannot_corrupt_a_tensor_record(tmp_path):
    """A BUILD after _rebuild_tensor_v2 rewriting its size is refused, not crashed on."""
    entries = tw.tensor_entries({"w": np.ones(4, np.float32)})
    tensor = tw.dumps(tw.rebuild_call(entries.items[0]))[2:-1]  # without PROTO and STOP
    build = b'}X\x04\x00\x00\x00sizeX\x03\x00\x00\x00bads'  # {"size": "bad"}
    payload = b"\x80\x02}X\x01\x00\x00\x00w" + tensor + build + b"bs."
    tw.write_zip(tmp_path / "m.bin", payload, entries.storages)
    with pytest.raises(CheckpointError, match="BUILD"):
        read_torch_bin(tmp_path / "m.bin")
