// The emulator's stand-in for CUDA's cuda_bf16.h: the bfloat16 type and the conversions
// minitune's kernels use (kernels/matmul_tc.cu).
#pragma once
#include <string.h>

struct __nv_bfloat16 {
    unsigned short bits;              // the top 16 bits of a float32
};

// Round to nearest, ties to even, as __float2bfloat16 does (NaN stays NaN).
inline __nv_bfloat16 __float2bfloat16(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    if ((u & 0x7F800000u) != 0x7F800000u) u += 0x7FFFu + ((u >> 16) & 1u);
    return __nv_bfloat16{(unsigned short)(u >> 16)};
}

inline float __bfloat162float(__nv_bfloat16 h) {
    unsigned u = (unsigned)h.bits << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
