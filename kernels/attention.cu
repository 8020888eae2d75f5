// attention.cu -- fused scaled dot-product attention for BERT: forward and backward, float32.
//
// Computes, for every batch b and head h (q, k, v of shape (B, NH, T, HS)):
//   s_ij = (q_i . k_j) * scale + bias[b, j]          bias: the key-padding mask, or none
//   p_ij = softmax_j(s_ij)                            never stored: (B, NH, T, T) stays on chip
//   o_i  = sum_j p_ij z_ij v_j,   z_ij = keep_ij * dscale   (dropout on the probabilities)
// and keeps for backward only o and two numbers per row, m_i = max_j s_ij and
// L_i = log sum_j exp(s_ij - m_i), so that p_ij = exp(s_ij - m_i - L_i). The pair, not the
// logsumexp m_i + L_i itself: a fully masked row has m_i = -3.4e38, where adding L_i = log T
// is lost to rounding, and its uniform probabilities would come back as 1 instead of 1/T.
// Backward recomputes p from (m, L) -- FlashAttention's idea -- with D_i = do_i . o_i:
//   gv_j = sum_i p_ij z_ij do_i            gp_ij = (do_i . v_j) z_ij
//   gs_ij = p_ij (gp_ij - D_i)             (softmax backward; D_i = sum_j gp_ij p_ij)
//   gq_i = scale sum_j gs_ij k_j           gk_j = scale sum_i gs_ij q_i
// Dropout: keep_ij = draw16(philox(seed, j / 8, i, b * NH + h, offset), j % 8) >= threshold
// (common.cuh), regenerated identically in backward; threshold 0 turns dropout off.
//
// Shapes and dtypes: q, k, v (B, NH, T, HS) float32 with the last dim contiguous and strides
// (sb, sh, st) in elements shared by q, k and v (the head-split views of (B, T, H) activations
// qualify: no copy); o, gq, gk, gv written with strides (osb, osh, ost) -- the launcher
// allocates them as (B, T, NH, HS), so merging the heads back is free; gout has its own
// strides (gsb, gsh, gst). bias: (B, T) rows, bias_sb = 0 broadcasts one row; or null.
// m, L, D: (B * NH, T) contiguous. HS <= 128; any T >= 1.
//
// Launch geometry (variants 2-4): 128 threads a block. One row of a tile is handled by
// SPLIT = 1, 2 or 4 adjacent threads (HS <= 32, 64, 128), each holding 32 of the zero-padded
// head dims in registers, interleaved by float4, so the SPLIT threads of a row read one
// contiguous stretch of shared memory; their partial dot products meet by __shfl_xor_sync.
// ROWS = 128 / SPLIT rows a block; grid (ceil(T / ROWS), B * NH). Tiles of KT = 32 keys (or
// queries) are staged in shared memory: 2 * 32 * 32 * SPLIT floats = 8, 16 or 32 KiB.
//
//     queries of one (b, h)              keys and values of the same (b, h), KT rows a tile
//    +-------------------------+          +--------+--------+--------+
//    | block x: ROWS query rows| -------> | tile 0 | tile 1 |  ...   |   K, V tile -> smem,
//    | (SPLIT threads per row) |          +--------+--------+--------+   then every row:
//    +-------------------------+      s = q.k * scale + bias, online softmax, o += p z v
//
// Variants:
//   1. attention_forward_naive: one thread per query row, k and v read from global memory,
//      two passes over the keys (the max, then the sum and o). Where a reader starts.
//   2. attention_forward_s{1,2,4}: the tiled forward above, online softmax in one pass over
//      the keys (the running max m rescales what was summed so far); K and V read from
//      global memory once per ROWS queries; any T (long rows too).
//   3. attention_backward_dq_s{1,2,4}: query-major, K and V tiles in shared memory: D_i and
//      gq_i. Launched first: it writes D.
//   4. attention_backward_dkdv_s{1,2,4}: key-major, tiles of Q and dO (and m, L, D) in shared
//      memory; each row group keeps k_j, v_j, gk_j, gv_j in registers; the 8 keys that share
//      a Philox counter share its calls (keep_bytes: 32 / (8 SPLIT) calls a thread per query
//      tile instead of 32), passing the bits by shuffle. Two kernels instead of
//      FlashAttention-2's one with atomicAdd on gq: s and gp are computed twice (7 instead of 5
//      T x T x HS products), but there are no atomics, so the backward is deterministic.
// Traffic: forward reads q, k, v (k and v once per ROWS queries), writes o and 2 floats a row;
// the unfused path writes and reads back the (B, NH, T, T) scores, probabilities, mask and
// their gradients (docs/kernels.md counts the bytes).
// Limits: float32; HS <= 128; the mask must be a per-key bias (others run on the reference);
// T < 2^31. expf and logf, not the fast __expf.
#include "common.cuh"

