"""Compile a kernel file with NVRTC exactly as ``cupy.RawModule`` does -- without a GPU.

``cupy.RawModule(code=...)`` compiles with NVRTC when a kernel is first fetched, which needs a
device. CuPy's low-level NVRTC binding does not: with the option list RawModule assembles
(CuPy's include directories, ``-std=c++17``, ``-ftz=true``, ``--device-as-default-execution-
space``) and an explicit ``-arch`` it compiles to a cubin on any machine with the NVRTC library
(the ``nvidia-cuda-nvrtc`` wheel). A cubin, not PTX, so register and shared-memory overflows
fail here too. Errors name the kernel file and line (``attention.cu(24): error: ...``).
"""
import hashlib
import os

from .source import cache_dir, load_source

ARCHS = ("sm_80", "sm_90")          # A100 and H100/H200
OPTIONS = ("-std=c++17",)           # what the launchers pass to RawModule (runtime.py)


class KernelCompileError(RuntimeError):
    """NVRTC rejected a kernel file; the message is NVRTC's log (file(line): error: ...)."""


def raw_module_options(arch):
    """The NVRTC options RawModule uses for ``OPTIONS`` on ``arch`` (e.g. "sm_90")."""
    from cupy._core.core import assemble_cupy_compiler_options
    return list(assemble_cupy_compiler_options(OPTIONS)) + [
        "-ftz=true", f"-arch={arch}", "--device-as-default-execution-space"]


def compile_check(name, arch, text=None):
    """Compile kernels/``name`` for ``arch``; return the cubin (bytes) and NVRTC's log.

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
            nvrtc.compileProgram(prog, raw_module_options(arch))
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
    key = hashlib.sha256("\0".join([load_source(name), *raw_module_options(arch),
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
