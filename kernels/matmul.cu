// matmul.cu -- float32 GEMM on CUDA cores: C = op(A) op(B) (+ bias) (-> GELU), batched.
//
// Computes, for every batch z and every (m, n) of an M x N output,
//   acc[m, n] = sum_k opA[m, k] * opB[k, n]            (float32 multiply-adds, K terms)
//   epilogue  none:  C = acc
//             bias:  C = acc + bias[n]
//             gelu:  P = acc,  C = gelu(acc + bias[n])  (exact erf; P is what GELU's backward
//                    needs, so the feed-forward's GELU costs no pass of its own)
// opA[m, k] is A[m * lda + k] ("N": A stored (M, K)) or A[k * lda + m] ("T": stored (K, M));
// opB[k, n] is B[k * ldb + n] ("N": stored (K, N)) or B[n * ldb + k] ("T": stored (N, K)).
// Everything is row-major; batch z reads A + z * sa, B + z * sb and writes C + z * sc (a
// stride of 0 broadcasts one matrix over the batch). The layouts minitune uses:
//   Linear forward    y  = x W^T + b     NT   (W is stored (OUT, IN), as in Hugging Face)
//   Linear backward   gx = gy W          NN
//                     gW = gy^T x        TN   (K = B * T rows: split over K, see below)
//   matmul a @ b      NN, and in its backward gy b^T (NT) and a^T gy (TN)
// Split-K: with k_chunk > 0, batch z multiplies the K-slice [z * k_chunk, (z + 1) * k_chunk)
// (the launcher passes sa, sb = the slice offsets, sc = M * N) and writes its partial product;
// sum_partials (reduce.cuh) then adds the slices in order: deterministic, no atomics. Used when
// M x N alone has too few tiles to fill the GPU (gW of a 384 x 384 layer: 36 tiles of 64 x 64
// for 132 SMs).
//
// Shapes and dtypes: float32 everywhere; M, N, K >= 1 and < 2^31; any odd sizes. The "_vec"
// kernels read and write float4s: they need 16-byte aligned pointers and every contiguous
// dimension, leading dim and batch stride a multiple of 4 (the launcher checks; the "_scalar"
// twins take anything).
//
// Variants (numbered as in the docs; every one is a kernel here, variants 1-3 for study and
// benchmarks, variant 4 is what the launcher runs):
//   1. gemm1_*: shared-memory tiling. A 16 x 16 block computes a 16 x 16 tile of C, one output
//      per thread; each 16-wide slice of K is staged in shared memory, so a value read from
//      global memory serves 16 multiply-adds instead of 1.
//   2. gemm2_*: 2-D register blocking. A 256-thread block computes a 64 x 64 tile, each thread
//      a 4 x 4 sub-tile: per k it loads 4 values of A and 4 of B from shared memory into
//      registers and does 16 multiply-adds (4x fewer shared-memory loads per FMA than 1). The
//      tiles are stored k-major (S[k][row]) so those 4 values are adjacent.
//   3. gemm3_*_vec: vectorised. 128 x 128 tiles, 8 x 8 outputs a thread; global loads and
//      shared-memory reads are float4 (one instruction moves 16 bytes). Thread (ty, tx) owns
//      rows ty*8..ty*8+7 and columns tx*8..tx*8+7: the 8 threads of a quarter-warp then read
//      B at float4 offsets 0, 8, 16, ... 56 -- a 2-way shared-memory bank conflict.
//   4. gemm4_*: warp tiling. The block's tile is cut into 64 x 32 warp tiles; lane (ly, lx) of
//      a warp (8 x 4 lanes) owns rows {ly*4.., 32+ly*4..} x columns {lx*4.., 16+lx*4..} of its
//      warp tile (2 x 2 groups of 4 x 4). A quarter-warp now reads consecutive float4s (no
//      bank conflicts), a warp touches 64 rows and 32 columns of shared memory per k (not
//      256 and 16 as in 3), and the epilogue writes float4s. Tiles 128 x 128 (256 threads)
//      or 64 x 64 (64 threads), chosen per shape so that the grid fills the GPU; fused
//      epilogues (bias, bias + GELU) in the NT layout.
//   Tensor cores (TF32, BF16): kernels/matmul_tc.cu.
//
// Launch: variant 1 block (16, 16), grid (ceil(N/16), ceil(M/16), batch); variants 2-4 block
//   (threads,), grid (ceil(N/BN), ceil(M/BM), batch or splits) -- minitune/cuda/matmul.py.
//
//        B tile: BK x BN, k-major in smem
//              +-----------+
//              |  Bs[k][n] |           one K step: every thread reads its 8 values of
//              +-----------+           A (a column of As) and 8 of B (a row of Bs) and
//   +----+     +-----------+           does 64 multiply-adds into registers
//   | As |     |  C tile   |
//   |[k] |     |  BM x BN  |    <- K/BK steps, each: global -> smem (all threads),
//   | [m]|     |           |       __syncthreads, compute, __syncthreads
//   +----+     +-----------+
//
// Traffic: each A element is read ceil(N/BN) times and each B element ceil(M/BM) times from
// global memory (128 x 128 tiles: 1/128 of the naive kernel's loads); C is written once.
// Limits: float32 only (float64 runs on the reference); no double buffering of the tiles
// (what cuBLAS adds on top, with tensor cores on Hopper -- see docs/kernels.md).
#include "common.cuh"
#include "gemm.cuh"
#include "reduce.cuh"

