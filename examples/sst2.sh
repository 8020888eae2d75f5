#!/usr/bin/env bash
# SST2-A: fine-tune all-MiniLM-L6-v2 on a seeded 16,000-example subset of SST-2 (1 epoch,
# max length 64, batch 32, AdamW 5e-5, weight decay 0.01 except bias/LayerNorm, 10% warm-up
# then linear decay) and report dev accuracy. Same recipe as ../shared/reference/hf_sst2.py.
#   usage: examples/sst2.sh [SEED] [OUT]      (run from the repo root after `make setup`)
set -euo pipefail
SEED=${1:-0}
OUT=${2:-runs/sst2a-seed$SEED}
DATA=${DATA:-../shared/data}
.venv/bin/minitune train --task classify --model all-MiniLM-L6-v2 \
    --train "$DATA/sst2/train.tsv" --dev "$DATA/sst2/dev.tsv" \
    --max-train-examples 16000 --epochs 1 --max-len 64 --batch-size 32 \
    --lr 5e-5 --warmup-ratio 0.1 --weight-decay 0.01 --seed "$SEED" \
    --out "$OUT" --overwrite
