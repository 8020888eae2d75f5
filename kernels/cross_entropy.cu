// cross_entropy.cu -- softmax cross-entropy with ignore_index, forward and backward; float32.
//
// For logits z (N, K) and integer targets t (N,):
//   lse_i = log sum_j exp(z_ij)          (one pass: a running max and a rescaled running sum)
//   loss_i = lse_i - z_i,t_i   for t_i != ignore_index, else 0
//   reduction: "none" -> losses (N,); "sum" -> sum_i loss_i; "mean" -> sum / count of counted
//   rows (0 when every row is ignored, not 0/0). count stays on the device.
// Backward needs only z (kept by the graph anyway) and lse (N floats) -- never a probability
// tensor -- and writes the gradient in one elementwise pass:
//   g_ij = (exp(z_ij - lse_i) - [j == t_i]) * [t_i != ignore_index] * scale_i
//   scale_i = gy_i ("none"), gy ("sum"), gy / max(count, 1) ("mean")
//
// Shapes and dtypes: z (N, K) float32 contiguous, t (N,) int64, losses and lse (N,) float32,
// out (1,) float32, count (1,) float32 (exact to 2^24 rows), bad (1,) int32: set to 1 when a
// counted target lies outside [0, K) (the launcher raises, naming the targets).
// Launch: forward one warp per row, block 256 (8 rows), grid ceil(N / 8); lanes stride over K,
//   so K = 2 (SST-2) and K = 30522 (a vocabulary) both work. cross_entropy_reduce: one block
//   of 256 threads adds losses and counts in a fixed order (deterministic). Backward: thread
//   = column, block min(256, K rounded up to 32), grid (ceil(K / block), min(N, 65535)),
//   block row y walks rows y, y + gridDim.y, ...
// Variants:
//   1. the three kernels above.
// Traffic: forward reads z once, writes 8 bytes a row (the unfused path writes and reads back
// the (N, K) log-probabilities). Backward reads z, writes g (the unfused path also reads a
// saved (N, K) logp).
// Limits: float32 logits; t int64 (the launcher converts others); N < 2^31.
#include "common.cuh"

extern "C" __global__ void cross_entropy_forward(const float* z, const long long* t,
                                                 float* losses, float* lse, int N, int K,
                                                 long long ignore_index, int* bad) {
    int lane = threadIdx.x % 32;
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    bool in = row < N;                                    // whole warps share a row: uniform
    const float* zr = z + (long long)(in ? row : 0) * K;
    float m = -CUDART_INF_F, s = 0.0f;                    // this lane's running max and sum
    for (int j = lane; in && j < K; j += 32) {
        float v = zr[j];
        if (v > m) {
            s = s * expf(m - v) + 1.0f;
            m = v;
        } else {
            s += expf(v - m);
        }
    }
    float m_all = warp_max(m);
    s = m == -CUDART_INF_F ? 0.0f : s * expf(m - m_all);  // lanes with no element add nothing
    float l = m_all + logf(warp_sum(s));
    if (in && lane == 0) {
        long long target = t[row];
        float loss = 0.0f;
        if (target != ignore_index) {
            if (target < 0 || target >= K) {
                *bad = 1;
                loss = CUDART_NAN_F;
            } else {
                loss = l - zr[target];
            }
        }
        losses[row] = loss;
        lse[row] = l;
    }
}

extern "C" __global__ void cross_entropy_reduce(const float* losses, const long long* t, int N,
                                                long long ignore_index, int mean, float* out,
                                                float* count_out) {
    __shared__ float scratch[32];
    float sum = 0.0f, count = 0.0f;
    for (int i = threadIdx.x; i < N; i += blockDim.x) {
        sum += losses[i];
        count += t[i] != ignore_index ? 1.0f : 0.0f;
    }
    sum = block_sum(sum, scratch);
    count = block_sum(count, scratch);
    if (threadIdx.x == 0) {
        out[0] = mean ? sum / fmaxf(count, 1.0f) : sum;
        count_out[0] = count;
    }
}

// mode: 0 "none" (gy (N,)), 1 "sum" (gy (1,)), 2 "mean" (gy (1,), divided by count)
extern "C" __global__ void cross_entropy_backward(const float* z, const long long* t,
                                                  const float* lse, const float* gy,
                                                  const float* count, float* g, int N, int K,
                                                  long long ignore_index, int mode) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= K) return;                                   // no barriers in this kernel
    float shared_scale = mode == 2 ? gy[0] / fmaxf(count[0], 1.0f) : mode == 1 ? gy[0] : 0.0f;
    for (int row = blockIdx.y; row < N; row += gridDim.y) {
        long long target = t[row], e = (long long)row * K + j;
        float scale = target == ignore_index ? 0.0f : mode == 0 ? gy[row] : shared_scale;
        g[e] = (expf(z[e] - lse[row]) - (j == target ? 1.0f : 0.0f)) * scale;
    }
}
