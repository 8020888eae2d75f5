// embedding.cu -- embedding lookup and its deterministic backward (scatter-add); float32.
//
// Forward:  y[n, :] = w[ids[n], :]                                   (a gather)
// Backward: gw[v, :] = sum of gy[n, :] over the positions n with ids[n] == v, added in a fixed
//   order -- the same bits on every run, unlike atomicAdd, whose order varies. The launcher
//   sorts the ids stably (order = argsort(ids), sorted = ids[order]), so the positions of each
//   id form one run of the sorted list. A run can be long (token-type ids: every position has
//   id 0), so it is added in two steps, each serial over at most PIECE (or N / PIECE) rows:
//   1. embedding_backward_pieces: block c takes sorted positions c * PIECE .. + PIECE - 1 and
//      cuts them where the id changes; each piece's sum goes to partial[its first position].
//   2. embedding_backward_runs: block n, if n starts a run (n == 0 or sorted[n] != sorted[n-1]),
//      adds the run's pieces in order -- partial[n], then partial[c * PIECE] for the following
//      chunks c that still hold the id -- and writes gw[id] once. Rows of gw whose id never
//      occurs keep the zeros the launcher allocated.
//
//     sorted ids   3 3 3 | 3 7 9 | 9 9 9        (PIECE = 3 in this sketch)
//     pieces       [0..2] [3][4][5] [6..8]      partial[0], partial[3], [4], [5], [6]
//     runs         gw[3] = partial[0] + partial[3];  gw[7] = partial[4];
//                  gw[9] = partial[5] + partial[6]
//
// Shapes and dtypes: ids, order, sorted (N,) int64; w, gw (V, H), y, gy, partial (N, H) float32.
// Launch: forward grid min(N, 65535) blocks of 128 (block = position, threads walk the H
//   columns). Backward: pieces grid ceil(N / PIECE), runs grid N; blocks of 128 (the same).
// Variants:
//   1. one block per run, serial over the whole run (4096 rows for token-type ids at 32 x 128).
//   2. (this file) runs cut into pieces of PIECE = 64 sorted positions, then pieces combined.
// Traffic: backward reads gy once, writes and reads the (N, H) partials once, and writes each
// used row of gw once (plus the sort of N ids); cupy's add.at reads gy with atomic
// read-modify-writes of gw.
// Limits: float32.
#include "common.cuh"

extern "C" __global__ void embedding_forward(const long long* ids, const float* w, float* y,
                                             int N, int H) {
    for (int n = blockIdx.x; n < N; n += gridDim.x) {     // block = position, thread = column
        const float* row = w + ids[n] * H;
        for (int col = threadIdx.x; col < H; col += blockDim.x)
            y[(long long)n * H + col] = row[col];
    }
}

#define PIECE 64

extern "C" __global__ void embedding_backward_pieces(const long long* sorted,
                                                     const long long* order, const float* gy,
                                                     float* partial, int N, int H) {
    int n0 = blockIdx.x * PIECE, n1 = min(N, n0 + PIECE);
    for (int col = threadIdx.x; col < H; col += blockDim.x) {
        float acc = 0.0f;
        int start = n0;
        for (int n = n0; n < n1; ++n) {                   // the id changes alike for all threads
            acc += gy[order[n] * H + col];
            if (n + 1 == n1 || sorted[n + 1] != sorted[n]) {
                partial[(long long)start * H + col] = acc;
                acc = 0.0f;
                start = n + 1;
            }
        }
    }
}

extern "C" __global__ void embedding_backward_runs(const long long* sorted, const float* partial,
                                                   float* gw, int N, int H) {
    int n = blockIdx.x;
    if (n > 0 && sorted[n] == sorted[n - 1]) return;      // not a run's start: nothing to do
    long long id = sorted[n];
    int c_end = n / PIECE + 1;                            // chunks after n's that hold the id
    while (c_end * PIECE < N && sorted[c_end * PIECE] == id) ++c_end;
    for (int col = threadIdx.x; col < H; col += blockDim.x) {
        float acc = partial[(long long)n * H + col];
        for (int c = n / PIECE + 1; c < c_end; ++c) acc += partial[(long long)c * PIECE * H + col];
        gw[id * H + col] = acc;
    }
}
