"""Shared test configuration: hypothesis profiles, the ``xp`` fixture and the ``gpu`` marker.

Hypothesis profiles (choose with the environment variable HYPOTHESIS_PROFILE, default "ci"):
    ci        derandomized (the same examples on every run), 25 examples per test, no deadline
    thorough  500 random examples per test, for a local hunt:
              HYPOTHESIS_PROFILE=thorough python -m pytest tests/ops

Tests marked ``gpu`` (and the cupy case of ``xp``) are skipped when cupy sees no CUDA device;
with REQUIRE_GPU=1 they fail instead, so a GPU job cannot pass by skipping everything.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from minitune import backend
from pipeline_helpers import NER_SENTENCES, save_tiny_bert

# Property tests draw shapes from hypothesis and values from a seeded numpy Generator; the
# xp fixture is a module, so sharing it across examples is harmless.
_SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("ci", derandomize=True, max_examples=25, deadline=None,
                          suppress_health_check=_SUPPRESS, print_blob=True)
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=_SUPPRESS, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

_gpu = None


def _gpu_available():
    global _gpu
    if _gpu is None:
        _gpu = backend.gpu_available()
    return _gpu


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is None or _gpu_available():
        return
    if os.environ.get("REQUIRE_GPU") == "1":
        pytest.fail("REQUIRE_GPU=1 but cupy sees no CUDA device (is cupy installed?)",
                    pytrace=False)
    pytest.skip("needs a CUDA device and cupy")


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module under test: numpy always; cupy too when a GPU is present."""
    if request.param == "numpy":
        return np
    return backend.get_array_module(backend.to_device(np.zeros(1), "gpu"))


# ---- fixtures of the fine-tuning pipeline tests (tests/train/, test_cli.py, test_predict.py) --

@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def sentiment_files(tmp_path_factory):
    """train.tsv (40 rows) and dev.tsv (8 rows): label 1 for a positive word, 0 for a negative."""
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    pos, neg = ["good", "great", "fine", "lovely"], ["bad", "awful", "dull", "poor"]
    rows = []
    for i in range(48):
        label = i % 2
        word = rng.choice(pos if label else neg)
        rows.append(f"{label}\tthe film was very {word} .")
    (d / "train.tsv").write_text("label\ttext\n" + "\n".join(rows[:40]) + "\n")
    (d / "dev.tsv").write_text("label\ttext\n" + "\n".join(rows[40:]) + "\n")
    return d


@pytest.fixture(scope="session")
def ner_files(tmp_path_factory):
    """train.txt (12 CoNLL sentences of 5, 6 and 8 words) and dev.txt (3 sentences)."""
    d = tmp_path_factory.mktemp("conll")
    sentences = ["\n".join(s) for s in NER_SENTENCES]
    (d / "train.txt").write_text("-DOCSTART- O\n\n" + "\n\n".join(sentences * 4) + "\n")
    (d / "dev.txt").write_text("\n\n".join(sentences) + "\n")
    return d
