"""The run directory's housekeeping (minitune/train/checkpoints.py): what a new run deletes,
and which model directory eval/predict load after a crash in the middle of a checkpoint swap."""
import pytest

from minitune.train.checkpoints import RunDirError, prepare_out_dir, run_model_dir


def test_a_new_run_deletes_its_own_leftovers_and_nothing_of_the_users(tmp_path):
    ours = [".metrics.jsonl.k3_x9.tmp", ".run.json.abc123.tmp", ".results.json.q.tmp",
            ".write-test-zz9.tmp", "last.tmp-123", "best.old.trash-77"]
    theirs = [".notes.tmp", ".swp.tmp", "notes.txt", "last.tmp-mine.txt"]
    for name in ours + theirs:
        (tmp_path / name).write_text("x")
    prepare_out_dir(tmp_path, overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs)


def write_model(directory):
    directory.mkdir()
    for name in ("config.json", "model.safetensors", "optimizer.safetensors",
                 "trainer_state.json"):
        (directory / name).write_text("{}")


@pytest.mark.parametrize("present, loaded, warns", [
    (["best", "last"], "best", False),
    (["best.old", "last"], "best.old", False),     # killed while swapping best/
    (["last.old"], "last.old", True),              # killed while swapping last/, no dev set
    (["last"], "last", True),
])
def test_the_model_of_a_run_even_mid_swap(tmp_path, present, loaded, warns):
    for name in present:
        write_model(tmp_path / name)
    directory, warning = run_model_dir(tmp_path)
    assert directory == tmp_path / loaded
    assert (warning is not None) == warns


def test_a_directory_without_a_model_is_named(tmp_path):
    with pytest.raises(RunDirError, match="holds no model"):
        run_model_dir(tmp_path)