// opA[m, k] (TA: A stored (K, M)) and opB[k, n] (TB: B stored (N, K)), 0 outside the matrix.
template <bool TA>
__device__ __forceinline__ float load_a(const float* A, int lda, int m, int k, int M, int K) {
    if (m >= M || k >= K) return 0.0f;
    return TA ? A[(long long)k * lda + m] : A[(long long)m * lda + k];
}
template <bool TB>
__device__ __forceinline__ float load_b(const float* B, int ldb, int k, int n, int K, int N) {
    if (k >= K || n >= N) return 0.0f;
    return TB ? B[(long long)n * ldb + k] : B[(long long)k * ldb + n];
}

// ---------------------------------------------------------------- variant 1: smem tiling

#define T1 16

template <bool TA, bool TB>
__device__ void gemm1(GEMM_ARGS) {
    GEMM_BATCH
    __shared__ float As[T1][T1 + 1];            // As[m][k]; +1: no bank conflicts on As[ty][kk]
    __shared__ float Bs[T1][T1 + 1];            // Bs[k][n]
    int tx = threadIdx.x, ty = threadIdx.y;
    int m = blockIdx.y * T1 + ty, n = blockIdx.x * T1 + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < Kz; k0 += T1) {
        As[ty][tx] = load_a<TA>(A, lda, blockIdx.y * T1 + ty, k0 + tx, M, Kz);
        Bs[ty][tx] = load_b<TB>(B, ldb, k0 + ty, n, Kz, N);
        __syncthreads();                        // the tiles are complete
        for (int kk = 0; kk < T1; ++kk) acc += As[ty][kk] * Bs[kk][tx];
        __syncthreads();                        // everyone is done before they are replaced
    }
    if (m < M && n < N) store1<EPI_NONE>(C, P, bias, ldc, m, n, acc);
}

// ------------------------------------------------- tiles of variants 2-4 in shared memory

