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
    assert code == source.load_source("layer_norm.cu") and options == nvrtc.OPTIONS
    (k1, grid1, block1, args1, smem1), (k2, grid2, block2, _, smem2) = cupy.launched
    assert (k1, grid1, block1, smem1) == ("layer_norm_forward", (3,), (128,), 0)
    assert args1[0] is x and args1[1] == 0 and args1[1].dtype == np.uint64    # null pointer
    assert args1[2].dtype == np.int32
    assert (k2, grid2, block2, smem2) == ("layer_norm_backward", (2, 5), (256,), 64)


def test_for_array_picks_the_emulator_for_numpy_arrays():
    assert runtime.for_array(np.zeros(1)) is runtime.for_array(np.ones(2))
    assert runtime.for_array(np.zeros(1)).xp is np
