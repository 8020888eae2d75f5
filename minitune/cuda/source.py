"""The CUDA source of minitune's kernels, as every consumer sees it.

Three programs read kernels/*.cu: NVRTC on a GPU machine (``cupy.RawModule``), NVRTC without a
device (the compile check, ``minitune.cuda.nvrtc``) and g++ (the CPU emulator,
``minitune.cuda.emulator``). All three get their text from ``load_source``, which pastes in
the project's own headers (``#include "common.cuh"``) with ``#line`` markers, so an error is
reported against the file and line a reader opens, and a header change reaches every cache key
(CuPy's on-disk cache hashes the source text, not the files it includes).
"""
import os
import re
import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent.parent / "kernels"
KERNEL_DIR = (_CHECKOUT if _CHECKOUT.is_dir()
              else Path(sys.prefix) / "share" / "minitune" / "kernels")   # an installed wheel

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([\w.]+)"\s*$', re.M)
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\([^)]*\)\s+)?void\s+'
                     r'(\w+)\s*\(')


def cache_dir(kind):
    """Where compiled kernels are cached, by content hash: $MINITUNE_EMULATOR_CACHE/<kind> if
    set, else minitune/<kind> in the user's cache directory ($XDG_CACHE_HOME or ~/.cache)."""
    root = os.environ.get("MINITUNE_EMULATOR_CACHE")
    if root:
        return Path(root) / kind
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minitune" / kind


def kernel_files():
    """Names of every kernel file (``attention.cu``, ...), sorted."""
    return sorted(p.name for p in KERNEL_DIR.glob("*.cu"))



def load_source(name, text=None):
    """The full text of kernels/``name`` with its quoted includes pasted in.

    Args:
        name: file name inside kernels/ (``"attention.cu"``).
        text: use this text as the file's content instead of reading it (tests plant errors).
    """
    if text is None:
        text = _read(name)
    return _expand(name, text, seen=set())


def _read(name):
    path = KERNEL_DIR / name
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"kernel source not found: kernels/{name} (looked in "
                                f"{KERNEL_DIR})") from None


def _expand(name, text, seen):
    out, last = [], 0
    for m in _INCLUDE.finditer(text):
        header = m.group(1)
        line = text.count("\n", 0, m.end()) + 2          # the line after the #include
        out.append(text[last:m.start()])
        if header not in seen:                            # each header once (#pragma once)
            seen.add(header)
            out.append(f'#line 1 "{header}"\n{_expand(header, _read(header), seen)}\n'
                       f'#line {line} "{name}"\n')
        last = m.end() + 1
    out.append(text[last:])
    return "".join(out)


def kernel_names(source):
    """Names of every ``extern "C" __global__`` function in ``source``, in order."""
    return _KERNEL.findall(source)
