"""Run kernels/*.cu on the CPU: the same CUDA C source, compiled by g++, one fiber per thread.

``emu/cuda_emu.h`` explains the execution model (blocks one after another, every CUDA thread a
fiber, barriers and warp shuffles as scheduling points, deadlocks and divergent barriers
reported). This module builds a kernel file into a shared library and launches its kernels
through ctypes:

    load("layer_norm.cu")           -> the library, built once per source hash and cached
    launch("layer_norm.cu", "layer_norm_forward", grid, block, args, shared_mem)

It is what ``runtime.for_array`` hands the launchers for numpy arrays, so the tests run the
real launchers -- grid, block, argument packing and all -- on the CPU. Arguments are checked
against the kernel's signature (numpy scalars of the exact C type, arrays of the pointer's
element type), a check the GPU cannot make. For tests and study: it is slow and runs small
shapes only.

Libraries are cached by the hash of what g++ compiles (``source.cache_dir("emulator")``).
"""
import concurrent.futures
import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np

from .source import cache_dir, kernel_names, load_source  # noqa: F401 (load_source: tests)

EMU_DIR = Path(__file__).resolve().parent / "emu"
CXX = os.environ.get("CXX", "g++")
CXXFLAGS = ("-std=c++20", "-O0", "-fPIC", "-shared", "-w")   # -O0: half the build time

_KINDS = {"f": "f", "i": "i", "u": "ub"}     # signature code -> numpy dtype kinds it accepts
_EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?(\w+)\s+(\w+)\s*"
                            r"\[\s*\]\s*;")
_libraries = {}
_schedule = {"reverse": False}


class EmulatorError(RuntimeError):
    """A kernel misbehaved in the emulator (deadlock, divergent barrier, bad arguments)."""


def translation_unit(name, text=None):
    """The C++ file g++ compiles for kernels/``name``: the kernel source with dynamic shared
    memory pointed at the emulator's buffer, and one ``extern "C"`` launch function per kernel
    (``emu_launch_<kernel>``) that unpacks a void* argument array as cuLaunchKernel does."""
    source = load_source(name, text)
    source = _EXTERN_SHARED.sub(
        r"\1* \2 = reinterpret_cast<\1*>(emu::dynamic_smem);", source)
    wrappers = []
    for kernel in kernel_names(source):
        wrappers.append(
            f'extern "C" int emu_launch_{kernel}(unsigned gx, unsigned gy, unsigned gz, '
            f"unsigned bx, unsigned by, unsigned bz, size_t smem, void** a) {{\n"
            f"    return emu::launch_kernel(&{kernel}, dim3(gx, gy, gz), dim3(bx, by, bz), "
            f"smem, a);\n}}\n"
            f'extern "C" const char* emu_signature_{kernel}() {{\n'
            f"    return emu::signature(&{kernel});\n}}\n")
    return f'#line 1 "{name}"\n' + source + "\n" + "".join(wrappers)


