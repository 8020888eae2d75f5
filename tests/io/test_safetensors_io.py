"""The safetensors reader and writer: round trips, half/bf16 to float32, corrupt files."""
import json
import struct

import numpy as np
import pytest

import torch_writer as tw  # tests/ is on sys.path (pyproject.toml)
from minitune.io import CheckpointError, read_safetensors, write_safetensors


def sample_arrays():
    rng = np.random.default_rng(1)
    return {
        "w": rng.standard_normal((3, 5)).astype(np.float32),
        "d": rng.standard_normal(4),
        "ids": np.arange(7, dtype=np.int64),
        "mask": np.array([True, False]),
        "scalar": np.array(1.25, dtype=np.float32),
        "empty": np.zeros((0, 2), dtype=np.float32),
    }


def test_safetensors_round_trip(tmp_path):
    arrays = sample_arrays()
    arrays["strided"] = np.arange(12, dtype=np.float32).reshape(3, 4).T  # not C-contiguous
    write_safetensors(arrays, tmp_path / "m.safetensors")
    got = read_safetensors(tmp_path / "m.safetensors")
    assert set(got) == set(arrays)
    for name, array in arrays.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
        np.testing.assert_array_equal(got[name], array)


def test_safetensors_default_metadata_is_pt(tmp_path):
    """Hugging Face's loaders require __metadata__ {"format": "pt"}."""
    from minitune.io.safetensors_io import safetensors_metadata

    write_safetensors({"w": np.ones(2, np.float32)}, tmp_path / "m.safetensors")
    assert safetensors_metadata(tmp_path / "m.safetensors") == {"format": "pt"}


def test_safetensors_rejects_non_numpy(tmp_path):
    with pytest.raises(TypeError, match="'w'"):
        write_safetensors({"w": [1.0, 2.0]}, tmp_path / "m.safetensors")


def raw_safetensors(header, data=b""):
    body = json.dumps(header).encode()
    return struct.pack("<Q", len(body)) + body + data


def test_safetensors_half_and_bf16_become_float32(tmp_path):
    values = np.array([1.0, -2.5, 0.375, 1024.0], dtype=np.float32)  # exact in bf16 and f16
    bf16 = tw.to_bf16_bits(values).tobytes()
    f16 = values.astype("<f2").tobytes()
    header = {"b": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
              "h": {"dtype": "F16", "shape": [4], "data_offsets": [8, 16]}}
    (tmp_path / "m.safetensors").write_bytes(raw_safetensors(header, bf16 + f16))
    got = read_safetensors(tmp_path / "m.safetensors")
    assert got["b"].dtype == np.float32 and got["h"].dtype == np.float32
    np.testing.assert_array_equal(got["b"], values.reshape(2, 2))
    np.testing.assert_array_equal(got["h"], values)


@pytest.mark.parametrize("content, message", [
    (b"", "8-byte header length"),
    (b"\x05\x00\x00", "8-byte header length"),
    (struct.pack("<Q", 10**6) + b"{}", "header length field says 1000000"),
    (struct.pack("<Q", 5) + b"{nope", "header is not valid JSON"),
    (struct.pack("<Q", 2) + b"[]", "not an object"),
    (raw_safetensors({"w": {"dtype": "F32", "shape": [2]}}), "lacks dtype/shape/data_offsets"),
    (raw_safetensors({"w": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
     "dtype 'F99'"),
    (raw_safetensors({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
     "needs 12 bytes"),
    (raw_safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 9),
     "truncated"),
    (raw_safetensors({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}),
     "invalid shape"),
])
def test_corrupt_safetensors_name_file_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        read_safetensors(path)
    assert "bad.safetensors" in str(info.value)


def test_truncated_real_safetensors(tmp_path):
    write_safetensors(sample_arrays(), tmp_path / "ok.safetensors")
    data = (tmp_path / "ok.safetensors").read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 20):
        (tmp_path / "cut.safetensors").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="cut.safetensors"):
            read_safetensors(tmp_path / "cut.safetensors")


def test_safetensors_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_safetensors(tmp_path / "none.safetensors")
