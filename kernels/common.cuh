// common.cuh -- helpers every minitune kernel file includes (pasted in by
// minitune/cuda/source.py, so NVRTC, the compile check and the CPU emulator see one text).
//
//   philox(seed, c0, c1, c2, c3)  Philox4x32-10: four 32-bit random words, a pure function of
//                                 a 64-bit key (the seed) and a 128-bit counter
//   draw16(r, k)                  the k-th of the eight 16-bit draws in those four words
//   warp_sum / warp_max           butterfly reductions over a warp (__shfl_xor_sync)
//   block_sum                     a sum over the whole block (blockDim.x % 32 == 0)
//
// Dropout from Philox: an element is kept when its 16-bit draw is >= threshold =
// round(p * 65536), so P(keep) = 1 - threshold / 65536 exactly, and the kept values are scaled
// by 65536 / (65536 - threshold). The counter is chosen per kernel (documented there) so that
// forward and backward regenerate the same mask from (seed, offset) alone: nothing is stored.
// Kernels that draw also take `const unsigned long long* seed_ptr`: null normally, and in a
// step captured as a CUDA graph the address of the seed, which minitune/cuda/graph.py
// refreshes before every replay (a captured launch keeps its argument values).
// NumPy reference: minitune/cuda/philox.py.
#include <math_constants.h>

// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): ten
// rounds of two 32x32->64 multiplies mixing the counter, with the key bumped by Weyl constants.
__device__ __forceinline__ uint4 philox(unsigned long long seed, unsigned c0, unsigned c1,
                                        unsigned c2, unsigned c3) {
    unsigned k0 = (unsigned)seed, k1 = (unsigned)(seed >> 32);
    for (int round = 0; round < 10; ++round) {
        unsigned hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        unsigned hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return make_uint4(c0, c1, c2, c3);
}

// Draw k (0..7) of one Philox result: word k / 2, low half for even k, high half for odd k.
__device__ __forceinline__ unsigned draw16(uint4 r, int k) {
    unsigned w = (k >> 1) == 0 ? r.x : (k >> 1) == 1 ? r.y : (k >> 1) == 2 ? r.z : r.w;
    return (k & 1) ? w >> 16 : w & 0xFFFFu;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int step = 16; step > 0; step >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, step);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int step = 16; step > 0; step >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, step));
    return v;
}

// Sum of v over the block, returned to every thread. scratch: 32 floats of shared memory.
// Two barriers: the first publishes the warp sums, the second keeps a fast warp from
// overwriting scratch (in a following call) before every warp has read it.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    v = warp_sum(v);
    __syncthreads();
    return v;
}
