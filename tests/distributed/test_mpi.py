"""Data parallelism for real: ``mpirun -n 2`` runs of ``minitune train`` on a tiny BERT (one
BLAS thread per rank) against the single-process run on the same global batches.

Skipped, with the reason, only when MPI cannot start here (no mpi4py/mpirun: install the MPI
extra, ``pip install -e '.[mpi]'``, as ``make setup`` does).
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minitune import train as T
from minitune.io import read_safetensors
from minitune.models import BertConfig, BertForSequenceClassification
from minitune.tokenizer import Tokenizer

HERE = Path(__file__).resolve().parent
WORDS = ("good great fine lovely bad awful dull poor the film plot was is not very a "
         "john smith lives in paris works at acme corp").split()
ENV_DROP = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
    env.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "MINITUNE_DIST_TIMEOUT": "60", **extra})
    return env


@pytest.fixture(scope="module")
def mpirun():
    """The mpirun of mpi4py's MPI (the MPICH wheel puts it beside python), once it has shown
    that it can start two ranks that see each other."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed (pip install -e '.[mpi]'; `make setup` does it)")
    exe = Path(sys.executable).parent / "mpirun"
    exe = str(exe) if exe.exists() else shutil.which("mpirun")
    if exe is None:
        pytest.skip("no mpirun beside python or on PATH (pip install -e '.[mpi]')")
    probe = [exe, "-n", "2", sys.executable, "-c",
             "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() == 2"]
    try:
        r = subprocess.run(probe, env=_env(), capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.skip("MPI cannot start here: `mpirun -n 2` did not finish in 60 s")
    if r.returncode != 0:
        pytest.skip(f"MPI cannot start here: `mpirun -n 2` failed: {r.stderr.strip()[-500:]}")
    return exe


def _run(mpirun, ranks, *argv, env=None, expect=0, timeout=120):
    """``minitune train ...`` on ``ranks`` MPI processes (0: one process, no mpirun)."""
    cmd = [sys.executable, str(HERE / "mpi_cli.py"), "train", *map(str, argv),
           "--no-progress"]
    if ranks:
        cmd = [mpirun, "-n", str(ranks)] + cmd
    r = subprocess.run(cmd, env=env or _env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == expect, f"{' '.join(cmd)} -> {r.returncode}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny BERT with dropout off; 33 sentences (batches 8, 8, 8, 8, 1: the last one leaves
    rank 1 of 2 nothing) and a CoNLL file whose sentences label different numbers of words."""
    d = tmp_path_factory.mktemp("dp")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + WORDS
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertForSequenceClassification(config, seed=0).save_pretrained(
        d / "model", tokenizer=Tokenizer.from_vocab(vocab))
    rng = np.random.default_rng(0)
    rows = [f"{i % 2}\tthe film {'very ' * rng.integers(0, 5)}"
            f"{rng.choice(['good', 'great', 'lovely'] if i % 2 else ['bad', 'awful', 'dull'])} ."
            for i in range(41)]
    (d / "train.tsv").write_text("label\ttext\n" + "\n".join(rows[:33]) + "\n")
    (d / "dev.tsv").write_text("label\ttext\n" + "\n".join(rows[33:]) + "\n")
    sents = [["john B-PER", "smith I-PER", "lives O", "in O", "paris B-LOC", ". O"],
             ["acme B-ORG", "corp I-ORG"], ["paris B-LOC"],
             ["the O", "film O", "was O", "very O", "good O", "in O", "paris B-LOC", ". O"]]
    conll = "\n\n".join("\n".join(sents[i % 4] if i % 3 else sents[i % 4][:3]) for i in range(21))
    (d / "train.txt").write_text(conll + "\n")
    (d / "dev.txt").write_text("\n\n".join("\n".join(s) for s in sents) + "\n")
    return d


def _classify(files, out, **kw):
    argv = ["--model", files / "model", "--train", files / "train.tsv", "--dev",
            files / "dev.tsv", "--out", out, "--epochs", 2, "--batch-size", 8, "--lr", 3e-3,
            "--max-len", 16, "--save-steps", 100]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", v]
    return argv


def _single(argv):
    """The same command in this process (the reference)."""
    from minitune import cli
    assert cli.main(["train", *map(str, argv), "--no-progress"]) == 0


def _train_log(out):
    return [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a, b):
    """Every logged loss and dev score, every parameter and Adam moment of the two runs agree
    to float32 round-off (a different summation order of the same numbers)."""
    la, lb = _train_log(a), _train_log(b)
    assert [(r["type"], r["step"]) for r in la] == [(r["type"], r["step"]) for r in lb]
    np.testing.assert_allclose([r["loss"] for r in lb if r["type"] == "train"],
                               [r["loss"] for r in la if r["type"] == "train"], rtol=2e-6)
    assert [r for r in la if r["type"] == "eval"] == [r for r in lb if r["type"] == "eval"]
    for name in ("model", "optimizer"):
        wa = read_safetensors(Path(a) / "last" / f"{name}.safetensors")
        wb = read_safetensors(Path(b) / "last" / f"{name}.safetensors")
        assert wa.keys() == wb.keys()
        for k in wa:
            np.testing.assert_allclose(wb[k], wa[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.fixture(scope="module")
def reference(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    _single(_classify(files, out))
    return out


def test_two_ranks_equal_one_process_and_only_rank_0_writes(mpirun, files, reference, tmp_path):
    r = _run(mpirun, 2, *_classify(files, tmp_path / "dp"))
    assert_same_run(reference, tmp_path / "dp")
    json_lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    assert len(json_lines) == 1                           # the final JSON line, once
    assert json.loads(json_lines[0])["steps"] == 10
    assert sorted(p.name for p in (tmp_path / "dp").iterdir()) == \
        sorted(p.name for p in reference.iterdir())       # nothing else: no rank-1 files
    assert r.stderr.count("dev accuracy") == 2            # rank 0's lines only (2 evals)


def test_ner_with_accumulation_weights_each_share_by_its_labelled_words(mpirun, files, tmp_path):
    """Shares of a batch hold different numbers of labelled words; the ranks' gradients must
    be weighted by them (weighting by sentences would give another result)."""
    argv = ["--task", "ner", "--model", files / "model", "--train", files / "train.txt",
            "--dev", files / "dev.txt", "--epochs", 2, "--batch-size", 6, "--lr", 3e-3,
            "--max-len", 16, "--group-by-length", "--grad-accum-steps", 2]
    _single(argv + ["--out", tmp_path / "one"])
    _run(mpirun, 2, *argv, "--out", tmp_path / "dp")
    assert_same_run(tmp_path / "one", tmp_path / "dp")


@pytest.mark.parametrize("first,then", [(2, 0), (0, 2)], ids=["2->1", "1->2"])
def test_interrupted_rank_stops_all_and_resumes_on_another_rank_count(
        mpirun, files, reference, tmp_path, first, then):
    """Ctrl-C reaching one process only (rank 1 of 2, or the single process) during step 3:
    every rank stops after step 3 with the checkpoint saved; the run then resumes on the other
    number of ranks and ends where the uninterrupted run ends."""
    out = tmp_path / "run"
    _run(mpirun, first, *_classify(files, out), expect=130,
         env=_env(MINITUNE_TEST_SIGINT=f"{1 if first else 0}:3"))
    state = json.loads((out / "last" / "trainer_state.json").read_text())
    assert state["step"] == 3
    assert max(r["step"] for r in _train_log(out)) == 3
    _run(mpirun, then, "--resume", "--out", out)
    assert_same_run(reference, out)


def test_ranks_that_disagree_stop_with_an_error_naming_them(mpirun, files, tmp_path):
    cmd = [sys.executable, str(HERE / "mpi_cli.py"), "train", "--no-progress"]
    argv = [str(a) for a in _classify(files, tmp_path / "run")]
    other = [a if a != "0.003" else "0.001" for a in argv]
    r = subprocess.run([mpirun, "-n", "1", *cmd, *argv, ":", "-n", "1", *cmd, *other],
                       env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "the ranks do not agree" in r.stderr and "0.003 on rank 0, 0.001 on rank 1" in \
        r.stderr, r.stderr[-2000:]
    # Every rank got the same verdict and exited by itself (no MPI_Abort): both lines arrive.
    for rank in (0, 1):
        assert f"(rank {rank}): error: the ranks do not agree" in r.stderr, r.stderr[-2000:]


def test_a_rank_that_never_starts_is_named_after_the_timeout(mpirun, files, tmp_path):
    """Rank 1 never reaches training (here: it sleeps); rank 0 must not hang but say so."""
    cmd = [sys.executable, str(HERE / "mpi_cli.py"), "train", "--no-progress",
           *map(str, _classify(files, tmp_path / "run"))]
    stuck = [sys.executable, "-c", "import time; from mpi4py import MPI; time.sleep(60)"]
    t0 = time.monotonic()
    r = subprocess.run([mpirun, "-n", "1", *cmd, ":", "-n", "1", *stuck],
                       env=_env(MINITUNE_DIST_TIMEOUT="3"), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    assert "rank(s) [1] of 2 did not report within 3 s" in r.stderr, r.stderr[-2000:]
    assert time.monotonic() - t0 < 40


def test_an_error_on_rank_0_stops_every_rank(mpirun, files, reference, tmp_path):
    """Rank 0 alone prepares --out; its refusal (another run is there) must reach the other
    ranks (which would otherwise wait for it forever) and leave the old run untouched. Every
    rank then exits by itself, without MPI_Abort, whose kill could drop their last lines."""
    out = tmp_path / "taken"
    shutil.copytree(reference, out)
    before = (out / "metrics.jsonl").read_text()
    r = _run(mpirun, 2, *_classify(files, out), expect=2, timeout=60)
    for rank in (0, 1):
        assert f"(rank {rank}): error: output directory" in r.stderr, r.stderr[-2000:]
    assert "holds another run; use --overwrite" in r.stderr, r.stderr[-2000:]
    assert (out / "metrics.jsonl").read_text() == before
