"""Every kernel file compiles with NVRTC, as cupy.RawModule compiles it, for sm_80 and sm_90 --
on machines without a GPU -- and a compile error names the file and line.

The compiles (about 25 s of NVRTC when cold, most of it attention.cu's) run in two processes
and are remembered by source hash."""
import concurrent.futures

import pytest

from minitune.cuda import nvrtc, source

nvrtc_binding = pytest.importorskip("cupy_backends.cuda.libs.nvrtc",
                                    reason="needs cupy (make setup installs cupy-cuda13x)")


def _compile(name, arch):
    try:
        return nvrtc.cached_compile_check(name, arch)
    except nvrtc.KernelCompileError as e:
        return e


@pytest.fixture(scope="module")
def compiled():
    """{(file, arch): NVRTC's log or the KernelCompileError} for every kernel file and arch
    (cached by source hash: unchanged files are not recompiled)."""
    jobs = [(name, arch) for name in source.kernel_files() for arch in nvrtc.ARCHS]
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        return dict(zip(jobs, pool.map(_compile, *zip(*jobs))))


@pytest.mark.parametrize("arch", nvrtc.ARCHS)
@pytest.mark.parametrize("name", source.kernel_files())
def test_kernel_file_compiles_to_a_cubin(compiled, name, arch):
    log = compiled[(name, arch)]
    if isinstance(log, Exception):
        raise log
    assert "warning" not in log.lower(), log


@pytest.mark.parametrize("arch", nvrtc.ARCHS)
def test_attention_kernels_do_not_spill_registers(compiled, arch):
    """attention.cu's register-blocked variants 5-7 hold R rows a thread, 160-235 registers:
    a spill would turn the shared-memory reads they save into local-memory traffic. (ptxas's
    counts, from the log of the compile above.)"""
    log = compiled[("attention.cu", arch)]
    if isinstance(log, Exception):
        raise log
    usage = nvrtc.resource_usage(log)
    assert set(usage) == set(source.kernel_names(source.load_source("attention.cu"))), usage
    spilling = {kernel: u for kernel, u in usage.items() if u[1] or u[2]}
    assert not spilling, f"(registers, spill stores, spill loads): {spilling}"
    assert all(u[0] <= 255 for u in usage.values())


def test_every_kernel_file_has_kernels_and_a_header():
    for name in source.kernel_files():
        text = source.load_source(name)
        assert source.kernel_names(text), f"{name} defines no extern \"C\" __global__ kernel"
        first = (source.KERNEL_DIR / name).read_text().splitlines()[0]
        assert first.startswith(f"// {name} -- "), f"{name} lacks its llm.c-style header"


def test_a_planted_error_is_reported_with_file_and_line():
    """The error sits after the pasted-in common.cuh: the #line markers must bring the line
    number back to the file's own numbering."""
    text = (source.KERNEL_DIR / "dropout.cu").read_text().splitlines()
    target = next(i for i, line in enumerate(text) if "long long groups" in line)
    text[target] = text[target].replace(";", "")                      # drop a semicolon
    with pytest.raises(nvrtc.KernelCompileError, match=rf"dropout\.cu\({target + 2}\): error"):
        nvrtc.compile_check("dropout.cu", "sm_90", text="\n".join(text))


def test_shared_memory_overflow_fails_the_compile_not_the_launch():
    text = ('extern "C" __global__ void big(float* x) {\n'
            '    __shared__ float s[64 * 1024];\n'
            '    s[threadIdx.x] = x[threadIdx.x]; __syncthreads(); x[threadIdx.x] = s[0];\n}\n')
    with pytest.raises(nvrtc.KernelCompileError, match="shared"):
        nvrtc.compile_check("big.cu", "sm_80", text=text)
