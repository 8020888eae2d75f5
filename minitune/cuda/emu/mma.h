// The emulator's stand-in for CUDA's mma.h (nvcuda::wmma): enough of the WMMA API to run
// kernels/matmul_tc.cu on the CPU and check what can go wrong in its source -- which tile a
// fragment is loaded from, row- or column-major, the pointer arithmetic, the epilogue -- not
// the tensor cores' arithmetic.
//
// A real fragment spreads a 16 x 16 tile over a warp's 32 lanes in an unspecified way, and
// load/mma/store are warp-collective. Here every lane holds the whole tile (as floats: bf16
// and TF32 values are exact in float32) and does the whole operation itself: 32 times the
// work, the same results. mma_sync accumulates in float32, k in order.
#pragma once
#include "cuda_bf16.h"

namespace nvcuda {
namespace wmma {

struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
namespace precision {
struct tf32 {};
}
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K> struct tile_shape;     // rows x cols of a fragment
template <int M, int N, int K> struct tile_shape<matrix_a, M, N, K> { enum { R = M, C = K }; };
template <int M, int N, int K> struct tile_shape<matrix_b, M, N, K> { enum { R = K, C = N }; };
template <int M, int N, int K> struct tile_shape<accumulator, M, N, K> { enum { R = M, C = N }; };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    enum { R = tile_shape<Use, M, N, K>::R, C = tile_shape<Use, M, N, K>::C };
    static constexpr int num_elements = R * C;
    float x[R * C];                                   // the tile, row-major
};

inline float as_float(float v) { return v; }
inline float as_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// TF32: round to nearest, ties away from zero, to 10 mantissa bits (cvt.rna.tf32.f32).
inline float __float_to_tf32(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    if ((u & 0x7F800000u) != 0x7F800000u) u = (u + 0x1000u) & 0xFFFFE000u;
    memcpy(&f, &u, 4);
    return f;
}

template <class Use, int M, int N, int K, class T, class Layout, class E>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& a, const E* p, unsigned ldm) {
    constexpr bool col = std::is_same<Layout, col_major>::value;
    for (int r = 0; r < a.R; ++r)
        for (int c = 0; c < a.C; ++c)
            a.x[r * a.C + c] = as_float(col ? p[c * ldm + r] : p[r * ldm + c]);
}

template <class Use, int M, int N, int K, class T, class Layout>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout>& a, float v) {
    for (int i = 0; i < a.R * a.C; ++i) a.x[i] = v;
}

template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d,
                     const fragment<matrix_a, M, N, K, T, LA>& a,
                     const fragment<matrix_b, M, N, K, T, LB>& b,
                     const fragment<accumulator, M, N, K, float>& c) {
    float out[M * N];
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float acc = c.x[i * N + j];
            for (int k = 0; k < K; ++k) acc += a.x[i * K + k] * b.x[k * N + j];
            out[i * N + j] = acc;
        }
    memcpy(d.x, out, sizeof out);
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& a,
                              unsigned ldm, layout_t layout) {
    for (int r = 0; r < M; ++r)
        for (int c = 0; c < N; ++c)
            p[layout == mem_col_major ? c * ldm + r : r * ldm + c] = a.x[r * N + c];
}

}  // namespace wmma
}  // namespace nvcuda