// S[k][r] = X(r, k) for rows r0..r0+ROWS-1 and k0..k0+BK-1 of op(X), 0 outside R x Kz.
// KMAJOR: X stored (K, R), X(r, k) = X[k * ld + r] (rows contiguous: A "T", B "N");
// else X stored (R, K), X(r, k) = X[r * ld + k] (k contiguous: A "N", B "T"), transposed on
// the way into shared memory. Consecutive threads read consecutive addresses (coalesced).
template <bool KMAJOR, bool VEC, int ROWS, int BK, int LDS, int THREADS>
__device__ __forceinline__ void load_tile(float* S, const float* X, int ld, int r0, int k0,
                                          int R, int Kz) {
    constexpr int W = VEC ? 4 : 1;              // elements a thread moves per step
    if (KMAJOR) {
        for (int i = threadIdx.x; i < ROWS * BK / W; i += THREADS) {
            int k = i / (ROWS / W), r = (i % (ROWS / W)) * W;
            int gk = k0 + k, gr = r0 + r;
            if (VEC) {
                float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                if (gk < Kz && gr < R)          // R % 4 == 0: all four in, or all out
                    v = *reinterpret_cast<const float4*>(X + (long long)gk * ld + gr);
                *reinterpret_cast<float4*>(S + k * LDS + r) = v;
            } else {
                S[k * LDS + r] = (gk < Kz && gr < R) ? X[(long long)gk * ld + gr] : 0.0f;
            }
        }
    } else {
        for (int i = threadIdx.x; i < ROWS * BK / W; i += THREADS) {
            int r = i / (BK / W), k = (i % (BK / W)) * W;
            int gk = k0 + k, gr = r0 + r;
            if (VEC) {
                float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                if (gk < Kz && gr < R)          // Kz % 4 == 0
                    v = *reinterpret_cast<const float4*>(X + (long long)gr * ld + gk);
                S[(k + 0) * LDS + r] = v.x;
                S[(k + 1) * LDS + r] = v.y;
                S[(k + 2) * LDS + r] = v.z;
                S[(k + 3) * LDS + r] = v.w;
            } else {
                S[k * LDS + r] = (gk < Kz && gr < R) ? X[(long long)gr * ld + gk] : 0.0f;
            }
        }
    }
}

// One staged K step of variants 3 and 4: acc[i][j] += a[i] * b[j] for k = 0 .. BK-1, where a
// is As[k][ra0 .. ra0+3] and As[k][ra1 .. ra1+3], b is Bs[k][rb0 .. rb0+3] and Bs[k][rb1 ..
// rb1+3] -- four float4 loads from shared memory for 64 multiply-adds. The two variants
// differ only in which rows and columns (ra*, rb*) a thread owns.
template <int BK, int LDA, int LDB>
__device__ __forceinline__ void outer_products(float (&acc)[8][8], const float* As,
                                               const float* Bs, int ra0, int ra1, int rb0,
                                               int rb1) {
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
        float a[8], b[8];
        *reinterpret_cast<float4*>(a) = *reinterpret_cast<const float4*>(As + kk * LDA + ra0);
        *reinterpret_cast<float4*>(a + 4) =
            *reinterpret_cast<const float4*>(As + kk * LDA + ra1);
        *reinterpret_cast<float4*>(b) = *reinterpret_cast<const float4*>(Bs + kk * LDB + rb0);
        *reinterpret_cast<float4*>(b + 4) =
            *reinterpret_cast<const float4*>(Bs + kk * LDB + rb1);
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[i][j] += a[i] * b[j];
    }
}

// ------------------------------------------------------ variant 2: 2-D register blocking

#define BM2 64
#define BN2 64
#define BK2 8
#define TM2 4                                   // 16 x 16 threads, 4 x 4 outputs each

