// embedding.cu -- embedding lookup and its deterministic backward (scatter-add); float32.
//
// Forward:  y[n, :] = w[ids[n], :]                                   (a gather)
// Backward: gw[v, :] = sum of gy[n, :] over the positions n with ids[n] == v, added in
//   increasing n -- the same bits on every run, unlike atomicAdd, whose order varies.
//   The launcher sorts the ids stably (order = argsort(ids), sorted = ids[order]); then the
//   positions of each id form one run of the sorted list, and
//   embedding_backward: block n owns sorted position n; if it starts a run (n == 0 or
//   sorted[n] != sorted[n - 1]) its threads walk the run over the columns, adding
//   gy[order[m], col] for m = n, n + 1, ... while sorted[m] == sorted[n], and write the sum
//   into gw once. Rows of gw whose id never occurs keep the zeros the launcher allocated.
//
//     sorted ids:  3 3 3 7 9 9        block 0 -> gw[3] = gy[o0] + gy[o1] + gy[o2]
//                  ^     ^ ^          block 3 -> gw[7],  block 4 -> gw[9]; blocks 1, 2, 5 idle
//
// Shapes and dtypes: ids, order, sorted (N,) int64; w, gw (V, H), y, gy (N, H) float32.
// Launch: forward grid min(N, 65535) blocks of 128 (block = position, threads walk the H
//   columns). Backward grid N, block 128 (the same).
// Variants:
//   1. embedding_forward, embedding_backward as above.
// Traffic: backward reads gy once and writes each used row of gw once (plus the sort of N
// ids); cupy's add.at does the same reads with atomic read-modify-writes.
// Limits: float32; a very long run (token-type ids: every position has id 0) is added by one
// block, serially over its rows -- correct, but the slowest case.
#include "common.cuh"

extern "C" __global__ void embedding_forward(const long long* ids, const float* w, float* y,
                                             int N, int H) {
    for (int n = blockIdx.x; n < N; n += gridDim.x) {     // block = position, thread = column
        const float* row = w + ids[n] * H;
        for (int col = threadIdx.x; col < H; col += blockDim.x)
            y[(long long)n * H + col] = row[col];
    }
}

extern "C" __global__ void embedding_backward(const long long* sorted, const long long* order,
                                              const float* gy, float* gw, int N, int H) {
    int n = blockIdx.x;
    if (n > 0 && sorted[n] == sorted[n - 1]) return;      // not a run's start: nothing to do
    long long id = sorted[n];
    for (int col = threadIdx.x; col < H; col += blockDim.x) {
        float acc = 0.0f;
        for (int m = n; m < N && sorted[m] == id; ++m) acc += gy[order[m] * H + col];
        gw[id * H + col] = acc;
    }
}