#define KT 32                       // keys (or queries) per shared-memory tile
#define FULL 0xFFFFFFFFu

// The parameter lists, written once: the kernels' entry points (bottom of the file) pass
// them on to the template bodies.
#define FORWARD_ARGS                                                                           \
    const float *q, const float *k, const float *v, const float *bias, float *o, float *m_out, \
    float *l_out, int NH, int T, int HS, int sb, int sh, int st, int osb, int osh, int ost,    \
    int bias_sb, float scale, unsigned long long seed, unsigned offset, unsigned threshold,    \
    float dscale, const unsigned long long *seed_ptr
#define FORWARD_PASS q, k, v, bias, o, m_out, l_out, NH, T, HS, sb, sh, st, osb, osh, ost,      \
    bias_sb, scale, seed, offset, threshold, dscale, seed_ptr
#define DQ_ARGS                                                                                \
    const float *q, const float *k, const float *v, const float *bias, const float *o,         \
    const float *gout, const float *m_in, const float *l_in, float *dvec, float *gq, int NH,   \
    int T, int HS, int sb, int sh, int st, int osb, int osh, int ost, int gsb, int gsh,        \
    int gst, int bias_sb, float scale, unsigned long long seed, unsigned offset,               \
    unsigned threshold, float dscale, const unsigned long long *seed_ptr
#define DQ_PASS q, k, v, bias, o, gout, m_in, l_in, dvec, gq, NH, T, HS, sb, sh, st, osb, osh,   \
    ost, gsb, gsh, gst, bias_sb, scale, seed, offset, threshold, dscale, seed_ptr
#define DKDV_ARGS                                                                              \
    const float *q, const float *k, const float *v, const float *bias, const float *gout,      \
    const float *m_in, const float *l_in, const float *dvec, float *gk, float *gv, int NH,     \
    int T, int HS, int sb, int sh, int st, int osb, int osh, int ost, int gsb, int gsh,        \
    int gst, int bias_sb, float scale, unsigned long long seed, unsigned offset,               \
    unsigned threshold, float dscale, const unsigned long long *seed_ptr
#define DKDV_PASS q, k, v, bias, gout, m_in, l_in, dvec, gk, gv, NH, T, HS, sb, sh, st, osb,    \
    osh, ost, gsb, gsh, gst, bias_sb, scale, seed, offset, threshold, dscale, seed_ptr

// ---------------------------------------------------------------- variant 1: naive forward

extern "C" __global__ void attention_forward_naive(FORWARD_ARGS) {
    if (seed_ptr) seed = *seed_ptr;                       // a captured step's seed (common.cuh)
    int i = blockIdx.x * blockDim.x + threadIdx.x, bh = blockIdx.y;
    int b = bh / NH, h = bh % NH;
    if (i >= T) return;                                   // no barriers in this kernel
    const float* qi = q + (long long)b * sb + (long long)h * sh + (long long)i * st;
    const float* kb = k + (long long)b * sb + (long long)h * sh;
    const float* vb = v + (long long)b * sb + (long long)h * sh;
    float m = -CUDART_INF_F;
    for (int j = 0; j < T; ++j) {                         // pass 1: the row max
        float s = 0.0f;
        for (int d = 0; d < HS; ++d) s += qi[d] * kb[(long long)j * st + d];
        s = s * scale + (bias ? bias[(long long)b * bias_sb + j] : 0.0f);
        m = fmaxf(m, s);
    }
    float* oi = o + (long long)b * osb + (long long)h * osh + (long long)i * ost;
    for (int d = 0; d < HS; ++d) oi[d] = 0.0f;
    float l = 0.0f;
#pragma unroll 1
    for (int j = 0; j < T; ++j) {                         // pass 2: the sum, and p z v
        float s = 0.0f;
        for (int d = 0; d < HS; ++d) s += qi[d] * kb[(long long)j * st + d];
        s = s * scale + (bias ? bias[(long long)b * bias_sb + j] : 0.0f);
        float p = expf(s - m);
        l += p;
        if (threshold && draw16(philox(seed, j / 8, i, bh, offset), j % 8) < threshold) continue;
        for (int d = 0; d < HS; ++d) oi[d] += p * vb[(long long)j * st + d];
    }
    float norm = dscale / l;
    for (int d = 0; d < HS; ++d) oi[d] *= norm;
    m_out[(long long)bh * T + i] = m;
    l_out[(long long)bh * T + i] = logf(l);
}