template <bool TA, bool TB>
__device__ void gemm2(GEMM_ARGS) {
    GEMM_BATCH
    __shared__ float As[BK2][BM2];              // k-major: a thread's 4 rows are adjacent
    __shared__ float Bs[BK2][BN2];
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    int m0 = blockIdx.y * BM2, n0 = blockIdx.x * BN2;
    float acc[TM2][TM2] = {};
    for (int k0 = 0; k0 < Kz; k0 += BK2) {
        load_tile<TA, false, BM2, BK2, BM2, 256>(&As[0][0], A, lda, m0, k0, M, Kz);
        load_tile<!TB, false, BN2, BK2, BN2, 256>(&Bs[0][0], B, ldb, n0, k0, N, Kz);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK2; ++kk) {
            float a[TM2], b[TM2];
#pragma unroll
            for (int i = 0; i < TM2; ++i) a[i] = As[kk][ty * TM2 + i];
#pragma unroll
            for (int j = 0; j < TM2; ++j) b[j] = Bs[kk][tx * TM2 + j];
#pragma unroll
            for (int i = 0; i < TM2; ++i)
#pragma unroll
                for (int j = 0; j < TM2; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM2; ++i)
#pragma unroll
        for (int j = 0; j < TM2; ++j) {
            int m = m0 + ty * TM2 + i, n = n0 + tx * TM2 + j;
            if (m < M && n < N) store1<EPI_NONE>(C, P, bias, ldc, m, n, acc[i][j]);
        }
}

// ---------------------------------------------------------- variant 3: vectorised loads

#define BM3 128
#define BN3 128
#define BK3 8
#define PAD 4                                   // keeps rows 16-byte aligned; see load_tile

template <bool TA, bool TB>
__device__ void gemm3(GEMM_ARGS) {
    GEMM_BATCH
    __shared__ __align__(16) float As[BK3][BM3 + PAD];
    __shared__ __align__(16) float Bs[BK3][BN3 + PAD];
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;     // 16 x 16 threads, 8 x 8 outputs
    int m0 = blockIdx.y * BM3, n0 = blockIdx.x * BN3;
    float acc[8][8] = {};
    for (int k0 = 0; k0 < Kz; k0 += BK3) {
        load_tile<TA, true, BM3, BK3, BM3 + PAD, 256>(&As[0][0], A, lda, m0, k0, M, Kz);
        load_tile<!TB, true, BN3, BK3, BN3 + PAD, 256>(&Bs[0][0], B, ldb, n0, k0, N, Kz);
        __syncthreads();
        // rows ty*8 .. ty*8+7 and columns tx*8 .. tx*8+7, each as two float4s
        outer_products<BK3, BM3 + PAD, BN3 + PAD>(acc, &As[0][0], &Bs[0][0], ty * 8,
                                                  ty * 8 + 4, tx * 8, tx * 8 + 4);
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        int m = m0 + ty * 8 + i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < 8; j += 4) {
            int n = n0 + tx * 8 + j;
            if (n < N) store4<EPI_NONE>(C, P, bias, ldc, m, n, acc[i] + j);   // N % 4 == 0
        }
    }
}

// --------------------------------------------------------------- variant 4: warp tiling

// A BM x BN block tile of (BM / 64) x (BN / 32) warps; a warp's 64 x 32 tile is 8 x 4 lanes,
// each owning 2 x 2 groups of 4 x 4 outputs:
//   rows  wm + {0, 32} + ly * 4 + 0..3        columns  wn + {0, 16} + lx * 4 + 0..3
template <int BM, int BN, bool TA, bool TB, int EPI, bool VEC>
__device__ void gemm4(GEMM_ARGS) {
    constexpr int BK = 8, THREADS = (BM / 64) * (BN / 32) * 32;
    GEMM_BATCH
    __shared__ __align__(16) float As[BK][BM + PAD];
    __shared__ __align__(16) float Bs[BK][BN + PAD];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int wm = (warp / (BN / 32)) * 64, wn = (warp % (BN / 32)) * 32;
    int ly = lane / 4, lx = lane % 4;
    int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    float acc[8][8] = {};                       // [2 row groups x 4][2 column groups x 4]
    for (int k0 = 0; k0 < Kz; k0 += BK) {
        load_tile<TA, VEC, BM, BK, BM + PAD, THREADS>(&As[0][0], A, lda, m0, k0, M, Kz);
        load_tile<!TB, VEC, BN, BK, BN + PAD, THREADS>(&Bs[0][0], B, ldb, n0, k0, N, Kz);
        __syncthreads();
        // the warp tile's 2 x 2 groups: rows 32 apart, columns 16 apart
        outer_products<BK, BM + PAD, BN + PAD>(acc, &As[0][0], &Bs[0][0], wm + ly * 4,
                                               wm + 32 + ly * 4, wn + lx * 4,
                                               wn + 16 + lx * 4);
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        int m = m0 + wm + (i / 4) * 32 + ly * 4 + i % 4;
        if (m >= M) continue;
#pragma unroll
        for (int g = 0; g < 2; ++g) {
            int n = n0 + wn + g * 16 + lx * 4;
            if (VEC) {
                if (n < N) store4<EPI>(C, P, bias, ldc, m, n, acc[i] + g * 4);   // N % 4 == 0
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    if (n + j < N) store1<EPI>(C, P, bias, ldc, m, n + j, acc[i][g * 4 + j]);
            }
        }
    }
}

// ------------------------------------------------------------------------ entry points
// gemm<variant>_<layouts of A and B>[_<tile>_<epilogue>]_<vec|scalar>

