// dropout.cu -- inverted dropout with a counter-based mask: y = x * keep * scale.
//
// Computes  y[e] = keep(e) ? x[e] * scale : 0  for the n elements of a contiguous float32 array,
// keep(e) = draw16(philox(seed, e / 8 (low 32 bits), e / 8 >> 32, 0, offset), e % 8) >= threshold
// (common.cuh). The mask is a pure function of (seed, offset, e): the backward pass runs the
// same kernel on gy and gets gx = gy * keep * scale without a stored mask, and a run resumed
// from a checkpoint (which stores the numpy Generator the seed is drawn from) redraws it.
//
// Shapes and dtypes: x, y (n,) float32 (any shape, contiguous), n < 2^38.
// Launch: grid-stride; each thread takes one Philox call = 8 consecutive elements;
//   block 256, grid min(ceil(n / 8 / 256), 65535 * 4) (launcher: minitune/cuda/dropout.py).
// Variants:
//   1. dropout_apply: 8 elements per thread, two float4 loads and stores when the arrays are
//      16-byte aligned (aligned = 1), scalar otherwise and in the tail.
// Traffic: reads x, writes y (8 bytes per element) -- the reference also writes and reads back
//   a one-byte mask and draws it on the host.
// seed_ptr: null, or where the seed is read from instead (a CUDA graph's seed slot: a
// captured kernel keeps its arguments, so a seed that changes every step lives in memory).
// Limits: float32 only; y may alias x.
#include "common.cuh"

extern "C" __global__ void dropout_apply(const float* x, float* y, long long n,
                                         unsigned long long seed, unsigned offset,
                                         unsigned threshold, float scale, int aligned,
                                         const unsigned long long* seed_ptr) {
    if (seed_ptr) seed = *seed_ptr;                       // a captured step's seed (common.cuh)
    long long groups = (n + 7) / 8;
    for (long long g = blockIdx.x * (long long)blockDim.x + threadIdx.x; g < groups;
         g += (long long)gridDim.x * blockDim.x) {
        uint4 r = philox(seed, (unsigned)g, (unsigned)(g >> 32), 0u, offset);
        long long e0 = g * 8;
        if (aligned && e0 + 8 <= n) {
            float4 a = reinterpret_cast<const float4*>(x + e0)[0];
            float4 b = reinterpret_cast<const float4*>(x + e0)[1];
            a.x = draw16(r, 0) >= threshold ? a.x * scale : 0.0f;
            a.y = draw16(r, 1) >= threshold ? a.y * scale : 0.0f;
            a.z = draw16(r, 2) >= threshold ? a.z * scale : 0.0f;
            a.w = draw16(r, 3) >= threshold ? a.w * scale : 0.0f;
            b.x = draw16(r, 4) >= threshold ? b.x * scale : 0.0f;
            b.y = draw16(r, 5) >= threshold ? b.y * scale : 0.0f;
            b.z = draw16(r, 6) >= threshold ? b.z * scale : 0.0f;
            b.w = draw16(r, 7) >= threshold ? b.w * scale : 0.0f;
            reinterpret_cast<float4*>(y + e0)[0] = a;
            reinterpret_cast<float4*>(y + e0)[1] = b;
        } else {
            for (int k = 0; k < 8 && e0 + k < n; ++k)
                y[e0 + k] = draw16(r, k) >= threshold ? x[e0 + k] * scale : 0.0f;
        }
    }
}