// ---------------------------------------------------------------- pieces shared by 2-4

// This thread's 32 dims of a row: dims 4 * (t * SPLIT + s) + 0..3 for t = 0..7, where s is the
// thread's place among the SPLIT threads of its row; zeros past HS or for a row past T.
template <int SPLIT>
__device__ __forceinline__ void load_slice(float4* r, const float* row, bool valid, int HS) {
    int s = threadIdx.x % SPLIT;
    for (int t = 0; t < 8; ++t) {
        int d = 4 * (t * SPLIT + s);
        r[t].x = valid && d < HS ? row[d] : 0.0f;
        r[t].y = valid && d + 1 < HS ? row[d + 1] : 0.0f;
        r[t].z = valid && d + 2 < HS ? row[d + 2] : 0.0f;
        r[t].w = valid && d + 3 < HS ? row[d + 3] : 0.0f;
    }
}

template <int SPLIT>
__device__ __forceinline__ void store_slice(float* row, const float4* r, float f, int HS) {
    int s = threadIdx.x % SPLIT;
    for (int t = 0; t < 8; ++t) {
        int d = 4 * (t * SPLIT + s);
        if (d < HS) row[d] = r[t].x * f;
        if (d + 1 < HS) row[d + 1] = r[t].y * f;
        if (d + 2 < HS) row[d + 2] = r[t].z * f;
        if (d + 3 < HS) row[d + 3] = r[t].w * f;
    }
}

// Stage rows r0 .. r0 + KT - 1 of one head's (T, HS) matrix into tile[KT][32 * SPLIT], zero
// padded; consecutive threads read consecutive elements of a row (coalesced).
template <int SPLIT>
__device__ __forceinline__ void load_tile(float* tile, const float* base, int r0, int T, int HS,
                                          int st) {
    const int HSP = 32 * SPLIT;
    for (int e = threadIdx.x; e < KT * HSP; e += blockDim.x) {
        int r = e / HSP, d = e % HSP;
        tile[e] = r0 + r < T && d < HS ? base[(long long)(r0 + r) * st + d] : 0.0f;
    }
}

// The dot product of this row group's row with a tile row; every thread of the group gets it.
template <int SPLIT>
__device__ __forceinline__ float dot_rows(const float4* a, const float4* tile_row) {
    int s = threadIdx.x % SPLIT;
    float acc = 0.0f;
    for (int t = 0; t < 8; ++t) {
        float4 b = tile_row[t * SPLIT + s];
        acc += a[t].x * b.x + a[t].y * b.y + a[t].z * b.z + a[t].w * b.w;
    }
    for (int w = 1; w < SPLIT; w <<= 1) acc += __shfl_xor_sync(FULL, acc, w);
    return acc;
}

// The dot product of two rows both held in registers (slices of the same dims).
template <int SPLIT>
__device__ __forceinline__ float dot_slices(const float4* a, const float4* b) {
    float acc = 0.0f;
    for (int t = 0; t < 8; ++t)
        acc += a[t].x * b[t].x + a[t].y * b[t].y + a[t].z * b[t].z + a[t].w * b[t].w;
    for (int w = 1; w < SPLIT; w <<= 1) acc += __shfl_xor_sync(FULL, acc, w);
    return acc;
}

// y += a * (this thread's slice of a tile row)
template <int SPLIT>
__device__ __forceinline__ void axpy_rows(float4* y, float a, const float4* tile_row) {
    int s = threadIdx.x % SPLIT;
    for (int t = 0; t < 8; ++t) {
        float4 x = tile_row[t * SPLIT + s];
        y[t].x += a * x.x; y[t].y += a * x.y; y[t].z += a * x.z; y[t].w += a * x.w;
    }
}

