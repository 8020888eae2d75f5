#!/usr/bin/env bash
# One GPU check for minitune's CuPy backend, CUDA kernels, GEMM, CUDA graphs and GPU
# fine-tuning, in under 8 minutes (4.5 on an H200), installing nothing. Unattended: every step runs under
# `timeout`, and the report is written whatever fails.
#
#   bash tools/gpu_check.sh            (from the repo root, on a machine with a CUDA GPU)
#
# Needs python with numpy, cupy and pytest; torch (and transformers for step 6) are optional:
# the benchmarks' reference side. Steps, each with its worst case (the sum is 475 s):
#   1. env.txt           nvidia-smi, cupy.show_config(), package versions            (<= 15 s)
#   2. pytest.txt        REQUIRE_GPU=1 pytest -m gpu: ops, tiny BERT and AdamW on cupy
#                         against numpy (tests/test_backend.py); every kernel against its
#                         reference and the CuPy path; the GEMM kernels (fp32, TF32, BF16)
#                         against float64 and cuBLAS; whole models with the kernels on;
#                         replayed CUDA-graph steps against eager ones; a training run with
#                         and without graphs. A run without a device errors instead of
#                         skipping. errors.jsonl: worst error per comparison      (<= 120 s)
#   3. bench_kernels.json  benchmarks/bench_kernels.py --skip-model: each fused kernel
#                         vs the CuPy path vs PyTorch                                 (<= 55 s)
#   4. bench_gemm.json     benchmarks/bench_gemm.py: our GEMM vs cuBLAS at M = 4096,
#                         K, N in {384 .. 3072}, fp32 / TF32 / BF16; TFLOP/s         (<= 45 s)
#   5. bench_step.json     benchmarks/bench_step.py: MiniLM and BERT-base training steps
#                         (fp32, bf16) graphed vs eager vs PyTorch eager/autocast, forward
#                         64 x 128, peak memory, TFLOP/s                             (<= 70 s)
#   5b. profile_step.json benchmarks/profile_step_gpu.py: the MiniLM step's device time per
#                         kernel (fp32, bf16), and a check that bf16 changes the losses (<= 60 s)
#   6. finetune.json       benchmarks/bench_recipes_gpu.py: SST2-A on the GPU (500 steps,
#                         fp32 and bf16), minitune vs PyTorch + Transformers, wall time and
#                         dev accuracy. Needs the folder tools/gpu_payload.py writes (model
#                         and data), in $MINITUNE_GPU_PAYLOAD (default ./gpu_payload);
#                         without it the step is skipped and the report says so       (<= 95 s)
#   7. $OUT/gpu_report.json: everything above in one JSON file (with the tail of each
#      log), $OUT/pytest.txt, and the rest in $OUT/gpu_check_logs.tgz: three files  (<= 15 s)
# Exit status: 0 when every test passed and every benchmark ran; 1 otherwise.
# Kernels compile with NVRTC on first use (about 30 s in all); CuPy caches them.
# OUT defaults to ./gpu_check_out when the environment does not set it.
set -u

OUT=${OUT:-$PWD/gpu_check_out}
W="$OUT/work"                              # logs; tarred at the end
rm -rf "$W"
mkdir -p "$W"
if [ ! -f minitune/backend.py ]; then
    echo "gpu_check.sh: run me from the repository root (minitune/backend.py not found)" >&2
    exit 1
fi
PY=${PYTHON:-$(command -v python || command -v python3)}
PAYLOAD=${MINITUNE_GPU_PAYLOAD:-$PWD/gpu_payload}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # minitune is not installed there
export PYTHONUNBUFFERED=1
export CUPY_TF32=0                                       # full-FP32 GEMMs, as numpy
export PYTHONDONTWRITEBYTECODE=1
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }

# ---- 1. environment
{
    echo "## date";          date -u
    echo "## python";        "$PY" --version; echo "$PY"
    echo "## nvidia-smi";    timeout 5 nvidia-smi
    echo "## cupy.show_config()"
    timeout 5 "$PY" -c 'import cupy; cupy.show_config()'
    echo "## CUDA's crt/mma.h (the tensor-core GEMM's WMMA header) and the NVRTC options"
    timeout 30 "$PY" -c 'from minitune.cuda import nvrtc; print(nvrtc.crt_include_dir(), nvrtc.compile_options())'
    echo "## packages"
    timeout 5 "$PY" - <<'EOF'
import importlib
for name in ("numpy", "cupy", "pytest", "torch", "transformers", "hypothesis", "scipy",
             "tokenizers", "safetensors"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as e:                 # absent or broken: say which
        print(name, "unavailable:", type(e).__name__, e)
EOF
} > "$W/env.txt" 2>&1
echo "env recorded ($(elapsed) s)"

# ---- 2. GPU tests. conftest.py needs hypothesis; without it run the files on their own (they
# repeat conftest's skip/REQUIRE_GPU rule, or need a device anyway).
CONFTEST=()
if ! "$PY" -c 'import hypothesis' 2>/dev/null; then CONFTEST=(--noconftest); fi
GPU_TESTS=(tests/test_backend.py tests/cuda/test_attention.py tests/cuda/test_row_kernels.py
           tests/cuda/test_models_kernels.py tests/cuda/test_matmul.py tests/cuda/test_graph.py
           tests/train/test_graphs.py)
rm -f "$W/errors.jsonl"
REQUIRE_GPU=1 MINITUNE_GPU_ERRLOG="$W/errors.jsonl" timeout -k 5 120 \
    "$PY" -m pytest -q -m gpu "${CONFTEST[@]}" -p no:cacheprovider --durations=12 \
    --junitxml="$W/pytest.xml" "${GPU_TESTS[@]}" > "$W/pytest.txt" 2>&1
RC_TESTS=$?
echo "tests: exit $RC_TESTS ($(elapsed) s): $(tail -n 1 "$W/pytest.txt")"

# ---- 3-5. benchmarks (they stop timing by themselves; timeout is the backstop)
timeout -k 5 55 "$PY" benchmarks/bench_kernels.py --json "$W/bench_kernels.json" \
    --budget-s 40 --skip-model > "$W/bench_kernels.txt" 2>&1
RC_KBENCH=$?
echo "bench_kernels: exit $RC_KBENCH ($(elapsed) s)"
timeout -k 5 45 "$PY" benchmarks/bench_gemm.py --json "$W/bench_gemm.json" --budget-s 32 \
    > "$W/bench_gemm.txt" 2>&1
RC_GEMM=$?
echo "bench_gemm: exit $RC_GEMM ($(elapsed) s)"
timeout -k 5 70 "$PY" benchmarks/bench_step.py --json "$W/bench_step.json" --budget-s 50 \
    > "$W/bench_step.txt" 2>&1
RC_STEP=$?
echo "bench_step: exit $RC_STEP ($(elapsed) s)"; tail -n 6 "$W/bench_step.txt"

timeout -k 5 60 "$PY" benchmarks/profile_step_gpu.py --json "$W/profile_step.json" \
    > "$W/profile_step.txt" 2>&1
RC_PROFILE=$?
echo "profile_step: exit $RC_PROFILE ($(elapsed) s)"

# ---- 6. fine-tuning on the GPU (SST2-A), minitune vs PyTorch
if [ -f "$PAYLOAD/minilm/model.safetensors" ] && [ -f "$PAYLOAD/sst2/train.tsv" ]; then
    timeout -k 5 95 "$PY" benchmarks/bench_recipes_gpu.py --model "$PAYLOAD/minilm" \
        --data "$PAYLOAD" --recipes sst2a --precisions fp32,bf16 --budget-s 75 \
        --json "$W/finetune.json" > "$W/finetune.txt" 2>&1
    RC_TUNE=$?
else
    echo "{\"skipped\": \"no payload in $PAYLOAD (run tools/gpu_payload.py and carry it)\"}" \
        > "$W/finetune.json"
    RC_TUNE=0
fi
echo "finetune: exit $RC_TUNE ($(elapsed) s)"; tail -n 4 "$W/finetune.txt" 2>/dev/null

# ---- 7. one JSON report
RC_TESTS=$RC_TESTS RC_KBENCH=$RC_KBENCH RC_GEMM=$RC_GEMM RC_STEP=$RC_STEP RC_TUNE=$RC_TUNE \
    RC_PROFILE=$RC_PROFILE \
    ELAPSED=$(elapsed) OUTDIR="$W" timeout 15 "$PY" - <<'EOF'
import json, os, xml.etree.ElementTree as ET
out = os.environ["OUTDIR"]
report = {k.lower(): int(os.environ[k]) for k in
          ("RC_TESTS", "RC_KBENCH", "RC_GEMM", "RC_STEP", "RC_PROFILE", "RC_TUNE")}
report["elapsed_s_before_report"] = int(os.environ["ELAPSED"])
try:
    suite = ET.parse(os.path.join(out, "pytest.xml")).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    report["tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    report["tests"]["time_s"] = float(suite.get("time", 0))
    report["tests"]["not_passed"] = [
        {"name": case.get("name"), "outcome": child.tag,
         "message": (child.get("message") or "")[:500]}
        for case in suite.iter("testcase") for child in case
        if child.tag in ("failure", "error", "skipped")]
except (OSError, ET.ParseError) as e:
    report["tests"] = {"unreadable": f"{type(e).__name__}: {e}"}
try:
    with open(os.path.join(out, "errors.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    worst = {}
    for r in rows:                       # worst error/bound ratio per test (< 1 passes)
        worst[r["test"]] = max(worst.get(r["test"], 0.0), r["worst_err_over_bound"])
    report["worst_err_over_bound_per_test"] = dict(sorted(worst.items(), key=lambda kv: -kv[1]))
except OSError:
    report["worst_err_over_bound_per_test"] = None
for key in ("bench_kernels", "bench_gemm", "bench_step", "profile_step", "finetune"):
    try:
        with open(os.path.join(out, key + ".json"), encoding="utf-8") as f:
            report[key] = json.load(f)
    except (OSError, ValueError) as e:
        report[key] = {"unreadable": f"{type(e).__name__}: {e}"}
with open(os.path.join(out, "env.txt"), encoding="utf-8", errors="replace") as f:
    report["env_txt_head"] = f.read()[:4000]
report["log_tails"] = {}
for name in sorted(os.listdir(out)):
    if name.endswith(".txt") and name != "env.txt":
        with open(os.path.join(out, name), encoding="utf-8", errors="replace") as f:
            report["log_tails"][name] = f.read()[-3000:]
with open(os.path.join(out, "gpu_report.json"), "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2)
tests = report["tests"]
print("tests:", {k: v for k, v in tests.items() if k != "not_passed"})
for t in tests.get("not_passed", [])[:15]:
    print(f"  {t['outcome']}: {t['name']}: {t['message'][:200]}")
EOF
cp "$W/gpu_report.json" "$W/pytest.txt" "$OUT/" 2>/dev/null
tar -czf "$OUT/gpu_check_logs.tgz" -C "$OUT" work && rm -rf "$W"
echo "report: $OUT/gpu_report.json, $OUT/pytest.txt, $OUT/gpu_check_logs.tgz (total $(elapsed) s)"

[ "$RC_TESTS" -eq 0 ] && [ "$RC_KBENCH" -eq 0 ] && [ "$RC_GEMM" -eq 0 ] && \
    [ "$RC_STEP" -eq 0 ] && [ "$RC_PROFILE" -eq 0 ] && [ "$RC_TUNE" -eq 0 ]
