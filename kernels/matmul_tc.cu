// matmul_tc.cu -- GEMM on tensor cores, TF32 or BF16 operands, float32 accumulation:
// C = op(A) op(B) (+ bias) (-> GELU), batched; the products of amp.autocast("tf32"/"bf16").
//
// Computes what matmul.cu computes (same parameters, layouts NN / NT / TN, batch strides,
// epilogues -- see its header) with each operand rounded as it is staged in shared memory:
//   bf16: __float2bfloat16 (round to nearest even; 8 exponent and 7 mantissa bits)
//   tf32: wmma::__float_to_tf32 (round to nearest; 8 exponent and 10 mantissa bits)
// The products of rounded operands are exact in float32 and are accumulated in float32, so
// the result equals minitune.amp.round_to(A) @ round_to(B) up to the order of summation (the
// CPU tests' reference). Inputs and outputs stay float32 in global memory: activations and
// weights are float32 everywhere else in minitune.
//
// Tensor cores through WMMA (nvcuda::wmma, sm_80+): a warp multiplies 16 x 16 fragments,
// 16 x 16 x 16 for bf16 and 16 x 16 x 8 for tf32. Block tile 128 x 128, BK = 32, 8 warps in
// 2 x 4; a warp owns a 64 x 32 tile = 4 x 2 accumulator fragments (16 x 16 floats each,
// held in registers across the whole K loop).
//
//   shared memory keeps each operand in its global layout, so nothing is transposed:
//     A "N" (M, K):  As[m][k]   -> matrix_a row_major       A "T" (K, M): As[k][m] -> col_major
//     B "N" (K, N):  Bs[k][n]   -> matrix_b row_major       B "T" (N, K): Bs[n][k] -> col_major
//   rows padded by 8 bf16 / 4 floats (16 bytes) so fragment loads hit different banks
//
// Epilogue: a warp stores each accumulator fragment to its 16 x 16 staging tile in shared
// memory, then its 32 lanes apply bias / GELU and write 8 elements each (bounds-checked).
//
// Launch: block 256, grid (ceil(N / 128), ceil(M / 128), batch) -- minitune/cuda/matmul.py.
// Variants:
//   5. gemm_{bf16,tf32}_{nn,nt,tn}_{none,bias,gelu}_{vec,scalar}: the above; "_vec" loads
//      float4s (sizes, leading dims and strides multiples of 4, 16-byte aligned), "_scalar"
//      loads single elements (any shapes).
// Split-K: as matmul.cu's (gemm.cuh's GEMM_BATCH): with k_chunk > 0, grid z multiplies the
// K-slice z into its own partial C, and the launcher adds the partials (plan_tc in
// minitune/cuda/matmul.py decides; added after the first H200 run, where the TN weight
// gradients of 384- and 768-wide layers filled 9-36 of 132 SMs).
// Limits: sm_80 or later (the launcher rounds and runs matmul.cu elsewhere); no
// cp.async double buffering, no Hopper wgmma / TMA -- which is where cuBLAS's remaining lead
// on an H200 comes from (docs/kernels.md). Tested: compile-checked for sm_80 and sm_90; its
// indexing (tiles, fragment layouts, rounding, epilogue) on the CPU emulator through a WMMA
// stand-in (minitune/cuda/emu/mma.h); its arithmetic on a GPU against cuBLAS.
#include <cuda_bf16.h>
#include <mma.h>

#include "common.cuh"
#include "gemm.cuh"

using namespace nvcuda;

#define TC_BM 128
#define TC_BN 128
#define TC_BK 32
#define TC_THREADS 256

struct Bf16 {                       // operand type in shared memory, fragment shape, rounding
    using Elem = __nv_bfloat16;
    using Frag = __nv_bfloat16;
    static constexpr int KSTEP = 16, PAD = 8;
    static __device__ __forceinline__ Elem round(float v) { return __float2bfloat16(v); }
};
struct Tf32 {
    using Elem = float;
    using Frag = wmma::precision::tf32;
    static constexpr int KSTEP = 8, PAD = 4;
    static __device__ __forceinline__ Elem round(float v) { return wmma::__float_to_tf32(v); }
};

