#!/usr/bin/env bash
# One GPU check for minitune's CuPy backend and CUDA kernels, in under 7 minutes, installing
# nothing. Unattended: every step runs under `timeout`, and the report is written whatever fails.
#
#   bash tools/gpu_check.sh            (from the repo root, on a machine with a CUDA GPU)
#
# Needs python with numpy, cupy and pytest; torch is optional (the benchmarks' reference);
# hypothesis, tokenizers, safetensors and scipy are not needed. Steps (worst case in brackets):
#   1. $OUT/env.txt       nvidia-smi, cupy.show_config(), package versions            (<= 30 s)
#   2. $OUT/pytest.txt    REQUIRE_GPU=1 pytest -m gpu tests/test_backend.py tests/cuda: ops, tiny
#                         BERT and AdamW steps on cupy against numpy; every kernel against its
#                         reference and the CuPy path (BERT and odd shapes, fwd and bwd);
#                         whole models with the kernels on; dropout statistics and
#                         determinism. A run without a device errors instead of skipping.
#                         $OUT/errors.jsonl: worst error per comparison of test_backend.py (<= 140 s)
#   3. $OUT/bench_kernels.txt  benchmarks/bench_kernels.py: each kernel vs the CuPy path vs
#                         PyTorch; the MiniLM step (dropout 0.1) with kernels on/off vs PyTorch
#                         eager; peak memory. JSON in $OUT/bench_kernels.json       (<= 170 s)
#   4. $OUT/bench.txt     benchmarks/bench_gpu.py: MiniLM-shaped BERT, minitune+cupy (kernels
#                         on) vs torch, no dropout (train step 32x128, forward 64x128),
#                         JSON in $OUT/bench.json                                    (<= 50 s)
#   5. $OUT/gpu_report.json  everything above in one JSON file
# Exit status: 0 when every test passed and both benchmarks ran; 1 otherwise.
# The kernels compile with NVRTC on first use (about 10 s for attention.cu); CuPy caches them.
# OUT defaults to ./gpu_check_out when the environment does not set it.
set -u

OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
if [ ! -f minitune/backend.py ]; then
    echo "gpu_check.sh: run me from the repository root (minitune/backend.py not found)" >&2
    exit 1
fi
PY=${PYTHON:-$(command -v python || command -v python3)}
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
    echo "## nvidia-smi";    timeout 10 nvidia-smi
    echo "## cupy.show_config()"
    timeout 10 "$PY" -c 'import cupy; cupy.show_config()'
    echo "## packages"
    timeout 10 "$PY" - <<'EOF'
import importlib
for name in ("numpy", "cupy", "pytest", "torch", "hypothesis", "scipy", "tokenizers",
             "safetensors"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as e:                 # absent or broken: say which
        print(name, "unavailable:", type(e).__name__, e)
EOF
} > "$OUT/env.txt" 2>&1
echo "env recorded ($(elapsed) s)"

# ---- 2. GPU tests. conftest.py needs hypothesis; without it run the files on their own (they
# repeat conftest's skip/REQUIRE_GPU rule, or need a device anyway).
CONFTEST=()
if ! "$PY" -c 'import hypothesis' 2>/dev/null; then CONFTEST=(--noconftest); fi
GPU_TESTS=(tests/test_backend.py tests/cuda/test_attention.py tests/cuda/test_row_kernels.py
           tests/cuda/test_models_kernels.py)
rm -f "$OUT/errors.jsonl"
REQUIRE_GPU=1 MINITUNE_GPU_ERRLOG="$OUT/errors.jsonl" timeout -k 5 140 \
    "$PY" -m pytest -q -m gpu "${CONFTEST[@]}" -p no:cacheprovider --durations=12 \
    --junitxml="$OUT/pytest.xml" "${GPU_TESTS[@]}" > "$OUT/pytest.txt" 2>&1
RC_TESTS=$?
echo "tests: exit $RC_TESTS ($(elapsed) s): $(tail -n 1 "$OUT/pytest.txt")"

# ---- 3. kernel benchmarks (stop timing by themselves; timeout is the backstop)
timeout -k 5 170 "$PY" benchmarks/bench_kernels.py --json "$OUT/bench_kernels.json" \
    --budget-s 100 > "$OUT/bench_kernels.txt" 2>&1
RC_KBENCH=$?
echo "bench_kernels: exit $RC_KBENCH ($(elapsed) s)"; tail -n 20 "$OUT/bench_kernels.txt"

# ---- 4. the model benchmark of the CuPy backend
timeout -k 5 50 "$PY" benchmarks/bench_gpu.py --json "$OUT/bench.json" --iters 20 --warmup 3 \
    --budget-s 40 > "$OUT/bench.txt" 2>&1
RC_BENCH=$?
echo "bench: exit $RC_BENCH ($(elapsed) s)"; cat "$OUT/bench.txt"

# ---- 5. one JSON report
RC_TESTS=$RC_TESTS RC_BENCH=$RC_BENCH RC_KBENCH=$RC_KBENCH ELAPSED=$(elapsed) OUTDIR="$OUT" \
    timeout 20 "$PY" - <<'EOF'
import json, os, xml.etree.ElementTree as ET
out = os.environ["OUTDIR"]
report = {"rc_tests": int(os.environ["RC_TESTS"]), "rc_bench": int(os.environ["RC_BENCH"]),
          "rc_bench_kernels": int(os.environ["RC_KBENCH"]),
          "elapsed_s_before_report": int(os.environ["ELAPSED"])}
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
for key, name in (("bench", "bench.json"), ("bench_kernels", "bench_kernels.json")):
    try:
        with open(os.path.join(out, name), encoding="utf-8") as f:
            report[key] = json.load(f)
    except (OSError, ValueError) as e:
        report[key] = {"unreadable": f"{type(e).__name__}: {e}"}
with open(os.path.join(out, "env.txt"), encoding="utf-8", errors="replace") as f:
    report["env_txt_head"] = f.read()[:4000]
with open(os.path.join(out, "gpu_report.json"), "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2)
tests = report["tests"]
print("tests:", {k: v for k, v in tests.items() if k != "not_passed"})
for t in tests.get("not_passed", [])[:15]:
    print(f"  {t['outcome']}: {t['name']}: {t['message'][:200]}")
EOF
echo "report: $OUT/gpu_report.json (total $(elapsed) s)"

[ "$RC_TESTS" -eq 0 ] && [ "$RC_BENCH" -eq 0 ] && [ "$RC_KBENCH" -eq 0 ]
