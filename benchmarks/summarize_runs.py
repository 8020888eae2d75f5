"""Summarise finished `minitune train` runs: final dev metrics, steps, training wall time and
median seconds per step (from metrics.jsonl), as the figures of docs/results.md.

    python benchmarks/summarize_runs.py runs/sst2a-seed0 runs/sst2a-seed1 ...
"""
import json
import statistics
import sys
from pathlib import Path


def summarize(run):
    run = Path(run)
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
           if line.strip()]
    steps = [r for r in log if r["type"] == "train"]
    result = json.loads((run / "results.json").read_text())
    return {"run": str(run), "task": result["task"], "steps": result["steps"],
            "dev": result.get("dev"), "best_dev": result["best_dev"],
            "train_step_s_total": round(sum(r["step_s"] for r in steps), 1),
            "median_step_s": round(statistics.median(r["step_s"] for r in steps), 3),
            "first_losses": [round(r["loss"], 4) for r in steps[:5]],
            "wall_s_incl_eval": round(result["train_s"], 1)}


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    rows = [summarize(r) for r in argv]
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
