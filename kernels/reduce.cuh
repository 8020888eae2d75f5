// reduce.cuh -- the second half of a deterministic column sum (layer_norm.cu, gelu.cu).
//
// A kernel that needs sum over rows of some (N, C) quantity (a bias or LayerNorm weight
// gradient) lets each of its P blocks add its own rows, in order, into partials (P, C); then
//   sum_partials: out[c] = sum_p partials[p, c], p = 0, 1, ..., P - 1, in order
// one thread per column, grid ceil(C / 256) x 256 threads. No atomics, so the result does not
// depend on which block finished first: the same bits on every run.
extern "C" __global__ void sum_partials(const float* partials, int P, int C, float* out) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;                                   // no barriers in this kernel
    float acc = 0.0f;
    for (int p = 0; p < P; ++p) acc += partials[(long long)p * C + c];
    out[c] = acc;
}