// S[r][c] = round(X[(r0 + r) * ld + c0 + c]) for a ROWS x COLS tile of a stored (R, Cn)
// matrix, 0 outside it; consecutive threads read consecutive columns (coalesced).
template <class Op, bool VEC, int ROWS, int COLS>
__device__ __forceinline__ void load_rounded(typename Op::Elem* S, const float* X, int ld,
                                             int r0, int c0, int R, int Cn) {
    constexpr int W = VEC ? 4 : 1, LDS = COLS + Op::PAD;
    for (int i = threadIdx.x; i < ROWS * COLS / W; i += TC_THREADS) {
        int r = i / (COLS / W), c = (i % (COLS / W)) * W;
        int gr = r0 + r, gc = c0 + c;
        typename Op::Elem* s = S + r * LDS + c;
        if (VEC) {
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (gr < R && gc < Cn)          // Cn % 4 == 0: all four in, or all out
                v = *reinterpret_cast<const float4*>(X + (long long)gr * ld + gc);
            s[0] = Op::round(v.x);
            s[1] = Op::round(v.y);
            s[2] = Op::round(v.z);
            s[3] = Op::round(v.w);
        } else {
            s[0] = Op::round(gr < R && gc < Cn ? X[(long long)gr * ld + gc] : 0.0f);
        }
    }
}

// The fragment layout of an operand stored transposed (T) or not.
template <bool T> struct Layout { using type = wmma::row_major; };
template <> struct Layout<true> { using type = wmma::col_major; };

template <class Op, bool TA, bool TB, int EPI, bool VEC>
__device__ void gemm_tc(GEMM_ARGS) {
    using Elem = typename Op::Elem;
    using LayoutA = typename Layout<TA>::type;
    using LayoutB = typename Layout<TB>::type;
    constexpr int KS = Op::KSTEP, PAD = Op::PAD;
    // As: A "N" -> [BM][BK + PAD], A "T" -> [BK][BM + PAD]; Bs: B "N" -> [BK][BN + PAD],
    // B "T" -> [BN][BK + PAD]. The larger of each pair is allocated.
    constexpr int A_LD = TA ? TC_BM + PAD : TC_BK + PAD;
    constexpr int B_LD = TB ? TC_BK + PAD : TC_BN + PAD;
    __shared__ __align__(32) Elem As[(TA ? TC_BK : TC_BM) * A_LD];
    __shared__ __align__(32) Elem Bs[(TB ? TC_BN : TC_BK) * B_LD];
    __shared__ __align__(32) float stage[TC_THREADS / 32][16 * 16];
    GEMM_BATCH
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int wm = (warp / 4) * 64, wn = (warp % 4) * 32;
    int m0 = blockIdx.y * TC_BM, n0 = blockIdx.x * TC_BN;

    wmma::fragment<wmma::accumulator, 16, 16, KS, float> acc[4][2];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    for (int k0 = 0; k0 < Kz; k0 += TC_BK) {
        if (TA) load_rounded<Op, VEC, TC_BK, TC_BM>(As, A, lda, k0, m0, Kz, M);
        else load_rounded<Op, VEC, TC_BM, TC_BK>(As, A, lda, m0, k0, M, Kz);
        if (TB) load_rounded<Op, VEC, TC_BN, TC_BK>(Bs, B, ldb, n0, k0, N, Kz);
        else load_rounded<Op, VEC, TC_BK, TC_BN>(Bs, B, ldb, k0, n0, Kz, N);
        __syncthreads();                            // the tiles are complete
#pragma unroll
        for (int kk = 0; kk < TC_BK; kk += KS) {
            wmma::fragment<wmma::matrix_a, 16, 16, KS, typename Op::Frag, LayoutA> a[4];
            wmma::fragment<wmma::matrix_b, 16, 16, KS, typename Op::Frag, LayoutB> b[2];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                int m = wm + i * 16;
                wmma::load_matrix_sync(a[i], TA ? As + kk * A_LD + m : As + m * A_LD + kk, A_LD);
            }
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                int n = wn + j * 16;
                wmma::load_matrix_sync(b[j], TB ? Bs + n * B_LD + kk : Bs + kk * B_LD + n, B_LD);
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        __syncthreads();                            // everyone is done before they are replaced
    }

    float* st = stage[warp];
    int row = lane / 2, col = (lane % 2) * 8;       // a lane's 8 elements of a 16 x 16 fragment
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            wmma::store_matrix_sync(st, acc[i][j], 16, wmma::mem_row_major);
            __syncwarp();
            int m = m0 + wm + i * 16 + row, n = n0 + wn + j * 16 + col;
            if (m < M) {
                if (VEC && n + 8 <= N) {
                    store4<EPI>(C, P, bias, ldc, m, n, st + row * 16 + col);
                    store4<EPI>(C, P, bias, ldc, m, n + 4, st + row * 16 + col + 4);
                } else {
                    for (int c = 0; c < 8 && n + c < N; ++c)
                        store1<EPI>(C, P, bias, ldc, m, n + c, st[row * 16 + col + c]);
                }
            }
            __syncwarp();                           // read before the next fragment lands
        }
}

