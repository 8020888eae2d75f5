"""Run the Python blocks of a Markdown file and compare what they print with the doc.

    python tests/docs_runner.py docs/tour.md README.md     # by hand: reports each block
    python -m pytest tests/test_docs.py                    # in CI: one test per file

The conventions (docs/README.md repeats them for writers):

* A ```python block is executed. The blocks of one file run in order in one namespace, like
  the cells of a notebook, in a fresh empty temporary directory (files a block writes vanish).
* A ```output block right after a ```python block (only blank lines between) holds what that
  block prints on stdout. It must match, line by line, after trailing spaces and leading and
  trailing blank lines are dropped. ``...`` matches any text, within a line or across lines
  (numbers that legitimately vary, long listings). A block that prints without an output
  block is not compared; stderr (progress bars, warnings) never is.
* A ```python skip block is shown, not run: a signature, a fragment of someone else's code
  (torch's pickling), or code that needs what CI lacks (a GPU, PyTorch,
  the shared data sets, minutes of training). Say why in the prose around it.
* Blocks in any other language (bash, console, text, json, cuda, c, ...) are never run: they
  are commands for a shell (make targets, training runs, tools that need the reference
  environment) or listings, and the test suite covers what they do.
"""
import contextlib
import io
import os
import re
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^(```+|~~~+)\s*([^`\s]*)\s*(.*)$")


@dataclass
class Block:
    lang: str          # first word of the info string ("python", "output", "bash", "")
    flags: str         # the rest of the info string ("skip")
    line: int          # 1-based line of the opening fence
    code: str
    blank_before: bool = True     # only blank lines between this block and the previous one


def parse_blocks(text):
    """The fenced code blocks of Markdown ``text``, in order."""
    blocks, lines = [], text.splitlines()
    i, last_end = 0, None
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, flags = m.group(1), m.group(2).lower(), m.group(3).strip()
        start = i
        body = []
        i += 1
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start + 1}: code block opened with {fence} is never closed")
        between = lines[last_end + 1:start] if last_end is not None else ["x"]
        blocks.append(Block(lang, flags, start + 1, "\n".join(body) + "\n",
                            all(not s.strip() for s in between)))
        last_end = i
        i += 1
    return blocks


def _normalise(text):
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).strip("\n")


def output_matches(expected, actual):
    """True when ``actual`` printed text matches the doc's ``expected`` (``...`` = anything)."""
    expected, actual = _normalise(expected), _normalise(actual)
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual, flags=re.DOTALL) is not None


class DocError(AssertionError):
    pass


def run_file(path, verbose=False):
    """Run every Python block of the Markdown file ``path``; raise DocError on the first block
    that fails or prints something other than its output block. Returns (blocks run, seconds)."""
    path = Path(path)
    blocks = parse_blocks(path.read_text(encoding="utf-8"))
    namespace = {"__name__": "__doc__"}
    ran, t0, cwd = 0, time.perf_counter(), os.getcwd()
    with tempfile.TemporaryDirectory(prefix="minitune-docs-") as tmp:
        os.chdir(tmp)
        try:
            for k, block in enumerate(blocks):
                if block.lang == "output" and (k == 0 or blocks[k - 1].lang != "python"
                                              or not block.blank_before
                                              or "skip" in blocks[k - 1].flags.split()):
                    raise DocError(f"{path}:{block.line}: an output block must follow a "
                                   f"python block that runs (only blank lines between)")
                if block.lang != "python" or "skip" in block.flags.split():
                    continue
                t_block = time.perf_counter()
                printed = io.StringIO()
                try:
                    with contextlib.redirect_stdout(printed):
                        exec(compile(block.code, f"{path}:{block.line}", "exec"), namespace)
                except Exception:
                    raise DocError(f"{path}:{block.line}: the python block raised\n"
                                   f"{traceback.format_exc()}") from None
                ran += 1
                nxt = blocks[k + 1] if k + 1 < len(blocks) else None
                if nxt is not None and nxt.lang == "output" and nxt.blank_before:
                    if not output_matches(nxt.code, printed.getvalue()):
                        raise DocError(
                            f"{path}:{block.line}: printed output differs from the output block "
                            f"at line {nxt.line}\n--- the doc shows:\n{_normalise(nxt.code)}\n"
                            f"--- the code printed:\n{_normalise(printed.getvalue())}")
                if verbose:
                    print(f"  {path}:{block.line}  ok  {time.perf_counter() - t_block:.2f} s")
        finally:
            os.chdir(cwd)
    return ran, time.perf_counter() - t0


def main(paths):
    failed = 0
    for p in paths:
        try:
            n, seconds = run_file(p, verbose=True)
            print(f"{p}: {n} python blocks ran, {seconds:.1f} s")
        except DocError as e:
            failed += 1
            print(e)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main(sys.argv[1:]))
