#!/usr/bin/env bash
# One GPU check for minitune's CuPy backend, in under 4 minutes, installing nothing.
#
#   bash tools/gpu_check.sh            (from the repo root, on a machine with a CUDA GPU)
#
# Needs python with numpy, cupy and pytest; torch is optional (the benchmark's reference);
# hypothesis, tokenizers, safetensors and scipy are not needed. Steps, each under `timeout`:
#   1. $OUT/env.txt       nvidia-smi, cupy.show_config(), package versions          (<= 45 s)
#   2. $OUT/pytest.txt    REQUIRE_GPU=1 pytest -m gpu tests/test_backend.py: ops, tiny BERT and
#                         AdamW steps on cupy against numpy; a run without a device errors
#                         instead of skipping; $OUT/errors.jsonl: worst error per comparison
#                                                                                   (<= 110 s)
#   3. $OUT/bench.txt     benchmarks/bench_gpu.py: MiniLM-shaped BERT, minitune+cupy vs torch
#                         (train step 32x128, forward 64x128), JSON in $OUT/bench.json     (<= 70 s)
#   4. $OUT/gpu_report.json  everything above in one JSON file
# Exit status: 0 when every test passed and the benchmark ran; 1 otherwise.
# Measured on an H200 (cupy 14.2, torch 2.11): about 45 s in all on a fresh machine (CuPy
# compiles its kernels on first use), 25 s when its kernel cache is warm.
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
    echo "## nvidia-smi";    timeout 15 nvidia-smi
    echo "## cupy.show_config()"
    timeout 25 "$PY" -c 'import cupy; cupy.show_config()'
    echo "## packages"
    timeout 20 "$PY" - <<'EOF'
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

# ---- 2. GPU tests. conftest.py needs hypothesis; without it run the file on its own (it
# repeats conftest's skip/REQUIRE_GPU rule).
CONFTEST=()
if ! "$PY" -c 'import hypothesis' 2>/dev/null; then CONFTEST=(--noconftest); fi
rm -f "$OUT/errors.jsonl"
REQUIRE_GPU=1 MINITUNE_GPU_ERRLOG="$OUT/errors.jsonl" timeout -k 5 110 \
    "$PY" -m pytest -q -m gpu "${CONFTEST[@]}" -p no:cacheprovider --durations=8 \
    --junitxml="$OUT/pytest.xml" tests/test_backend.py > "$OUT/pytest.txt" 2>&1
RC_TESTS=$?
echo "tests: exit $RC_TESTS ($(elapsed) s): $(tail -n 1 "$OUT/pytest.txt")"

# ---- 3. benchmark (stops timing by itself after --budget-s; timeout is the backstop)
timeout -k 5 70 "$PY" benchmarks/bench_gpu.py --json "$OUT/bench.json" --iters 20 --warmup 3 \
    --budget-s 55 > "$OUT/bench.txt" 2>&1
RC_BENCH=$?
echo "bench: exit $RC_BENCH ($(elapsed) s)"; cat "$OUT/bench.txt"

# ---- 4. one JSON report
RC_TESTS=$RC_TESTS RC_BENCH=$RC_BENCH ELAPSED=$(elapsed) OUTDIR="$OUT" timeout 20 "$PY" - <<'EOF'
import json, os, xml.etree.ElementTree as ET
out = os.environ["OUTDIR"]
report = {"rc_tests": int(os.environ["RC_TESTS"]), "rc_bench": int(os.environ["RC_BENCH"]),
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
try:
    with open(os.path.join(out, "bench.json"), encoding="utf-8") as f:
        report["bench"] = json.load(f)
except (OSError, ValueError) as e:
    report["bench"] = {"unreadable": f"{type(e).__name__}: {e}"}
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

[ "$RC_TESTS" -eq 0 ] && [ "$RC_BENCH" -eq 0 ]
