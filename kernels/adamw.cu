// adamw.cu -- one launch updates every parameter of a group with Adam or AdamW; float32.
//
// Per element of parameter w with gradient g and moments m, v (optim/adam.py's arithmetic,
// in the same order and with the same float32-rounded constants):
//   AdamW: w = w * (1 - lr * wd)           Adam: g = g + wd * w
//   m = m + (g - m) * (1 - b1)
//   v = v * b2 + g * g * (1 - b2)
//   w = w - m / (sqrt(v) / sqrt(1 - b2^t) + eps) * (lr / (1 - b1^t))
// Every operation is rounded on its own (__fmul_rn and friends forbid fused multiply-adds), so
// the kernel reproduces the NumPy reference bit for bit wherever both round the same way.
//
// Shapes and dtypes: tables of P parameters: w_ptrs, g_ptrs, m_ptrs, v_ptrs (P,) uint64 device
// addresses of float32 arrays; block_tensor (nblocks,) int32 and block_start (nblocks,) int64:
// which parameter, and which element of it, each block starts at; sizes (P,) int64. Bias
// corrections: step_sizes / bc2_roots (P,) float32 when parameters are at different steps,
// else null and the scalars step_size, bc2_root. hyper: null, or (step_size, bc2_root, decay)
// read from memory instead of the scalars -- a step captured as a CUDA graph keeps its launch
// arguments, so what changes every step (the schedule's lr, t) is refreshed there before each
// replay (minitune/cuda/graph.py).
// Launch: block 256, each block one chunk of 256 * 4 elements of one parameter (the launcher
//   builds the block table once per set of parameters and caches it); grid nblocks.
//
//   params:  [ w0: chunk chunk chunk ][ w1: chunk ][ w2: chunk chunk ] ...
//   blocks:     b0    b1    b2            b3          b4    b5          (one launch)
//
// Variants:
//   1. adam_update as above.
// Traffic: reads w, g, m, v and writes w, m, v once (28 bytes an element); the reference
// makes ~12 passes over temporaries per parameter, one kernel launch each.
// Limits: float32 parameters.
#include "common.cuh"

#define CHUNK 1024                  // elements a block updates: 256 threads x 4

extern "C" __global__ void adam_update(
        const unsigned long long* w_ptrs, const unsigned long long* g_ptrs,
        const unsigned long long* m_ptrs, const unsigned long long* v_ptrs,
        const long long* sizes, const int* block_tensor, const long long* block_start,
        const float* step_sizes, const float* bc2_roots, float step_size, float bc2_root,
        float decay, float wd, float one_minus_b1, float b2, float one_minus_b2, float eps,
        int decoupled, const float* hyper) {
    if (hyper) {                    // a captured step: (step_size, bc2_root, decay) in memory
        step_size = hyper[0];
        bc2_root = hyper[1];
        decay = hyper[2];
    }
    int p = block_tensor[blockIdx.x];
    float* w = reinterpret_cast<float*>(w_ptrs[p]);
    const float* g = reinterpret_cast<const float*>(g_ptrs[p]);
    float* m = reinterpret_cast<float*>(m_ptrs[p]);
    float* v = reinterpret_cast<float*>(v_ptrs[p]);
    float ss = step_sizes ? step_sizes[p] : step_size;
    float root = bc2_roots ? bc2_roots[p] : bc2_root;
    long long start = block_start[blockIdx.x], end = min(sizes[p], start + CHUNK);
    for (long long e = start + threadIdx.x; e < end; e += blockDim.x) {
        float we = w[e], ge = g[e];
        if (decoupled) we = __fmul_rn(we, decay);
        else ge = __fadd_rn(ge, __fmul_rn(wd, we));
        float me = __fadd_rn(m[e], __fmul_rn(__fsub_rn(ge, m[e]), one_minus_b1));
        float ve = __fadd_rn(__fmul_rn(v[e], b2), __fmul_rn(__fmul_rn(ge, ge), one_minus_b2));
        float denom = __fadd_rn(__fdiv_rn(sqrtf(ve), root), eps);
        w[e] = __fsub_rn(we, __fmul_rn(__fdiv_rn(me, denom), ss));
        m[e] = me;
        v[e] = ve;
    }
}
