"""Compile a kernel file with NVRTC exactly as ``cupy.RawModule`` does -- without a GPU.

``cupy.RawModule(code=...)`` compiles with NVRTC when a kernel is first fetched, which needs a
device. CuPy's low-level NVRTC binding does not: with the option list RawModule assembles
(CuPy's include directories, ``-std=c++17``, ``-ftz=true``, ``--device-as-default-execution-
space``) and an explicit ``-arch`` it compiles to a cubin on any machine with the NVRTC library
(the ``nvidia-cuda-nvrtc`` wheel). A cubin, not PTX, so register and shared-memory overflows
fail here too. Errors name the kernel file and line (``attention.cu(24): error: ...``).
"""
import functools
import glob
import hashlib
import os
import re
import shutil
import sys

from .source import cache_dir, load_source

ARCHS = ("sm_80", "sm_90")          # A100 and H100/H200
OPTIONS = ("-std=c++17",)           # what the launchers pass to RawModule (runtime.py)
VERBOSE = ("--ptxas-options=-v",)   # the check's addition: registers and spills in the log


class KernelCompileError(RuntimeError):
    """NVRTC rejected a kernel file; the message is NVRTC's log (file(line): error: ...)."""


def _cupy_include_dirs():
    """The directories CuPy puts on NVRTC's include path (its own, then CUDA's)."""
    from cupy._core.core import assemble_cupy_compiler_options
    return [o[2:] for o in assemble_cupy_compiler_options(OPTIONS) if o.startswith("-I")]


def _crt_candidates():
    """Where else CUDA's headers live: $CUDA_PATH, $CUDA_HOME, beside nvcc, /usr/local/cuda*,
    and the pip wheels' nvidia/cu*/include (the nvidia-cuda-crt wheel installs crt/ there)."""
    roots = [os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    roots += ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    dirs = [os.path.join(r, "include") for r in roots if r]
    for site in sys.path:
        dirs += sorted(glob.glob(os.path.join(site, "nvidia", "cu*", "include")), reverse=True)
    return dirs


def _has_crt(d):
    return os.path.isfile(os.path.join(d, "crt", "mma.h"))


@functools.lru_cache(maxsize=None)
def crt_include_dir():
    """The directory holding CUDA's ``crt/mma.h``, or None where there is none.

    ``<mma.h>`` (WMMA, for kernels/matmul_tc.cu) is, in CUDA 13, a wrapper that
    includes ``"crt/mma.h"``; pip's CUDA 13 headers (nvidia/cu13/include, which CuPy may put on
    the include path) ship without crt/ unless the ``nvidia-cuda-crt`` wheel is installed. A
    GPU check on an H200 failed on exactly this (docs/backend.md). CuPy's own directories are
    tried first, then ``_crt_candidates``."""
    for d in _cupy_include_dirs() + _crt_candidates():
        if _has_crt(d):
            return d
    return None


def compile_options():
    """The options the launchers pass to RawModule: ``OPTIONS``, plus ``-I`` the directory of
    ``crt/mma.h`` when CuPy's include path lacks it."""
    d = crt_include_dir()
    if d is None or d in _cupy_include_dirs():
        return OPTIONS
    return OPTIONS + (f"-I{d}",)


def raw_module_options(arch):
    """The NVRTC options RawModule uses for ``compile_options()`` on ``arch`` (e.g. "sm_90")."""
    from cupy._core.core import assemble_cupy_compiler_options
    return list(assemble_cupy_compiler_options(compile_options())) + [
        "-ftz=true", f"-arch={arch}", "--device-as-default-execution-space"]


def compile_check(name, arch, text=None):
    """Compile kernels/``name`` for ``arch``; return the cubin (bytes) and NVRTC's log (with
    ptxas's register and spill counts, ``VERBOSE``; ``resource_usage`` reads them).

    Args:
        name: the kernel file ("attention.cu").
        arch: "sm_80", "sm_90", ...
        text: compile this text as if it were the file (tests plant errors this way).

    Raises:
        KernelCompileError: with NVRTC's log, whose lines read ``name(line): error: ...``.
    """
    from cupy_backends.cuda.libs import nvrtc
    source = load_source(name, text)
    prog = nvrtc.createProgram(source, name, [], [])
    try:
        try:
            nvrtc.compileProgram(prog, raw_module_options(arch) + list(VERBOSE))
        except nvrtc.NVRTCError:
            raise KernelCompileError(f"{name} ({arch}):\n{nvrtc.getProgramLog(prog)}") from None
        return nvrtc.getCUBIN(prog), nvrtc.getProgramLog(prog)
    finally:
        nvrtc.destroyProgram(prog)


def cached_compile_check(name, arch):
    """``compile_check`` of the file as it is on disk, remembered by the hash of the source,
    the options and the NVRTC version (``source.cache_dir("nvrtc")``): CI recompiles only what
    changed. Returns NVRTC's log; raises KernelCompileError as ``compile_check`` does."""
    from cupy_backends.cuda.libs import nvrtc
    key = hashlib.sha256("\0".join([load_source(name), *raw_module_options(arch), *VERBOSE,
                                    str(nvrtc.getVersion())]).encode()).hexdigest()[:20]
    done = cache_dir("nvrtc") / f"{name}-{arch}-{key}.log"
    if done.exists():
        return done.read_text(encoding="utf-8")
    cubin, log = compile_check(name, arch)
    if cubin[:4] != b"\x7fELF":
        raise KernelCompileError(f"{name} ({arch}): NVRTC returned something that is not a cubin")
    done.parent.mkdir(parents=True, exist_ok=True)
    tmp = done.with_suffix(f".{os.getpid()}")
    tmp.write_text(log, encoding="utf-8")
    os.replace(tmp, done)
    return log


_ENTRY = re.compile(r"Compiling entry function '(\w+)'")
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_REGISTERS = re.compile(r"Used (\d+) registers")


def resource_usage(log):
    """{kernel: (registers, spill-store bytes, spill-load bytes)} from a ``compile_check`` log:
    ptxas's lines for each entry point, e.g. for kernels/attention.cu on sm_90

        python -c "from minitune.cuda import nvrtc; print(nvrtc.resource_usage(
            nvrtc.cached_compile_check('attention.cu', 'sm_90')))"
    """
    usage, kernel, spills = {}, None, (0, 0)
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            kernel, spills = m.group(1), (0, 0)
        elif m := _SPILLS.search(line):
            spills = (int(m.group(1)), int(m.group(2)))
        elif (m := _REGISTERS.search(line)) and kernel:
            usage[kernel] = (int(m.group(1)),) + spills
    return usage
