"""Plant one-line bugs in kernels/*.cu, one at a time, and check that tests/cuda fails on each.

A test that cannot fail proves nothing: this runs the kernel test suite (CPU emulator, no GPU)
once per planted bug -- a wrong sign or a missing term in a backward, a lost rescale in the
online softmax, a broken summation -- restoring the file afterwards, and prints which bugs the
suite caught. Exit status 1 if any bug survives.

    .venv/bin/python tools/mutate_kernels.py        (from the repo root; a few minutes)
"""
import subprocess
import sys
from pathlib import Path

MUTATIONS = [  # (file, text, replacement)
    ("layer_norm.cu", "gxhat[c] - mean_g - ", "gxhat[c] - "),
    ("layer_norm.cu", "dev += d * d;", "dev += d;"),
    ("gelu.cu", "cdf + u * pdf", "cdf"),
    ("cross_entropy.cu", "s = s * expf(m - v) + 1.0f;", "s = s + 1.0f;"),
    ("cross_entropy.cu", "j == target ? 1.0f", "j == target + 1 ? 1.0f"),
    ("attention.cu", "gp * z - ds[i]", "gp * z"),
    ("attention.cu", "l *= alpha;", "l *= 1.0f;"),
    ("attention.cu", "gp * z - D", "gp - D"),
    ("attention.cu", "+ i % G);", "+ (i + 1) % G);"),
    ("reduce.cuh", "acc += partials", "acc = partials"),
    ("common.cuh", "    v = warp_sum(v);\n    __syncthreads();\n    return v;",
     "    v = warp_sum(v);\n    return v;"),                     # block_sum's second barrier
    ("embedding.cu", "acc += gy", "acc = gy"),
    ("embedding.cu", "acc += partial", "acc = partial"),
    ("adamw.cu", "__fadd_rn(__fdiv_rn(sqrtf(ve), root), eps)",
     "__fdiv_rn(__fadd_rn(sqrtf(ve), eps), root)"),
    ("dropout.cu", "draw16(r, 5)", "draw16(r, 4)"),
    ("dropout.cu", "if (seed_ptr) seed = *seed_ptr;", "if (seed_ptr) seed = *seed_ptr + 1;"),
    ("adamw.cu", "step_size = hyper[0];", "step_size = hyper[1];"),
    ("matmul.cu", "acc[i][j] += a[i] * b[j];\n    }\n}", "acc[i][j] += a[i] * b[i];\n    }\n}"),
    ("matmul.cu", "S[(k + 3) * LDS + r] = v.w;", "S[(k + 3) * LDS + r] = v.z;"),
    ("matmul.cu", "(i / 4) * 32 + ly * 4", "(i / 4) * 16 + ly * 4"),
    ("gemm.cuh", "C[at] = acc + bias[n];", "C[at] = acc;"),
    ("gemm.cuh", "v = make_float4(v.x + b.x, v.y + b.y", "v = make_float4(v.x + b.x, v.y + b.x"),
    ("gemm.cuh", "K - (int)z * k_chunk", "K - (int)z * k_chunk - 1"),
    ("matmul_tc.cu", "struct Layout<true> { using type = wmma::col_major; };",
     "struct Layout<true> { using type = wmma::row_major; };"),
    ("matmul_tc.cu", "n = n0 + wn + j * 16 + col;", "n = n0 + wn + j * 16 + col + 1;"),
]


def main():
    root = Path(__file__).resolve().parent.parent
    survivors = 0
    for name, text, replacement in MUTATIONS:
        path = root / "kernels" / name
        original = path.read_text(encoding="utf-8")
        if text not in original:
            print(f"{name}: {text!r} not found (kernel changed? update the list)")
            survivors += 1
            continue
        path.write_text(original.replace(text, replacement, 1), encoding="utf-8")
        try:
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "tests/cuda",
                                   "-p", "no:cacheprovider"], cwd=root, capture_output=True,
                                  text=True)
        finally:
            path.write_text(original, encoding="utf-8")
        caught = done.returncode != 0
        survivors += not caught
        summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "?"
        print(f"{'caught  ' if caught else 'SURVIVED'} {name}: {text!r} -> {replacement!r} "
              f"({summary})")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