// Bit j of the result: is key j0 + j of query row i kept by dropout? (Four Philox calls, in a
// loop that is not unrolled: unrolling it into every caller's key loop costs seconds of
// compile time and gains nothing.) All bits set when dropout is off.
__device__ __forceinline__ unsigned keep_bits(unsigned long long seed, unsigned offset, int j0,
                                              int i, int bh, unsigned threshold) {
    if (!threshold) return 0xFFFFFFFFu;
    unsigned bits = 0;
#pragma unroll 1
    for (int g = 0; g < KT / 8; ++g) {
        uint4 r = philox(seed, (j0 >> 3) + g, i, bh, offset);
#pragma unroll
        for (int e = 0; e < 8; ++e) bits |= (draw16(r, e) >= threshold ? 1u : 0u) << (g * 8 + e);
    }
    return bits;
}

// The key-major backward's dropout bits: for this thread's key j and the KT = 32 queries
// i0 .. i0 + 31, one Philox call per query covers the 8 keys j & ~7 .. (j & ~7) + 7, held by
// G = 8 * SPLIT adjacent lanes. So the G lanes split the 32 calls (lane q makes those of
// queries i0 + q + G t, t < 32 / G) and pack the keep bits of the 8 keys into bytes; in the
// loop over queries, keep_bit fetches query i's byte from lane i % G with one shuffle.
template <int SPLIT>
__device__ __forceinline__ unsigned keep_bytes(unsigned long long seed, unsigned offset, int i0,
                                               int j, int bh, unsigned threshold) {
    const int G = 8 * SPLIT;
    int q = threadIdx.x % G;
    unsigned word = 0;
    for (int t = 0; t < KT / G; ++t) {
        uint4 r = philox(seed, j >> 3, i0 + q + G * t, bh, offset);
        unsigned byte = 0;
#pragma unroll
        for (int e = 0; e < 8; ++e) byte |= (draw16(r, e) >= threshold ? 1u : 0u) << e;
        word |= byte << (8 * t);
    }
    return word;
}

template <int SPLIT>
__device__ __forceinline__ unsigned keep_bit(unsigned word, int i, int j) {
    const int G = 8 * SPLIT;
    int lane = threadIdx.x % 32;
    unsigned w = __shfl_sync(FULL, word, (lane & ~(G - 1)) + i % G);
    return w >> (8 * (i / G) + (j & 7)) & 1u;
}

// Keys j0 .. j0 + KT - 1 of batch row b: the mask bias, -inf past T (so p = 0 there).
__device__ __forceinline__ void load_bias(float* bs, const float* bias, long long row, int j0,
                                          int T) {
    for (int j = threadIdx.x; j < KT; j += blockDim.x)
        bs[j] = j0 + j >= T ? -CUDART_INF_F : bias ? bias[row + j0 + j] : 0.0f;
}

// ---------------------------------------------------------------- variant 2: tiled forward

