"""minitune.cuda.runtime's GPU side, with a stand-in for cupy (no device here): each kernel
file is compiled once, with the source every compiler sees and the NVRTC options of the
compile check, and a launch hands CuPy (grid, block, args) with None as a null pointer."""
import numpy as np

from minitune.cuda import nvrtc, runtime, source


class FakeCupy:
    """Records RawModule compiles and kernel launches."""

    def __init__(self):
        self.compiled, self.launched = [], []
        outer = self

        class RawModule:
            def __init__(self, code, options):
                outer.compiled.append((code, options))

            def get_function(self, kernel):
                def launch(grid, block, args, shared_mem=0):
                    outer.launched.append((kernel, grid, block, args, shared_mem))
                return launch

        self.RawModule = RawModule


def test_gpu_runtime_compiles_each_file_once_and_passes_arguments_as_given():
    cupy = FakeCupy()
    rt = runtime.GpuRuntime(cupy)
    x = np.zeros(4, np.float32)
    rt.launch("layer_norm.cu", "layer_norm_forward", 3, 128, (x, None, np.int32(2)))
    rt.launch("layer_norm.cu", "layer_norm_backward", (2, 5), 256, (x,), shared_mem=64)
    assert len(cupy.compiled) == 1
    code, options = cupy.compiled[0]
    assert code == source.load_source("layer_norm.cu") and options == nvrtc.compile_options()
    (k1, grid1, block1, args1, smem1), (k2, grid2, block2, _, smem2) = cupy.launched
    assert (k1, grid1, block1, smem1) == ("layer_norm_forward", (3,), (128,), 0)
    assert args1[0] is x and args1[1] == 0 and args1[1].dtype == np.uint64    # null pointer
    assert args1[2].dtype == np.int32
    assert (k2, grid2, block2, smem2) == ("layer_norm_backward", (2, 5), (256,), 64)


def test_for_array_picks_the_emulator_for_numpy_arrays():
    assert runtime.for_array(np.zeros(1)) is runtime.for_array(np.ones(2))
    assert runtime.for_array(np.zeros(1)).xp is np


def _headers(root, with_crt):
    """A stand-in CUDA include directory: mma.h, and crt/mma.h when ``with_crt``."""
    root.mkdir(parents=True)
    (root / "mma.h").write_text('#include "crt/mma.h"\n')
    if with_crt:
        (root / "crt").mkdir()
        (root / "crt" / "mma.h").write_text("// WMMA\n")
    return str(root)


def test_crt_headers_are_looked_for_beyond_cupys_include_path(tmp_path, monkeypatch):
    """pip's CUDA 13 headers can lack crt/ (seen on an H200): then the first other CUDA include
    directory with crt/mma.h goes on NVRTC's path; CuPy's own is used when it has one."""
    pip = _headers(tmp_path / "pip", with_crt=False)
    toolkit = _headers(tmp_path / "toolkit", with_crt=True)
    monkeypatch.setattr(nvrtc, "_cupy_include_dirs", lambda: [pip])
    monkeypatch.setattr(nvrtc, "_crt_candidates", lambda: [str(tmp_path / "none"), toolkit])
    nvrtc.crt_include_dir.cache_clear()
    try:
        assert nvrtc.crt_include_dir() == toolkit
        assert nvrtc.compile_options() == nvrtc.OPTIONS + (f"-I{toolkit}",)
        nvrtc.crt_include_dir.cache_clear()
        monkeypatch.setattr(nvrtc, "_cupy_include_dirs", lambda: [toolkit])
        assert nvrtc.compile_options() == nvrtc.OPTIONS            # CuPy's path has it
        nvrtc.crt_include_dir.cache_clear()
        monkeypatch.setattr(nvrtc, "_cupy_include_dirs", lambda: [pip])
        monkeypatch.setattr(nvrtc, "_crt_candidates", lambda: [])
        assert nvrtc.crt_include_dir() is None and nvrtc.compile_options() == nvrtc.OPTIONS
    finally:
        nvrtc.crt_include_dir.cache_clear()


def test_tensor_cores_need_compute_capability_8_and_the_crt_headers(monkeypatch):
    """Without crt/mma.h the tf32/bf16 products take the rounded-operand path, with a warning
    that says what to install, instead of failing to compile matmul_tc.cu."""
    import pytest

    def gpu(cc, crt):
        cupy = FakeCupy()
        cupy.cuda = type("cuda", (), {"Device": lambda: type("D", (), {
            "compute_capability": cc})()})
        monkeypatch.setattr(nvrtc, "crt_include_dir", lambda: crt)
        return runtime.GpuRuntime(cupy)

    assert gpu("90", "/cuda/include").tensor_cores is True
    assert gpu("75", "/cuda/include").tensor_cores is False
    with pytest.warns(RuntimeWarning, match="nvidia-cuda-crt"):
        assert gpu("90", None).tensor_cores is False
