// gemm.cuh -- what the GEMM kernels share (matmul.cu on CUDA cores, matmul_tc.cu on tensor
// cores): the parameter list, the batch / K-slice offsets, and the epilogue that writes C.
//
//   GEMM_ARGS / GEMM_PASS   every entry point's parameters (matmul.cu's header explains them)
//   GEMM_BATCH              offsets A, B, C, P to batch (or K-slice) blockIdx.z; defines Kz
//   store1 / store4         C = acc, acc + bias[n], or gelu(acc + bias[n]) with P = acc; one
//                           element, or four adjacent columns as one float4
#define SQRT_HALF 0.70710678118654752f

#define GEMM_ARGS                                                                              \
    const float *A, const float *B, float *C, const float *bias, float *P, int M, int N,       \
    int K, int lda, int ldb, int ldc, long long sa, long long sb, long long sc, int k_chunk
#define GEMM_PASS A, B, C, bias, P, M, N, K, lda, ldb, ldc, sa, sb, sc, k_chunk

#define EPI_NONE 0
#define EPI_BIAS 1
#define EPI_GELU 2

// The batch's (or K-slice's) matrices, and the K it multiplies over.
#define GEMM_BATCH                                                                             \
    long long z = blockIdx.z;                                                                  \
    A += z * sa;                                                                               \
    B += z * sb;                                                                               \
    C += z * sc;                                                                               \
    if (P) P += z * sc;                                                                        \
    int Kz = k_chunk > 0 ? min(k_chunk, K - (int)z * k_chunk) : K;

__device__ __forceinline__ float gelu(float u) {
    return u * (0.5f * (1.0f + erff(u * SQRT_HALF)));
}

// C[m, n] (and P) from the accumulator: the epilogue, one element.
template <int EPI>
__device__ __forceinline__ void store1(float* C, float* P, const float* bias, int ldc, int m,
                                       int n, float acc) {
    long long at = (long long)m * ldc + n;
    if (EPI == EPI_NONE) {
        C[at] = acc;
    } else if (EPI == EPI_BIAS) {
        C[at] = acc + bias[n];
    } else {
        P[at] = acc;
        C[at] = gelu(acc + bias[n]);
    }
}

// Four adjacent columns n..n+3 of row m, one float4 store (the "_vec" kernels).
template <int EPI>
__device__ __forceinline__ void store4(float* C, float* P, const float* bias, int ldc, int m,
                                       int n, const float* acc) {
    long long at = (long long)m * ldc + n;
    float4 v = make_float4(acc[0], acc[1], acc[2], acc[3]);
    if (EPI != EPI_NONE) {
        float4 b = *reinterpret_cast<const float4*>(bias + n);
        if (EPI == EPI_GELU) *reinterpret_cast<float4*>(P + at) = v;
        v = make_float4(v.x + b.x, v.y + b.y, v.z + b.z, v.w + b.w);
        if (EPI == EPI_GELU) v = make_float4(gelu(v.x), gelu(v.y), gelu(v.z), gelu(v.w));
    }
    *reinterpret_cast<float4*>(C + at) = v;
}