// ------------------------------------------------------------------------ entry points
// gemm_<precision>_<layouts of A and B>_<epilogue>_<vec|scalar>

extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_bf16_nn_none_vec(GEMM_ARGS) {
    gemm_tc<Bf16, false, false, EPI_NONE, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_bf16_nn_none_scalar(GEMM_ARGS) {
    gemm_tc<Bf16, false, false, EPI_NONE, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_bf16_tn_none_vec(GEMM_ARGS) {
    gemm_tc<Bf16, true, false, EPI_NONE, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_bf16_tn_none_scalar(GEMM_ARGS) {
    gemm_tc<Bf16, true, false, EPI_NONE, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_bf16_nt_none_vec(GEMM_ARGS) {
    gemm_tc<Bf16, false, true, EPI_NONE, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_bf16_nt_none_scalar(GEMM_ARGS) {
    gemm_tc<Bf16, false, true, EPI_NONE, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_bf16_nt_bias_vec(GEMM_ARGS) {
    gemm_tc<Bf16, false, true, EPI_BIAS, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_bf16_nt_bias_scalar(GEMM_ARGS) {
    gemm_tc<Bf16, false, true, EPI_BIAS, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_bf16_nt_gelu_vec(GEMM_ARGS) {
    gemm_tc<Bf16, false, true, EPI_GELU, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_bf16_nt_gelu_scalar(GEMM_ARGS) {
    gemm_tc<Bf16, false, true, EPI_GELU, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_tf32_nn_none_vec(GEMM_ARGS) {
    gemm_tc<Tf32, false, false, EPI_NONE, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_tf32_nn_none_scalar(GEMM_ARGS) {
    gemm_tc<Tf32, false, false, EPI_NONE, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_tf32_tn_none_vec(GEMM_ARGS) {
    gemm_tc<Tf32, true, false, EPI_NONE, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_tf32_tn_none_scalar(GEMM_ARGS) {
    gemm_tc<Tf32, true, false, EPI_NONE, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_tf32_nt_none_vec(GEMM_ARGS) {
    gemm_tc<Tf32, false, true, EPI_NONE, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_tf32_nt_none_scalar(GEMM_ARGS) {
    gemm_tc<Tf32, false, true, EPI_NONE, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_tf32_nt_bias_vec(GEMM_ARGS) {
    gemm_tc<Tf32, false, true, EPI_BIAS, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_tf32_nt_bias_scalar(GEMM_ARGS) {
    gemm_tc<Tf32, false, true, EPI_BIAS, false>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_tf32_nt_gelu_vec(GEMM_ARGS) {
    gemm_tc<Tf32, false, true, EPI_GELU, true>(GEMM_PASS);
}
extern "C" __global__ __launch_bounds__(TC_THREADS) void gemm_tf32_nt_gelu_scalar(GEMM_ARGS) {
    gemm_tc<Tf32, false, true, EPI_GELU, false>(GEMM_PASS);
}
