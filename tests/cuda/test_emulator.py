"""The CPU emulator itself: it runs CUDA C faithfully enough to catch the bugs a GPU would
show -- a missing barrier, a barrier in divergent code, a shuffle with exited lanes, an
argument of the wrong C type -- and says so instead of hanging or guessing."""
import numpy as np
import pytest

from minitune.cuda import attention, emulator
from kernel_helpers import f64

pytestmark = pytest.mark.emulator

REVERSE = r'''
extern "C" __global__ void reverse(const float* x, float* y, int n) {
    extern __shared__ float s[];
    int t = threadIdx.x;
    s[t] = t < n ? x[t] : 0.0f;
    __syncthreads();
    if (t < n) y[t] = s[n - 1 - t];
}
'''


def run_reverse(text, reverse_order):
    lib = emulator.load("reverse.cu", text=text)
    x = np.arange(64, dtype=np.float32)
    y = np.zeros_like(x)
    with emulator.reverse_schedule(reverse_order):
        lib.launch("reverse", 1, 64, (x, y, np.int32(64)), shared_mem=64 * 4,
                   reverse=reverse_order)
    return x, y


def test_a_block_shares_memory_across_a_barrier(emulated):
    for order in (False, True):
        x, y = run_reverse(REVERSE, order)
        assert np.array_equal(y, x[::-1])


def test_a_planted_missing_barrier_gives_wrong_results(emulated):
    x, y = run_reverse(REVERSE.replace("__syncthreads();", ""), False)
    assert np.isnan(y[: len(y) // 2]).all()          # read before the other half wrote: NaN


def test_a_missing_barrier_in_the_attention_kernel_is_caught(emulated, monkeypatch):
    """Remove the barrier that keeps the next K/V tile from overwriting the one still being
    read: the emulator's results go wrong (T > one tile)."""
    text = emulator.load_source("attention.cu")
    marker = "__syncthreads();                                  // everyone is done"
    assert marker in text
    broken = emulator.load("attention.cu", text=text.replace(marker, "//", 1))
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(1, 1, 70, 8)).astype(np.float32) for _ in range(3))
    good, _ = attention.forward(q, k, v, None, 0.35, 0.0, None)
    monkeypatch.setitem(emulator._libraries, ("attention.cu", None), broken)
    bad, _ = attention.forward(q, k, v, None, 0.35, 0.0, None)
    assert np.abs(f64(bad)[0] - f64(good)[0]).max() > 1e-2


TWO_BLOCK_SUMS = r'''
extern "C" __global__ void two_sums(const float* x, float* y) {
    __shared__ float scratch[32];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float out[2];
    for (int round = 0; round < 2; ++round) {
        float v = x[threadIdx.x] * (round + 1);
        for (int s = 16; s > 0; s >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, s);
        if (lane == 0) scratch[warp] = v;
        __syncthreads();
        out[round] = 0.0f;
        for (int w = 0; w < blockDim.x / 32; ++w) out[round] += scratch[w];
        __syncthreads();                       // everyone has read scratch: it may be reused
    }
    y[threadIdx.x] = out[0] + 1000.0f * out[1];
}
'''


def test_a_race_between_warps_is_caught(emulated):
    """Without the second barrier, a fast warp overwrites the scratch of round 1 with round 2's
    sums while a slow warp still reads it. The emulator runs each warp ahead to its next
    __syncthreads, so the fast-warp case happens every time (in one order or the other)."""
    x = np.arange(128, dtype=np.float32)
    expected = np.full(128, x.sum() + 1000 * 2 * x.sum(), np.float32)
    for text, ok in ((TWO_BLOCK_SUMS, True),
                     (TWO_BLOCK_SUMS.replace("__syncthreads();                       //", "//"),
                      False)):
        results = []
        for order in (False, True):
            y = np.zeros(128, np.float32)
            emulator.load("two_sums.cu", text=text).launch("two_sums", 1, 128, (x, y),
                                                            reverse=order)
            results.append(np.array_equal(y, expected))
        assert all(results) if ok else not all(results)


def test_barriers_in_divergent_code_are_reported_not_hung(emulated):
    text = r'''
extern "C" __global__ void split(float* y) {
    if (threadIdx.x < 16) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    y[threadIdx.x] = 1.0f;
}
'''
    with pytest.raises(emulator.EmulatorError, match="different lines"):
        emulator.load("split.cu", text=text).launch("split", 1, 32, (np.zeros(32, np.float32),))


def test_threads_that_returned_do_not_hold_a_barrier(emulated):
    """As on Volta and later: exited threads no longer count at __syncthreads."""
    text = r'''
extern "C" __global__ void early(float* y) {
    if (threadIdx.x >= 40) return;
    __syncthreads();
    y[threadIdx.x] = 2.0f;
}
'''
    y = np.zeros(64, np.float32)
    emulator.load("early.cu", text=text).launch("early", 1, 64, (y,))
    assert (y[:40] == 2).all() and (y[40:] == 0).all()


def test_a_shuffle_with_exited_lanes_is_reported(emulated):
    text = r'''
extern "C" __global__ void shuffle(float* y) {
    if (threadIdx.x == 3) return;
    y[threadIdx.x] = __shfl_xor_sync(0xFFFFFFFFu, 1.0f, 1);
}
'''
    with pytest.raises(emulator.EmulatorError, match="1 have exited"):
        emulator.load("shuffle.cu", text=text).launch("shuffle", 1, 32,
                                                      (np.zeros(32, np.float32),))


def test_warp_shuffles_exchange_values(emulated):
    text = r'''
extern "C" __global__ void shuffles(const float* x, float* y) {
    float v = x[threadIdx.x];
    float total = v;
    for (int s = 16; s > 0; s >>= 1) total += __shfl_xor_sync(0xFFFFFFFFu, total, s);
    y[threadIdx.x] = total + 1000.0f * __shfl_down_sync(0xFFFFFFFFu, v, 1);
}
'''
    x = np.arange(64, dtype=np.float32)
    y = np.zeros_like(x)
    emulator.load("shuffles.cu", text=text).launch("shuffles", 1, 64, (x, y))
    sums = np.repeat([x[:32].sum(), x[32:].sum()], 32)
    down = np.where(np.arange(64) % 32 == 31, x, np.roll(x, -1))      # the last lane: its own
    assert np.array_equal(y, sums + 1000 * down)


def test_arguments_must_have_the_kernels_c_types(emulated):
    lib = emulator.load("reverse.cu", text=REVERSE)
    x = np.zeros(8, np.float32)
    with pytest.raises(emulator.EmulatorError, match="Python number has no C type"):
        lib.launch("reverse", 1, 8, (x, x, 8), shared_mem=32)
    with pytest.raises(emulator.EmulatorError, match="pointer to a 32-bit float, got float64"):
        lib.launch("reverse", 1, 8, (x.astype(np.float64), x, np.int32(8)), shared_mem=32)
    with pytest.raises(emulator.EmulatorError, match="3 arguments for 2|2 arguments for 3"):
        lib.launch("reverse", 1, 8, (x, x), shared_mem=32)
