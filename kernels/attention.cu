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
// Launch geometry (variants 2-4; 5-7 below): 128 threads a block. One row of a tile is handled
// by SPLIT = 1, 2 or 4 adjacent threads (HS <= 32, 64, 128), each holding 32 of the zero-padded
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
//   5. attention_forward_b{4,8}: variant 2 register-blocked. Variants 2-4 read, for every key,
//      a float4 of the key's slice from shared memory for every 4 FFMAs (one query row a row
//      group): shared memory delivers 128 B a clock an SM, so a warp's LDS.128 takes ~4
//      clocks while the SM issues 4 warp FFMAs a clock -- bound at ~25% of the FP32 peak
//      (15 TFLOP/s measured on an H200 at HS = 64). Here a row group owns R = 4 query rows
//      (rows x * ROWS + r * GROUPS + g, GROUPS = 128 / SPLIT), so each float4 read feeds
//      4 R = 16 FFMAs, what the SM needs to be FMA-bound. To fit q and o of 4 rows in
//      registers a thread holds 16 dims of a row (SPLIT = 4 for HS <= 64, 8 for HS <= 128):
//      q 64 + acc 64 registers. The 4 R Philox calls a tile are split among the group's
//      SPLIT threads and their bits passed by shuffle (keep_rows).
//   6. attention_backward_dq_b{4,8}: variant 3 with R = 2 query rows a group (q, do, gq:
//      48 registers a row): a K float4 feeds 8 R FFMAs (q.k, gq += gs k), a V float4 4 R.
//   7. attention_backward_dkdv_b{4,8}: variant 4 with R = 2 adjacent keys a group (k, v, gk,
//      gv: 64 registers a key): a Q or dO float4 feeds 8 R FFMAs; the 8 keys of a Philox
//      counter sit on 8 SPLIT / R lanes, which share the calls as in variant 4.
//      Variants 5-7 keep everything else: online softmax per 8 keys, (m, L), the same keep
//      rule (so the same masks), bias rows, any T, the same strides, no atomics.
//   Launch geometry (5-7): 128 threads, GROUPS = 128 / SPLIT row groups of R rows (keys):
//   ROWS = 128 (SPLIT 4) or 64 (SPLIT 8) queries a forward block, 64 or 32 queries (keys) a
//   backward block; tiles of KT = 32 rows 16 SPLIT floats wide (2 x 8 or 2 x 16 KiB).
//   minitune/cuda/attention.py runs them for HS > 32 when USE_BLOCKED is set (off by default).
//   Measured on an H200: 3-18% SLOWER than variants 2-4 at HS = 64. The premise was wrong:
//   Nsight Compute finds variant 2 stalled mostly on the global loads of its K/V tiles at 24%
//   occupancy, not on shared memory; at ~230 registers variant 5 halves the occupancy and
//   hides those loads even less. Kept as the record of the experiment (docs/kernels.md); the
//   fix to try next is prefetching the next tile while computing on this one.
// Traffic: forward reads q, k, v (k and v once per ROWS queries), writes o and 2 floats a row;
// the unfused path writes and reads back the (B, NH, T, T) scores, probabilities, mask and
// their gradients (docs/kernels.md counts the bytes).
// Limits: float32; HS <= 128; the mask must be a per-key bias (others run on the reference);
// T < 2^31. expf and logf, not the fast __expf. Variants 5-7 use 160-230 registers a thread
// (no spills; docs/kernels.md): 2-3 blocks, 8-12 warps, an SM.
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

// This thread's 4 N dims of a row (N = 8 in variants 2-4, 4 in 5-7): dims 4 * (t * SPLIT + s)
// + 0..3 for t = 0..N-1, where s is the thread's place among the SPLIT threads of its row;
// zeros past HS or for a row past T.
template <int SPLIT, int N = 8>
__device__ __forceinline__ void load_slice(float4* r, const float* row, bool valid, int HS) {
    int s = threadIdx.x % SPLIT;
    for (int t = 0; t < N; ++t) {
        int d = 4 * (t * SPLIT + s);
        r[t].x = valid && d < HS ? row[d] : 0.0f;
        r[t].y = valid && d + 1 < HS ? row[d + 1] : 0.0f;
        r[t].z = valid && d + 2 < HS ? row[d + 2] : 0.0f;
        r[t].w = valid && d + 3 < HS ? row[d + 3] : 0.0f;
    }
}