template <int SPLIT>
__device__ __forceinline__ void forward_tiled(FORWARD_ARGS) {
    if (seed_ptr) seed = *seed_ptr;
    const int ROWS = 128 / SPLIT, HSP = 32 * SPLIT;
    __shared__ __align__(16) float ks[KT * 32 * SPLIT];
    __shared__ __align__(16) float vs[KT * 32 * SPLIT];
    __shared__ float bs[KT];
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    int i = blockIdx.x * ROWS + threadIdx.x / SPLIT;      // this row group's query
    long long head = (long long)b * sb + (long long)h * sh;
    float4 qr[8], acc[8];
    load_slice<SPLIT>(qr, q + head + (long long)i * st, i < T, HS);
    for (int t = 0; t < 8; ++t) acc[t] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float m = -CUDART_INF_F, l = 0.0f;                    // running max and sum of exp(s - m)
    for (int j0 = 0; j0 < T; j0 += KT) {
        __syncthreads();                                  // everyone is done with the last tile
        load_tile<SPLIT>(ks, k + head, j0, T, HS, st);
        load_tile<SPLIT>(vs, v + head, j0, T, HS, st);
        load_bias(bs, bias, (long long)b * bias_sb, j0, T);
        __syncthreads();
        unsigned kept = keep_bits(seed, offset, j0, i, bh, threshold);
#pragma unroll 1
        for (int g = 0; g < KT; g += 8) {                 // 8 keys at a time: an online softmax
            float s[8], group_max = -CUDART_INF_F;        // step per group keeps the unrolled
#pragma unroll                                            // code (and compile time) small
            for (int e = 0; e < 8; ++e) {
                const float4* kj = reinterpret_cast<const float4*>(ks + (g + e) * HSP);
                s[e] = dot_rows<SPLIT>(qr, kj) * scale + bs[g + e];
                group_max = fmaxf(group_max, s[e]);
            }
            float m_new = fmaxf(m, group_max);
            float alpha = m == -CUDART_INF_F ? 0.0f : expf(m - m_new);   // rescale old sums
            l *= alpha;
            for (int t = 0; t < 8; ++t) {
                acc[t].x *= alpha; acc[t].y *= alpha; acc[t].z *= alpha; acc[t].w *= alpha;
            }
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                float p = expf(s[e] - m_new);
                l += p;                                   // the softmax sums every p ...
                if (!(kept >> (g + e) & 1u)) p = 0.0f;    // ... o only the kept ones
                axpy_rows<SPLIT>(acc, p, reinterpret_cast<const float4*>(vs + (g + e) * HSP));
            }
            m = m_new;
        }
    }
    if (i < T) {
        store_slice<SPLIT>(o + (long long)b * osb + (long long)h * osh + (long long)i * ost, acc,
                           dscale / l, HS);
        if (threadIdx.x % SPLIT == 0) {
            m_out[(long long)bh * T + i] = m;
            l_out[(long long)bh * T + i] = logf(l);
        }
    }
}

// ---------------------------------------------------------------- variant 3: backward, gq

template <int SPLIT>
__device__ __forceinline__ void backward_dq(DQ_ARGS) {
    if (seed_ptr) seed = *seed_ptr;
    const int ROWS = 128 / SPLIT, HSP = 32 * SPLIT;
    __shared__ __align__(16) float ks[KT * 32 * SPLIT];
    __shared__ __align__(16) float vs[KT * 32 * SPLIT];
    __shared__ float bs[KT];
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    int i = blockIdx.x * ROWS + threadIdx.x / SPLIT;
    long long head = (long long)b * sb + (long long)h * sh;
    long long ohead = (long long)b * osb + (long long)h * osh;
    float4 qr[8], gr[8], acc[8];
    load_slice<SPLIT>(qr, q + head + (long long)i * st, i < T, HS);
    load_slice<SPLIT>(gr, gout + (long long)b * gsb + (long long)h * gsh + (long long)i * gst,
                      i < T, HS);
    load_slice<SPLIT>(acc, o + ohead + (long long)i * ost, i < T, HS);
    float D = dot_slices<SPLIT>(gr, acc);                 // D_i = do_i . o_i
    for (int t = 0; t < 8; ++t) acc[t] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float m = i < T ? m_in[(long long)bh * T + i] : 0.0f;
    float L = i < T ? l_in[(long long)bh * T + i] : 0.0f;
    for (int j0 = 0; j0 < T; j0 += KT) {
        __syncthreads();
        load_tile<SPLIT>(ks, k + head, j0, T, HS, st);
        load_tile<SPLIT>(vs, v + head, j0, T, HS, st);
        load_bias(bs, bias, (long long)b * bias_sb, j0, T);
        __syncthreads();
        unsigned kept = keep_bits(seed, offset, j0, i, bh, threshold);
        for (int j = 0; j < KT; ++j) {
            const float4* kj = reinterpret_cast<const float4*>(ks + j * HSP);
            float p = expf(dot_rows<SPLIT>(qr, kj) * scale + bs[j] - m - L);
            float gp = dot_rows<SPLIT>(gr, reinterpret_cast<const float4*>(vs + j * HSP));
            float z = kept >> j & 1u ? dscale : 0.0f;
            axpy_rows<SPLIT>(acc, p * (gp * z - D), kj);        // gq += gs_ij k_j
        }
    }
    if (i < T) {
        store_slice<SPLIT>(gq + ohead + (long long)i * ost, acc, scale, HS);
        if (threadIdx.x % SPLIT == 0) dvec[(long long)bh * T + i] = D;
    }
}

// ---------------------------------------------------------------- variant 4: backward, gk gv