extern "C" __global__ void gemm1_nn(GEMM_ARGS) { gemm1<false, false>(GEMM_PASS); }
extern "C" __global__ void gemm1_nt(GEMM_ARGS) { gemm1<false, true>(GEMM_PASS); }
extern "C" __global__ void gemm1_tn(GEMM_ARGS) { gemm1<true, false>(GEMM_PASS); }

extern "C" __global__ void gemm2_nn(GEMM_ARGS) { gemm2<false, false>(GEMM_PASS); }
extern "C" __global__ void gemm2_nt(GEMM_ARGS) { gemm2<false, true>(GEMM_PASS); }
extern "C" __global__ void gemm2_tn(GEMM_ARGS) { gemm2<true, false>(GEMM_PASS); }

extern "C" __global__ void gemm3_nn_vec(GEMM_ARGS) { gemm3<false, false>(GEMM_PASS); }
extern "C" __global__ void gemm3_nt_vec(GEMM_ARGS) { gemm3<false, true>(GEMM_PASS); }
extern "C" __global__ void gemm3_tn_vec(GEMM_ARGS) { gemm3<true, false>(GEMM_PASS); }

extern "C" __global__ __launch_bounds__(256) void gemm4_nn_128x128_none_vec(GEMM_ARGS) {
    gemm4<128, 128, false, false, EPI_NONE, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(256) void gemm4_nn_128x128_none_scalar(GEMM_ARGS) {
    gemm4<128, 128, false, false, EPI_NONE, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(64) void gemm4_nn_64x64_none_vec(GEMM_ARGS) {
    gemm4<64, 64, false, false, EPI_NONE, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(64) void gemm4_nn_64x64_none_scalar(GEMM_ARGS) {
    gemm4<64, 64, false, false, EPI_NONE, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(256) void gemm4_tn_128x128_none_vec(GEMM_ARGS) {
    gemm4<128, 128, true, false, EPI_NONE, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(256) void gemm4_tn_128x128_none_scalar(GEMM_ARGS) {
    gemm4<128, 128, true, false, EPI_NONE, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(64) void gemm4_tn_64x64_none_vec(GEMM_ARGS) {
    gemm4<64, 64, true, false, EPI_NONE, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(64) void gemm4_tn_64x64_none_scalar(GEMM_ARGS) {
    gemm4<64, 64, true, false, EPI_NONE, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(256) void gemm4_nt_128x128_none_vec(GEMM_ARGS) {
    gemm4<128, 128, false, true, EPI_NONE, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(256) void gemm4_nt_128x128_none_scalar(GEMM_ARGS) {
    gemm4<128, 128, false, true, EPI_NONE, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(64) void gemm4_nt_64x64_none_vec(GEMM_ARGS) {
    gemm4<64, 64, false, true, EPI_NONE, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(64) void gemm4_nt_64x64_none_scalar(GEMM_ARGS) {
    gemm4<64, 64, false, true, EPI_NONE, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(256) void gemm4_nt_128x128_bias_vec(GEMM_ARGS) {
    gemm4<128, 128, false, true, EPI_BIAS, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(256) void gemm4_nt_128x128_bias_scalar(GEMM_ARGS) {
    gemm4<128, 128, false, true, EPI_BIAS, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(64) void gemm4_nt_64x64_bias_vec(GEMM_ARGS) {
    gemm4<64, 64, false, true, EPI_BIAS, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(64) void gemm4_nt_64x64_bias_scalar(GEMM_ARGS) {
    gemm4<64, 64, false, true, EPI_BIAS, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(256) void gemm4_nt_128x128_gelu_vec(GEMM_ARGS) {
    gemm4<128, 128, false, true, EPI_GELU, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(256) void gemm4_nt_128x128_gelu_scalar(GEMM_ARGS) {
    gemm4<128, 128, false, true, EPI_GELU, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(64) void gemm4_nt_64x64_gelu_vec(GEMM_ARGS) {
    gemm4<64, 64, false, true, EPI_GELU, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(64) void gemm4_nt_64x64_gelu_scalar(GEMM_ARGS) {
    gemm4<64, 64, false, true, EPI_GELU, false>(GEMM_PASS);
}
