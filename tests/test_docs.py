"""Every doc's Python blocks run and print what the doc shows (conventions: tests/docs_runner.py
and docs/README.md). One test per Markdown file: README.md and docs/**/*.md."""
from pathlib import Path

import pytest

from docs_runner import DocError, output_matches, parse_blocks, run_file

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_doc_blocks_run_and_print_what_the_doc_shows(path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    run_file(path)


# ---- the runner itself ------------------------------------------------------------------------

def write(tmp_path, text):
    p = tmp_path / "doc.md"
    p.write_text(text)
    return p


def test_blocks_share_a_namespace_and_outputs_are_compared(tmp_path):
    doc = write(tmp_path, "intro\n\n```python\nx = 2\n```\n\ntext\n\n```python\nprint(x * 21)\n"
                          "```\n\n```output\n42\n```\n\n```bash\nexit 1\n```\n")
    assert run_file(doc)[0] == 2


def test_a_wrong_output_names_the_block_and_shows_both(tmp_path):
    doc = write(tmp_path, "```python\nprint('hello')\n```\n```output\nhallo\n```\n")
    with pytest.raises(DocError, match=r"doc.md:1: printed output differs(.|\n)*hallo(.|\n)*"
                                       r"hello"):
        run_file(doc)


def test_a_failing_block_names_its_line(tmp_path):
    doc = write(tmp_path, "# t\n\n```python\n1 / 0\n```\n")
    with pytest.raises(DocError, match=r"doc.md:3: the python block raised(.|\n)*"
                                       r"ZeroDivisionError"):
        run_file(doc)


def test_skip_blocks_and_orphan_outputs(tmp_path):
    assert run_file(write(tmp_path, "```python skip\nimport torch\n```\n"))[0] == 0
    for text in ["```bash\necho hi\n```\n```output\nhi\n```\n",
                 "```python\nprint(1)\n```\n\nprose\n\n```output\n1\n```\n",
                 "```python skip\nprint(1)\n```\n```output\n1\n```\n"]:
        with pytest.raises(DocError, match="must follow a python block"):
            run_file(write(tmp_path, text))


def test_blocks_run_in_a_temporary_directory(tmp_path):
    doc = write(tmp_path, "```python\nimport os\nopen('made.txt', 'w').close()\n"
                          "print(os.listdir('.'))\n```\n```output\n['made.txt']\n```\n")
    run_file(doc)
    assert not (tmp_path / "made.txt").exists()


def test_ellipsis_and_whitespace_rules():
    assert output_matches("loss 0.69...\n", "loss 0.6931\n")
    assert output_matches("a\n...\nz", "a\nb\nc\nz\n\n")
    assert output_matches("x = 1   \n", "x = 1")
    assert not output_matches("loss 0.69", "loss 0.6931")
    assert not output_matches("a\nb", "a\nc")


def test_unclosed_fence_is_an_error():
    with pytest.raises(ValueError, match="line 1: .*never closed"):
        parse_blocks("```python\nx = 1\n")
