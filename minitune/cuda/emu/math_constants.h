// The emulator's stand-in for CUDA's math_constants.h: the constants minitune's kernels use.
#pragma once
#define CUDART_INF_F (__builtin_huge_valf())
#define CUDART_NAN_F (__builtin_nanf(""))