def _build(name, text=None):
    """Compile kernels/``name`` (or ``text``) into a cached shared library; return its path."""
    tu = translation_unit(name, text)
    header = b"".join(h.read_bytes() for h in sorted(EMU_DIR.glob("*.h")))   # all stand-ins
    key = hashlib.sha256(tu.encode() + header + " ".join((CXX,) + CXXFLAGS).encode())
    stem = f"{Path(name).stem}-{key.hexdigest()[:16]}"
    lib = cache_dir("emulator") / f"{stem}.so"
    if lib.exists():
        return lib
    if shutil.which(CXX) is None:
        raise EmulatorError(f"the CUDA emulator needs a C++20 compiler; {CXX!r} not found "
                            f"(set CXX)")
    lib.parent.mkdir(parents=True, exist_ok=True)
    private = f".{os.getpid()}-{threading.get_ident()}"       # no clash between builders
    cpp = lib.with_suffix(private + ".cpp")
    cpp.write_text(tu, encoding="utf-8")
    tmp = lib.with_suffix(private + ".tmp")
    cmd = [CXX, *CXXFLAGS, f"-I{EMU_DIR}", "-include", "cuda_emu.h", "-x", "c++", str(cpp),
           "-o", str(tmp)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    cpp.unlink()
    if done.returncode:
        raise EmulatorError(f"g++ could not compile {name} for the emulator:\n"
                            f"{done.stderr[-4000:]}")
    os.replace(tmp, lib)                                  # atomic: parallel builds are safe
    return lib


class Library:
    """A kernel file built for the emulator: ``launch`` runs one of its kernels."""

    def __init__(self, name, path, source):
        self.name = name
        self.dll = ctypes.CDLL(str(path))
        self.dll.emu_last_error.restype = ctypes.c_char_p
        self.signatures = {}
        for kernel in kernel_names(source):
            fn = getattr(self.dll, f"emu_signature_{kernel}")
            fn.restype = ctypes.c_char_p
            self.signatures[kernel] = fn().decode().split()

    def launch(self, kernel, grid, block, args, shared_mem=0, reverse=False):
        codes = self.signatures.get(kernel)
        if codes is None:
            raise EmulatorError(f"{self.name} has no kernel {kernel!r} "
                                f"(has {sorted(self.signatures)})")
        if len(args) != len(codes):
            raise EmulatorError(f"{kernel}: {len(args)} arguments for {len(codes)} parameters")
        keep = [_c_argument(kernel, i, c, a) for i, (c, a) in enumerate(zip(codes, args))]
        argv = (ctypes.c_void_p * len(keep))(*[ctypes.addressof(k) for k in keep])
        grid, block = _dim3(grid), _dim3(block)
        self.dll.emu_set_order(int(reverse))
        fn = getattr(self.dll, f"emu_launch_{kernel}")
        if fn(*map(ctypes.c_uint, grid + block), ctypes.c_size_t(shared_mem), argv):
            raise EmulatorError(f"{self.name}:{kernel} grid {grid} block {block}: "
                                f"{self.dll.emu_last_error().decode()}")


def _dim3(d):
    d = (d,) if isinstance(d, int) else tuple(d)
    return tuple(int(x) for x in d) + (1,) * (3 - len(d))


def _c_argument(kernel, i, code, value):
    """The ctypes object holding argument ``i``, checked against its parameter's code ("pf4":
    pointer to a 4-byte float, "su8": an unsigned 8-byte scalar, ...)."""
    kinds, size = _KINDS[code[1]], int(code[2:])
    if code[0] == "p":
        if value is None:
            return ctypes.c_void_p(None)
        if not isinstance(value, np.ndarray) or value.dtype.kind not in kinds or \
                value.dtype.itemsize != size:
            got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise EmulatorError(f"{kernel} argument {i}: the kernel takes a pointer to "
                                f"{_describe(code)}, got {got}")
        return ctypes.c_void_p(value.ctypes.data)
    if not (isinstance(value, np.generic) and value.dtype.kind in kinds and
            value.dtype.itemsize == size):
        raise EmulatorError(f"{kernel} argument {i}: the kernel takes {_describe(code)}; pass "
                            f"a numpy scalar of that type, got {type(value).__name__} {value!r} "
                            f"(a Python number has no C type: the GPU would misread it)")
    return np.ctypeslib.as_ctypes_type(value.dtype)(value.item())


def _describe(code):
    kind = {"f": "float", "i": "int", "u": "unsigned"}[code[1]]
    return f"a {int(code[2:]) * 8}-bit {kind}"


def load(name, text=None):
    """The emulator library of kernels/``name`` (built on first use, cached by source hash)."""
    key = (name, text)
    if key not in _libraries:
        _libraries[key] = Library(name, _build(name, text), load_source(name, text))
    return _libraries[key]


def build_all(names, jobs=2):
    """Build several kernel files in parallel (g++ is the slow part of a cold test run)."""
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        list(pool.map(_build, names))


def launch(name, kernel, grid, block, args, shared_mem=0):
    """Run ``kernel`` of kernels/``name`` on the CPU (see ``Library.launch``), its threads in
    the order ``reverse_schedule`` sets."""
    load(name).launch(kernel, grid, block, args, shared_mem, _schedule["reverse"])


@contextlib.contextmanager
def reverse_schedule(flag=True):
    """Inside the block, run each block's threads last-to-first between barriers: with both
    orders, a missing barrier corrupts the result whichever way the race goes."""
    previous = _schedule["reverse"]
    _schedule["reverse"] = bool(flag)
    try:
        yield
    finally:
        _schedule["reverse"] = previous
