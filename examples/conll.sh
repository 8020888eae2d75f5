#!/usr/bin/env bash
# CONLL-A: fine-tune all-MiniLM-L6-v2 for NER on CoNLL-2003 (3 epochs, max length 128, batch 32,
# AdamW 5e-5, weight decay 0.01 except bias/LayerNorm, 10% warm-up then linear decay; the first
# sub-token of each word carries its tag) and report dev entity F1 (seqeval's default).
# Same recipe as ../shared/reference/hf_conll.py.
#   usage: examples/conll.sh [SEED] [OUT]     (run from the repo root after `make setup`)
set -euo pipefail
SEED=${1:-0}
OUT=${2:-runs/conll-seed$SEED}
DATA=${DATA:-../shared/data}
.venv/bin/minitune train --task ner --model all-MiniLM-L6-v2 \
    --train "$DATA/conll2003/train.txt" --dev "$DATA/conll2003/dev.txt" \
    --epochs 3 --max-len 128 --batch-size 32 \
    --lr 5e-5 --warmup-ratio 0.1 --weight-decay 0.01 --seed "$SEED" \
    --out "$OUT" --overwrite