template <int SPLIT, int N = 8>
__device__ __forceinline__ void store_slice(float* row, const float4* r, float f, int HS) {
    int s = threadIdx.x % SPLIT;
    for (int t = 0; t < N; ++t) {
        int d = 4 * (t * SPLIT + s);
        if (d < HS) row[d] = r[t].x * f;
        if (d + 1 < HS) row[d + 1] = r[t].y * f;
        if (d + 2 < HS) row[d + 2] = r[t].z * f;
        if (d + 3 < HS) row[d + 3] = r[t].w * f;
    }
}

// Stage rows r0 .. r0 + KT - 1 of one head's (T, HS) matrix into tile[KT][4 N SPLIT], zero
// padded; consecutive threads read consecutive elements of a row (coalesced).
template <int SPLIT, int N = 8>
__device__ __forceinline__ void load_tile(float* tile, const float* base, int r0, int T, int HS,
                                          int st) {
    const int HSP = 4 * N * SPLIT;
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
template <int SPLIT, int N = 8>
__device__ __forceinline__ float dot_slices(const float4* a, const float4* b) {
    float acc = 0.0f;
    for (int t = 0; t < N; ++t)
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
// G adjacent lanes (G = 8 SPLIT in variant 4, one key a row group; 8 SPLIT / R in variant 7,
// R keys a group). So the G lanes split the 32 calls (lane q makes those of queries
// i0 + q + G t, t < 32 / G) and pack the keep bits of the 8 keys into bytes; in the loop over
// queries, keep_byte fetches query i's byte from lane i % G with one shuffle.
template <int G>
__device__ __forceinline__ unsigned keep_bytes(unsigned long long seed, unsigned offset, int i0,
                                               int j, int bh, unsigned threshold) {
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

// Query i's byte: bit j & 7 says whether key j is kept.
template <int G>
__device__ __forceinline__ unsigned keep_byte(unsigned word, int i) {
    int lane = threadIdx.x % 32;
    unsigned w = __shfl_sync(FULL, word, (lane & ~(G - 1)) + i % G);
    return w >> (8 * (i / G)) & 0xFFu;
}

template <int G>
__device__ __forceinline__ unsigned keep_bit(unsigned word, int i, int j) {
    return keep_byte<G>(word, i) >> (j & 7) & 1u;
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
        unsigned kept = threshold ? keep_bytes<8 * SPLIT>(seed, offset, i0, j, bh, threshold) : 0u;
        for (int i = 0; i < KT; ++i) {
            const float4* qi = reinterpret_cast<const float4*>(qs + i * HSP);
            const float4* gi = reinterpret_cast<const float4*>(gs + i * HSP);
            float p = expf(dot_rows<SPLIT>(kr, qi) * scale + bj - ms[i] - ls[i]);
            float gp = dot_rows<SPLIT>(vr, gi);
            float z = threshold && !keep_bit<8 * SPLIT>(kept, i, j) ? 0.0f : dscale;
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

// ---------------------------------------------------------------- pieces shared by 5-7

// Variants 5-7 hold NB = 4 float4s (16 dims) of a row per thread: SPLIT = 4 threads a row
// for HS <= 64, 8 for HS <= 128; tile rows are HSB = 16 SPLIT floats wide.
#define NB 4

// Partial dot products of R register rows with one float4 slice x (NB float4s) of a tile row:
// acc[r] = a[r] . x, this thread's dims only (summed over the row group by reduce_rows).
template <int R>
__device__ __forceinline__ void dot_rows_blocked(float* acc, const float4 (*a)[NB],
                                                 const float4* x) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
        float d = 0.0f;
#pragma unroll
        for (int t = 0; t < NB; ++t)
            d += a[r][t].x * x[t].x + a[r][t].y * x[t].y + a[r][t].z * x[t].z + a[r][t].w * x[t].w;
        acc[r] = d;
    }
}

// Sum each of n partial sums over the SPLIT threads of the row group (butterfly shuffles).
template <int SPLIT, int n>
__device__ __forceinline__ void reduce_rows(float* acc) {
#pragma unroll
    for (int w = 1; w < SPLIT; w <<= 1)
#pragma unroll
        for (int r = 0; r < n; ++r) acc[r] += __shfl_xor_sync(FULL, acc[r], w);
}

// This thread's slice (NB float4s) of tile row `row`: read once, used for R rows.
template <int SPLIT>
__device__ __forceinline__ void tile_slice(float4* x, const float* tile, int row) {
    const float4* src = reinterpret_cast<const float4*>(tile + row * 16 * SPLIT);
    int s = threadIdx.x % SPLIT;
#pragma unroll
    for (int t = 0; t < NB; ++t) x[t] = src[t * SPLIT + s];
}

// y += a * x for a register row y and a tile slice x.
__device__ __forceinline__ void axpy_slice(float4* y, float a, const float4* x) {
#pragma unroll
    for (int t = 0; t < NB; ++t) {
        y[t].x += a * x[t].x; y[t].y += a * x[t].y; y[t].z += a * x[t].z; y[t].w += a * x[t].w;
    }
}

// The query-major kernels' dropout bits: kept[r] bit j says whether key j0 + j is kept for
// row i0 + r * stride (the same draws as keep_bits). A row needs KT / 8 = 4 Philox calls a
// tile; the SPLIT threads of the group split the group's 4 R calls (call c = row c / 4, keys
// 8 (c % 4) ..; thread s makes calls s, s + SPLIT, ...), pack the keep bits into bytes and
// pass them round by shuffle: 4 R / SPLIT calls a thread instead of 4 R.
template <int SPLIT, int R>
__device__ __forceinline__ void keep_rows(unsigned* kept, unsigned long long seed,
                                          unsigned offset, int j0, int i0, int stride, int bh,
                                          unsigned threshold) {
    static_assert((4 * R) % SPLIT == 0 && 4 * R / SPLIT <= 4, "a word holds 4 calls' bytes");
    if (!threshold) {                                     // uniform: no lane skips a shuffle
        for (int r = 0; r < R; ++r) kept[r] = 0xFFFFFFFFu;
        return;
    }
    int s = threadIdx.x % SPLIT;
    unsigned word = 0;
#pragma unroll 1
    for (int c = 0; c < 4 * R / SPLIT; ++c) {
        int call = c * SPLIT + s;
        uint4 x = philox(seed, (j0 >> 3) + call % 4, i0 + call / 4 * stride, bh, offset);
        unsigned byte = 0;
#pragma unroll
        for (int e = 0; e < 8; ++e) byte |= (draw16(x, e) >= threshold ? 1u : 0u) << e;
        word |= byte << (8 * c);
    }
    int group = (threadIdx.x % 32) & ~(SPLIT - 1);        // lane of the group's first thread
#pragma unroll
    for (int r = 0; r < R; ++r) {
        kept[r] = 0;
#pragma unroll
        for (int g = 0; g < 4; ++g) {
            int call = 4 * r + g;
            unsigned w = __shfl_sync(FULL, word, group + call % SPLIT);
            kept[r] |= (w >> (8 * (call / SPLIT)) & 0xFFu) << (8 * g);
        }
    }
}

// The query-major kernels' next key tile: K and V rows j0 .. j0 + KT - 1 and their bias, into
// shared memory between two barriers (the first: every thread is done with the last tile).
template <int SPLIT>
__device__ __forceinline__ void stage_kv_tile(float* ks, float* vs, float* bs, const float* k,
                                              const float* v, const float* bias,
                                              long long bias_row, int j0, int T, int HS,
                                              int st) {
    __syncthreads();
    load_tile<SPLIT, NB>(ks, k, j0, T, HS, st);
    load_tile<SPLIT, NB>(vs, v, j0, T, HS, st);
    load_bias(bs, bias, bias_row, j0, T);
    __syncthreads();
}

// ---------------------------------------------------------------- variant 5: blocked forward

// Variant 2 with R query rows a row group: row r of group g of block x is query
// x * ROWS + r * GROUPS + g. Every float4 of K or V read from shared memory feeds 4 R FFMAs.
template <int SPLIT, int R>
__device__ __forceinline__ void forward_blocked(FORWARD_ARGS) {
    if (seed_ptr) seed = *seed_ptr;
    const int GROUPS = 128 / SPLIT, HSB = 16 * SPLIT;
    __shared__ __align__(16) float ks[KT * HSB];
    __shared__ __align__(16) float vs[KT * HSB];
    __shared__ float bs[KT];
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    int i0 = blockIdx.x * GROUPS * R + threadIdx.x / SPLIT;   // row r: query i0 + r * GROUPS
    long long head = (long long)b * sb + (long long)h * sh;
    float4 qr[R][NB], acc[R][NB];
    float m[R], l[R];                                     // running max and sum, per row
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int i = i0 + r * GROUPS;
        load_slice<SPLIT, NB>(qr[r], q + head + (long long)i * st, i < T, HS);
        for (int t = 0; t < NB; ++t) acc[r][t] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        m[r] = -CUDART_INF_F;
        l[r] = 0.0f;
    }
    for (int j0 = 0; j0 < T; j0 += KT) {
        stage_kv_tile<SPLIT>(ks, vs, bs, k + head, v + head, bias, (long long)b * bias_sb, j0,
                             T, HS, st);
        unsigned kept[R];
        keep_rows<SPLIT, R>(kept, seed, offset, j0, i0, GROUPS, bh, threshold);
#pragma unroll 1
        for (int g = 0; g < KT; g += 8) {                 // 8 keys a step, as in variant 2
            float s[8][R];
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                float4 x[NB];
                tile_slice<SPLIT>(x, ks, g + e);
                dot_rows_blocked<R>(s[e], qr, x);
            }
            reduce_rows<SPLIT, 8 * R>(&s[0][0]);
#pragma unroll
            for (int r = 0; r < R; ++r) {
                float group_max = -CUDART_INF_F;
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    s[e][r] = s[e][r] * scale + bs[g + e];
                    group_max = fmaxf(group_max, s[e][r]);
                }
                float m_new = fmaxf(m[r], group_max);
                float alpha = m[r] == -CUDART_INF_F ? 0.0f : expf(m[r] - m_new);
                l[r] *= alpha;
                for (int t = 0; t < NB; ++t) {
                    acc[r][t].x *= alpha; acc[r][t].y *= alpha;
                    acc[r][t].z *= alpha; acc[r][t].w *= alpha;
                }
                m[r] = m_new;
#pragma unroll
                for (int e = 0; e < 8; ++e) {             // s becomes p z
                    float p = expf(s[e][r] - m_new);
                    l[r] += p;                            // the softmax sums every p ...
                    s[e][r] = kept[r] >> (g + e) & 1u ? p : 0.0f;     // ... o the kept ones
                }
            }
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                float4 x[NB];
                tile_slice<SPLIT>(x, vs, g + e);
#pragma unroll
                for (int r = 0; r < R; ++r) axpy_slice(acc[r], s[e][r], x);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int i = i0 + r * GROUPS;
        if (i < T) {
            store_slice<SPLIT, NB>(o + (long long)b * osb + (long long)h * osh + (long long)i * ost,
                                   acc[r], dscale / l[r], HS);
            if (threadIdx.x % SPLIT == 0) {
                m_out[(long long)bh * T + i] = m[r];
                l_out[(long long)bh * T + i] = logf(l[r]);
            }
        }
    }
}

// ---------------------------------------------------------------- variant 6: blocked gq

// Variant 3 with R query rows a row group (rows as in variant 5): each K float4 feeds 8 R
// FFMAs (q . k and gq += gs k), each V float4 4 R (do . v).
template <int SPLIT, int R>
__device__ __forceinline__ void backward_dq_blocked(DQ_ARGS) {
    if (seed_ptr) seed = *seed_ptr;
    const int GROUPS = 128 / SPLIT, HSB = 16 * SPLIT;
    __shared__ __align__(16) float ks[KT * HSB];
    __shared__ __align__(16) float vs[KT * HSB];
    __shared__ float bs[KT];
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    int i0 = blockIdx.x * GROUPS * R + threadIdx.x / SPLIT;
    long long head = (long long)b * sb + (long long)h * sh;
    long long ohead = (long long)b * osb + (long long)h * osh;
    long long ghead = (long long)b * gsb + (long long)h * gsh;
    float4 qr[R][NB], gr[R][NB], acc[R][NB];
    float D[R], m[R], L[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int i = i0 + r * GROUPS;
        load_slice<SPLIT, NB>(qr[r], q + head + (long long)i * st, i < T, HS);
        load_slice<SPLIT, NB>(gr[r], gout + ghead + (long long)i * gst, i < T, HS);
        load_slice<SPLIT, NB>(acc[r], o + ohead + (long long)i * ost, i < T, HS);
        D[r] = dot_slices<1, NB>(gr[r], acc[r]);          // partial: reduced below
        for (int t = 0; t < NB; ++t) acc[r][t] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        m[r] = i < T ? m_in[(long long)bh * T + i] : 0.0f;
        L[r] = i < T ? l_in[(long long)bh * T + i] : 0.0f;
    }
    reduce_rows<SPLIT, R>(D);                             // D_i = do_i . o_i
    for (int j0 = 0; j0 < T; j0 += KT) {
        stage_kv_tile<SPLIT>(ks, vs, bs, k + head, v + head, bias, (long long)b * bias_sb, j0,
                             T, HS, st);
        unsigned kept[R];
        keep_rows<SPLIT, R>(kept, seed, offset, j0, i0, GROUPS, bh, threshold);
        for (int j = 0; j < KT; ++j) {
            float4 kx[NB], vx[NB];
            tile_slice<SPLIT>(kx, ks, j);
            tile_slice<SPLIT>(vx, vs, j);
            float sg[2 * R];                              // q_i . k_j, then do_i . v_j
            dot_rows_blocked<R>(sg, qr, kx);
            dot_rows_blocked<R>(sg + R, gr, vx);
            reduce_rows<SPLIT, 2 * R>(sg);
#pragma unroll
            for (int r = 0; r < R; ++r) {
                float p = expf(sg[r] * scale + bs[j] - m[r] - L[r]);
                float z = kept[r] >> j & 1u ? dscale : 0.0f;
                axpy_slice(acc[r], p * (sg[R + r] * z - D[r]), kx);     // gq += gs_ij k_j
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int i = i0 + r * GROUPS;
        if (i < T) {
            store_slice<SPLIT, NB>(gq + ohead + (long long)i * ost, acc[r], scale, HS);
            if (threadIdx.x % SPLIT == 0) dvec[(long long)bh * T + i] = D[r];
        }
    }
}

// ---------------------------------------------------------------- variant 7: blocked gk gv

// Variant 4 with R keys a row group: keys x * ROWS + g * R + r, adjacent so that the 8 keys
// sharing a Philox counter sit on G = 8 SPLIT / R adjacent lanes (one shuffle a query fetches
// the byte of all R keys). Each Q or dO float4 feeds 8 R FFMAs (k . q and gk += gs q;
// v . do and gv += p z do).
template <int SPLIT, int R>
__device__ __forceinline__ void backward_dkdv_blocked(DKDV_ARGS) {
    static_assert(8 % R == 0 && 8 * SPLIT / R <= 32, "a Philox counter's 8 keys in one warp");
    if (seed_ptr) seed = *seed_ptr;
    const int GROUPS = 128 / SPLIT, HSB = 16 * SPLIT, G = 8 * SPLIT / R;
    __shared__ __align__(16) float qs[KT * HSB];
    __shared__ __align__(16) float gs[KT * HSB];
    __shared__ float ms[KT], ls[KT], ds[KT];
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    int j0 = (blockIdx.x * GROUPS + threadIdx.x / SPLIT) * R;  // key r: j0 + r
    long long head = (long long)b * sb + (long long)h * sh;
    float4 kr[R][NB], vr[R][NB], gkr[R][NB], gvr[R][NB];
    float bj[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int j = j0 + r;
        load_slice<SPLIT, NB>(kr[r], k + head + (long long)j * st, j < T, HS);
        load_slice<SPLIT, NB>(vr[r], v + head + (long long)j * st, j < T, HS);
        for (int t = 0; t < NB; ++t) {
            gkr[r][t] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            gvr[r][t] = gkr[r][t];
        }
        bj[r] = bias && j < T ? bias[(long long)b * bias_sb + j] : 0.0f;
    }
    for (int i0 = 0; i0 < T; i0 += KT) {
        __syncthreads();
        load_tile<SPLIT, NB>(qs, q + head, i0, T, HS, st);
        load_tile<SPLIT, NB>(gs, gout + (long long)b * gsb + (long long)h * gsh, i0, T, HS, gst);
        for (int i = threadIdx.x; i < KT; i += blockDim.x) {
            bool in = i0 + i < T;                         // past T: m = +inf, so p = 0
            ms[i] = in ? m_in[(long long)bh * T + i0 + i] : CUDART_INF_F;
            ls[i] = in ? l_in[(long long)bh * T + i0 + i] : 0.0f;
            ds[i] = in ? dvec[(long long)bh * T + i0 + i] : 0.0f;
        }
        __syncthreads();
        unsigned kept = threshold ? keep_bytes<G>(seed, offset, i0, j0, bh, threshold) : 0u;
        for (int i = 0; i < KT; ++i) {
            float4 qx[NB], gx[NB];
            tile_slice<SPLIT>(qx, qs, i);
            tile_slice<SPLIT>(gx, gs, i);
            float sg[2 * R];                              // k_j . q_i, then v_j . do_i
            dot_rows_blocked<R>(sg, kr, qx);
            dot_rows_blocked<R>(sg + R, vr, gx);
            reduce_rows<SPLIT, 2 * R>(sg);
            unsigned byte = threshold ? keep_byte<G>(kept, i) : 0xFFu;
#pragma unroll
            for (int r = 0; r < R; ++r) {
                float p = expf(sg[r] * scale + bj[r] - ms[i] - ls[i]);
                float z = byte >> ((j0 + r) & 7) & 1u ? dscale : 0.0f;
                axpy_slice(gvr[r], p * z, gx);                      // gv += p_ij z_ij do_i
                axpy_slice(gkr[r], p * (sg[R + r] * z - ds[i]), qx);  // gk += gs_ij q_i
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int j = j0 + r;
        if (j < T) {
            long long out = (long long)b * osb + (long long)h * osh + (long long)j * ost;
            store_slice<SPLIT, NB>(gk + out, gkr[r], scale, HS);
            store_slice<SPLIT, NB>(gv + out, gvr[r], 1.0f, HS);
        }
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
// Variants 5-7: R = 4 query rows (forward), 2 query rows (gq), 2 keys (gk, gv) a row group
// of 4 (HS <= 64) or 8 (HS <= 128) threads.
extern "C" __global__ void attention_forward_b4(FORWARD_ARGS) {
    forward_blocked<4, 4>(FORWARD_PASS);
}
extern "C" __global__ void attention_forward_b8(FORWARD_ARGS) {
    forward_blocked<8, 4>(FORWARD_PASS);
}
extern "C" __global__ void attention_backward_dq_b4(DQ_ARGS) { backward_dq_blocked<4, 2>(DQ_PASS); }
extern "C" __global__ void attention_backward_dq_b8(DQ_ARGS) { backward_dq_blocked<8, 2>(DQ_PASS); }
extern "C" __global__ void attention_backward_dkdv_b4(DKDV_ARGS) {
    backward_dkdv_blocked<4, 2>(DKDV_PASS);
}
extern "C" __global__ void attention_backward_dkdv_b8(DKDV_ARGS) {
    backward_dkdv_blocked<8, 2>(DKDV_PASS);
}
