// gelu.cu -- bias + exact GELU, forward and backward; float32.
//
//   u = x + bias[col]                 (the bias of the Linear before it; optional)
//   y = u * Phi(u),   Phi(u) = 0.5 * (1 + erf(u / sqrt 2))      exact erf, as Hugging Face BERT
//   gx = gy * (Phi(u) + u * phi(u)),  phi(u) = exp(-u^2 / 2) / sqrt(2 pi)
//   gbias = sum over rows of gx       (deterministic: per-block partials + sum_partials)
// saved for backward: x and bias only -- u, Phi and phi are recomputed (the reference keeps u
// and Phi(u), two more (N, I) arrays).
//
// Shapes and dtypes: x, y, gy, gx (N, I) float32 contiguous (N = B * T), bias (I,) or null.
// Launch: block 256 = 256 consecutive columns (thread = column: the bias is read once, and no
//   index division per element). Forward grid (ceil(I / 256), min(N, 1024)), block row y
//   walks rows y, y + gridDim.y, ... Backward grid (ceil(I / 256), P) with P = min(N, 64)
//   chunks of consecutive rows; a thread walks its chunk in order, so gy/gx accesses are
//   coalesced and its partial bias gradient is deterministic.
//
//          cols c0 .. c0+255 (one block)
//   rows   | t0 t1 ... t255 |   chunk p of the N rows  -> partial[p, c0 .. c0+255]
//
// Variants:
//   1. gelu_forward / gelu_backward as above.
// Traffic: forward reads x, writes y (the unfused path: add, then erf, multiply, add ... each
// a pass, and keeps u and Phi). Backward reads gy and x, writes gx, plus (P, I) partials.
// Limits: float32. Dropout is not fused here: BERT has none after its GELU.
#include "common.cuh"
#include "reduce.cuh"

#define SQRT_HALF 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

extern "C" __global__ void gelu_forward(const float* x, const float* bias, float* y, int N,
                                        int I) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= I) return;                                 // no barriers in this kernel
    float b = bias ? bias[col] : 0.0f;
    for (int row = blockIdx.y; row < N; row += gridDim.y) {
        long long e = (long long)row * I + col;
        float u = x[e] + b;
        y[e] = u * (0.5f * (1.0f + erff(u * SQRT_HALF)));
    }
}

extern "C" __global__ void gelu_backward(const float* gy, const float* x, const float* bias,
                                         float* gx, float* gb_part, int N, int I) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= I) return;                                 // no barriers in this kernel
    int rows = (N + gridDim.y - 1) / gridDim.y;
    int r0 = blockIdx.y * rows, r1 = min(N, r0 + rows);
    float b = bias ? bias[col] : 0.0f, acc = 0.0f;
    for (int row = r0; row < r1; ++row) {
        long long e = (long long)row * I + col;
        float u = x[e] + b;
        float cdf = 0.5f * (1.0f + erff(u * SQRT_HALF));
        float pdf = expf(-0.5f * u * u) * INV_SQRT_2PI;
        float g = gy[e] * (cdf + u * pdf);
        gx[e] = g;
        acc += g;
    }
    if (gb_part) gb_part[(long long)blockIdx.y * I + col] = acc;
}
