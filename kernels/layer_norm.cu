// layer_norm.cu -- LayerNorm over the last axis with the residual add fused in; float32.
//
// Forward, per row (N = B * T rows of H):
//   u = x + residual                        (residual optional)
//   mean = sum(u) / H,  var = sum((u - mean)^2) / H      (two passes over registers: no
//   rstd = 1 / sqrt(var + eps)                            E[u^2] - E[u]^2 cancellation)
//   y = (u - mean) * rstd * w + b
// saved for backward: u (only written when there is a residual -- otherwise it is x itself),
// mean (N,), rstd (N,). Backward recomputes xhat = (u - mean) * rstd:
//   gxhat = gy * w
//   gx = rstd * (gxhat - mean_H(gxhat) - xhat * mean_H(gxhat * xhat))  (also the residual's)
//   gw = sum over rows of gy * xhat,  gb = sum over rows of gy
// The column sums are deterministic: each block adds its rows in order into per-block
// partials (P, H), and sum_partials adds the P partials in order (reduce.cuh).
//
// Shapes and dtypes: x, residual, y, u, gy, gx (N, H) float32 contiguous; w, b (H,); mean,
// rstd (N,). H <= 8 * blockDim.x (2048 with 256 threads).
// Launch: block 128 threads for H <= 512, else 256; a block walks rows blockIdx.x,
//   blockIdx.x + gridDim.x, ...; thread t keeps columns t, t + blockDim.x, ... in registers.
//   Forward grid: N blocks (capped at 65535). Backward grid: P = min(N, 512) blocks -- a fixed
//   number, so the partial sums (and gw, gb) are the same on every GPU -- then sum_partials.
//
//     row r:  [ t0 t1 ... t127 | t0 t1 ... t127 | t0 t1 ... ]   (H columns, one pass to
//              registers, block_sum twice, one pass out)
//
// Variants:
//   1. layer_norm_forward / layer_norm_backward: one block per row (forward), P blocks of
//      rows (backward); u kept in registers between the statistics and the output.
// Traffic: forward reads x (+ residual) once, writes y (+ u) and 8 bytes a row; the unfused
// path (add, mean, subtract, square, mean, ...) makes about ten passes. Backward reads gy and
// u once, writes gx, plus the (P, H) partials.
// Limits: float32; H <= 2048; eps as given (BERT: 1e-12).
#include "common.cuh"
#include "reduce.cuh"

#define MAXC 8                      // columns a thread keeps in registers

extern "C" __global__ void layer_norm_forward(const float* x, const float* residual,
                                              const float* w, const float* b, float* y,
                                              float* u_out, float* mean_out, float* rstd_out,
                                              int N, int H, float eps) {
    __shared__ float scratch[32];
    for (int row = blockIdx.x; row < N; row += gridDim.x) {
        long long base = (long long)row * H;
        float u[MAXC], sum = 0.0f;
#pragma unroll
        for (int c = 0; c < MAXC; ++c) {
            int col = threadIdx.x + c * blockDim.x;
            u[c] = col < H ? x[base + col] + (residual ? residual[base + col] : 0.0f) : 0.0f;
            sum += u[c];
        }
        float mean = block_sum(sum, scratch) / H;
        float dev = 0.0f;
#pragma unroll
        for (int c = 0; c < MAXC; ++c) {
            int col = threadIdx.x + c * blockDim.x;
            float d = col < H ? u[c] - mean : 0.0f;
            dev += d * d;
        }
        float rstd = 1.0f / sqrtf(block_sum(dev, scratch) / H + eps);
#pragma unroll
        for (int c = 0; c < MAXC; ++c) {
            int col = threadIdx.x + c * blockDim.x;
            if (col < H) {
                y[base + col] = (u[c] - mean) * rstd * w[col] + b[col];
                if (u_out) u_out[base + col] = u[c];
            }
        }
        if (threadIdx.x == 0) {
            mean_out[row] = mean;
            rstd_out[row] = rstd;
        }
    }
}

extern "C" __global__ void layer_norm_backward(const float* gy, const float* u, const float* w,
                                               const float* mean, const float* rstd, float* gx,
                                               float* gw_part, float* gb_part, int N, int H) {
    __shared__ float scratch[32];
    float gw_acc[MAXC], gb_acc[MAXC];
#pragma unroll
    for (int c = 0; c < MAXC; ++c) gw_acc[c] = gb_acc[c] = 0.0f;
    for (int row = blockIdx.x; row < N; row += gridDim.x) {
        long long base = (long long)row * H;
        float mu = mean[row], r = rstd[row];
        float xhat[MAXC], gxhat[MAXC], s1 = 0.0f, s2 = 0.0f;
#pragma unroll
        for (int c = 0; c < MAXC; ++c) {
            int col = threadIdx.x + c * blockDim.x;
            float g = col < H ? gy[base + col] : 0.0f;
            xhat[c] = col < H ? (u[base + col] - mu) * r : 0.0f;
            gxhat[c] = col < H ? g * w[col] : 0.0f;
            s1 += gxhat[c];
            s2 += gxhat[c] * xhat[c];
            gw_acc[c] += g * xhat[c];
            gb_acc[c] += g;
        }
        float mean_g = block_sum(s1, scratch) / H;
        float mean_gx = block_sum(s2, scratch) / H;
#pragma unroll
        for (int c = 0; c < MAXC; ++c) {
            int col = threadIdx.x + c * blockDim.x;
            if (col < H) gx[base + col] = r * (gxhat[c] - mean_g - xhat[c] * mean_gx);
        }
    }
#pragma unroll
    for (int c = 0; c < MAXC; ++c) {
        int col = threadIdx.x + c * blockDim.x;
        if (col < H) {
            gw_part[(long long)blockIdx.x * H + col] = gw_acc[c];
            gb_part[(long long)blockIdx.x * H + col] = gb_acc[c];
        }
    }
}
