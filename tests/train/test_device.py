"""--device cpu|cuda|auto and --precision for train, eval and predict, on machines with or
without a GPU: the device logic is tested with the GPU's presence forced either way (so the
tests mean the same everywhere), training runs on the CPU with "auto", a run resumes on the
CPU whatever device it started on, and bf16 training runs (emulated) on the CPU."""
import json
import types

import numpy as np
import pytest

import minitune
from minitune import backend, cli
from minitune.io import read_safetensors
from minitune.testing import assert_close
from minitune.train import TrainArgs, Trainer, train
from pipeline_helpers import InterruptAt, train_args

NO_GPU = "cupy sees no CUDA device (cudaErrorNoDevice: no CUDA-capable device is detected)"


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(backend, "cuda_unavailable_reason", lambda: NO_GPU)


def test_device_names_resolve_without_a_gpu(no_gpu):
    assert backend.resolve_device("cpu") == "cpu"
    assert backend.resolve_device("auto") == "cpu"
    with pytest.raises(RuntimeError) as e:
        backend.resolve_device("cuda")
    assert str(e.value) == (f"device 'cuda' requested, but {NO_GPU}; use --device cpu "
                            f"(or auto)")
    assert not minitune.cuda_available()
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        backend.resolve_device("tpu")


def test_device_names_resolve_with_a_gpu(monkeypatch):
    monkeypatch.setattr(backend, "cuda_unavailable_reason", lambda: None)
    assert [backend.resolve_device(d) for d in ("cpu", "cuda", "auto")] == ["cpu", "gpu", "gpu"]


@pytest.mark.parametrize("failure", ["import", "count", "none"])
def test_cuda_available_never_raises(monkeypatch, failure):
    """A broken CUDA install, a driver that refuses, or no device: False and a reason."""
    def broken_import():
        raise OSError("libcudart.so.13: cannot open shared object file")

    def refuse():
        raise ValueError("driver refused\nsecond line")

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(
        getDeviceCount=refuse if failure == "count" else lambda: 0)))
    monkeypatch.setattr(backend, "_import_cupy", broken_import if failure == "import"
                        else lambda: fake)
    assert minitune.cuda_available() is False
    reason = backend.cuda_unavailable_reason()
    assert "\n" not in reason
    assert {"import": "cupy failed to import (OSError: libcudart.so.13",
            "count": "cupy sees no CUDA device (driver refused)",
            "none": "0 devices"}[failure] in reason


def test_cuda_without_a_gpu_is_a_one_line_error_in_every_command(
        no_gpu, tiny_model_dir, sentiment_files, tmp_path, capsys):
    data = str(sentiment_files / "dev.tsv")
    commands = [["train", "--model", str(tiny_model_dir), "--train", data, "--out",
                 str(tmp_path / "run")],
                ["eval", "--model", str(tiny_model_dir), "--data", data],
                ["predict", "--model", str(tiny_model_dir), "a fine film"]]
    for command in commands:
        assert cli.main(command + ["--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert err == f"minitune {command[0]}: error: device 'cuda' requested, but {NO_GPU}; " \
                      f"use --device cpu (or auto)\n", err
    assert not (tmp_path / "run").exists()              # nothing written before the error


def test_eval_and_predict_with_auto_run_on_the_cpu(no_gpu, tiny_model_dir, sentiment_files,
                                                   tmp_path, capsys):
    train(train_args(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=1))
    capsys.readouterr()
    run, data = str(tmp_path / "run"), str(sentiment_files / "dev.tsv")
    assert cli.main(["eval", "--model", run, "--data", data, "--device", "auto",
                     "--precision", "bf16"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= scores["accuracy"] <= 1.0
    assert cli.main(["predict", "--model", run, "--device", "auto", "a fine film"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "a fine film"


def test_auto_trains_on_the_cpu_bit_for_bit(no_gpu, tiny_model_dir, sentiment_files, tmp_path):
    train(train_args(tiny_model_dir, sentiment_files, tmp_path / "cpu", epochs=1))
    train(train_args(tiny_model_dir, sentiment_files, tmp_path / "auto", epochs=1, device="auto"))
    a = read_safetensors(tmp_path / "cpu" / "last" / "model.safetensors")
    b = read_safetensors(tmp_path / "auto" / "last" / "model.safetensors")
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_a_run_started_on_cuda_resumes_on_the_cpu(no_gpu, tiny_model_dir, sentiment_files,
                                                  tmp_path):
    """trainer_state.json records the device a run started on; --resume computes where it is
    told now (--device, default cpu), and ends with the weights of an uninterrupted run."""
    train(train_args(tiny_model_dir, sentiment_files, tmp_path / "straight", epochs=2))
    with pytest.raises(KeyboardInterrupt):
        Trainer(train_args(tiny_model_dir, sentiment_files, tmp_path / "moved", epochs=2),
                callbacks=[InterruptAt(4)]).fit()
    state_file = tmp_path / "moved" / "last" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    assert state["args"]["device"] == "cpu" and state["step"] == 4
    state["args"]["device"] = "cuda"                  # as a GPU run would have saved it
    state_file.write_text(json.dumps(state))
    with pytest.raises(RuntimeError, match="device 'cuda' requested"):
        Trainer(TrainArgs(out=str(tmp_path / "moved"), resume=True, device="cuda"))
    train(TrainArgs(out=str(tmp_path / "moved"), resume=True, progress=False))
    a = read_safetensors(tmp_path / "straight" / "last" / "model.safetensors")
    b = read_safetensors(tmp_path / "moved" / "last" / "model.safetensors")
    for k in a:
        assert_close(b[k], a[k], rtol=0, atol=0, msg=k)


def test_bf16_training_on_the_cpu_rounds_the_products_and_keeps_float32_weights(
        tiny_model_dir, sentiment_files, tmp_path):
    result = train(train_args(tiny_model_dir, sentiment_files, tmp_path / "bf16", epochs=1,
                            precision="bf16"))
    train(train_args(tiny_model_dir, sentiment_files, tmp_path / "fp32", epochs=1))
    bf16 = read_safetensors(tmp_path / "bf16" / "last" / "model.safetensors")
    fp32 = read_safetensors(tmp_path / "fp32" / "last" / "model.safetensors")
    assert all(w.dtype == np.float32 for w in bf16.values())
    moved = max(float(np.abs(bf16[k] - fp32[k]).max()) for k in fp32)
    assert 0.0 < moved < 1e-2                          # different roundings, the same training
    assert np.isfinite(result["dev"]["accuracy"])
    state = json.loads((tmp_path / "bf16" / "last" / "trainer_state.json").read_text())
    assert state["args"]["precision"] == "bf16"        # part of the run: kept on --resume