template <int SPLIT>
__device__ __forceinline__ void backward_dkdv(DKDV_ARGS) {
    if (seed_ptr) seed = *seed_ptr;
    const int ROWS = 128 / SPLIT, HSP = 32 * SPLIT;
    __shared__ __align__(16) float qs[KT * 32 * SPLIT];
    __shared__ __align__(16) float gs[KT * 32 * SPLIT];
    __shared__ float ms[KT], ls[KT], ds[KT];
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    int j = blockIdx.x * ROWS + threadIdx.x / SPLIT;      // this row group's key
    long long head = (long long)b * sb + (long long)h * sh;
    float4 kr[8], vr[8], gkr[8], gvr[8];
    load_slice<SPLIT>(kr, k + head + (long long)j * st, j < T, HS);
    load_slice<SPLIT>(vr, v + head + (long long)j * st, j < T, HS);
    for (int t = 0; t < 8; ++t) {
        gkr[t] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        gvr[t] = gkr[t];
    }
    float bj = bias && j < T ? bias[(long long)b * bias_sb + j] : 0.0f;
    for (int i0 = 0; i0 < T; i0 += KT) {
        __syncthreads();
        load_tile<SPLIT>(qs, q + head, i0, T, HS, st);
        load_tile<SPLIT>(gs, gout + (long long)b * gsb + (long long)h * gsh, i0, T, HS, gst);
        for (int i = threadIdx.x; i < KT; i += blockDim.x) {
            bool in = i0 + i < T;                         // past T: m = +inf, so p = 0
            ms[i] = in ? m_in[(long long)bh * T + i0 + i] : CUDART_INF_F;
            ls[i] = in ? l_in[(long long)bh * T + i0 + i] : 0.0f;
            ds[i] = in ? dvec[(long long)bh * T + i0 + i] : 0.0f;
        }
        __syncthreads();
        unsigned kept = threshold ? keep_bytes<SPLIT>(seed, offset, i0, j, bh, threshold) : 0u;
        for (int i = 0; i < KT; ++i) {
            const float4* qi = reinterpret_cast<const float4*>(qs + i * HSP);
            const float4* gi = reinterpret_cast<const float4*>(gs + i * HSP);
            float p = expf(dot_rows<SPLIT>(kr, qi) * scale + bj - ms[i] - ls[i]);
            float gp = dot_rows<SPLIT>(vr, gi);
            float z = threshold && !keep_bit<SPLIT>(kept, i, j) ? 0.0f : dscale;
            axpy_rows<SPLIT>(gvr, p * z, gi);                   // gv += p_ij z_ij do_i
            axpy_rows<SPLIT>(gkr, p * (gp * z - ds[i]), qi);    // gk += gs_ij q_i
        }
    }
    if (j < T) {
        long long out = (long long)b * osb + (long long)h * osh + (long long)j * ost;
        store_slice<SPLIT>(gk + out, gkr, scale, HS);
        store_slice<SPLIT>(gv + out, gvr, 1.0f, HS);
    }
}

// ---------------------------------------------------------------- entry points

extern "C" __global__ void attention_forward_s1(FORWARD_ARGS) { forward_tiled<1>(FORWARD_PASS); }
extern "C" __global__ void attention_forward_s2(FORWARD_ARGS) { forward_tiled<2>(FORWARD_PASS); }
extern "C" __global__ void attention_forward_s4(FORWARD_ARGS) { forward_tiled<4>(FORWARD_PASS); }
extern "C" __global__ void attention_backward_dq_s1(DQ_ARGS) { backward_dq<1>(DQ_PASS); }
extern "C" __global__ void attention_backward_dq_s2(DQ_ARGS) { backward_dq<2>(DQ_PASS); }
extern "C" __global__ void attention_backward_dq_s4(DQ_ARGS) { backward_dq<4>(DQ_PASS); }
extern "C" __global__ void attention_backward_dkdv_s1(DKDV_ARGS) { backward_dkdv<1>(DKDV_PASS); }
extern "C" __global__ void attention_backward_dkdv_s2(DKDV_ARGS) { backward_dkdv<2>(DKDV_PASS); }
extern "C" __global__ void attention_backward_dkdv_s4(DKDV_ARGS) { backward_dkdv<4>(DKDV_PASS); }
