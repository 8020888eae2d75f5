#!/usr/bin/env bash
# Chinese fine-tuning: ChnSentiCorp sentiment (positive/negative) and CLUENER2020 NER (10
# entity types, one tag per Chinese character), each trained, scored on dev and used to
# predict, with any BERT-architecture Chinese checkpoint directory (bert-base-chinese,
# hfl/chinese-roberta-wwm-ext, hfl/chinese-macbert-base, ...: config.json, the weights and
# vocab.txt are enough).
#   usage: examples/chinese.sh MODEL_DIR [OUT]    (run from the repo root after `make setup`)
#   e.g.   examples/chinese.sh ~/models/bert-base-chinese runs/zh
# Environment: LR (default 2e-5), EPOCHS (3), NER_EPOCHS (EPOCHS), DATA (../shared/data).
# The pipeline check on the tiny random checkpoint in tests/fixtures (no accuracy to expect;
# its random weights need a large learning rate to move within a few hundred steps):
#   LR=1e-3 EPOCHS=1 NER_EPOCHS=5 examples/chinese.sh tests/fixtures/tiny_chinese_bert runs/zh-tiny
set -euo pipefail
MODEL=${1:?usage: examples/chinese.sh MODEL_DIR [OUT]}
OUT=${2:-runs/zh}
DATA=${DATA:-../shared/data}
LR=${LR:-2e-5}
EPOCHS=${EPOCHS:-3}
NER_EPOCHS=${NER_EPOCHS:-$EPOCHS}
MT=.venv/bin/minitune

# Sentiment: header-less "text<TAB>label" files, labels positive/negative.
$MT train --task classify --model "$MODEL" \
    --train "$DATA/chnsenticorp/train.tsv" --dev "$DATA/chnsenticorp/dev.tsv" \
    --epochs "$EPOCHS" --max-len 256 --batch-size 32 --lr "$LR" --warmup-ratio 0.1 \
    --out "$OUT/chnsenticorp" --overwrite --no-progress
$MT eval --model "$OUT/chnsenticorp" --data "$DATA/chnsenticorp/dev.tsv"
$MT predict --model "$OUT/chnsenticorp" "房间很干净，服务也很周到。" "太差了，再也不会来了。"

# NER: CLUENER span JSON in, character-level BIO inside, CLUENER span JSON out.
$MT train --task ner --model "$MODEL" \
    --train "$DATA/cluener/train.json" --dev "$DATA/cluener/dev.json" \
    --epochs "$NER_EPOCHS" --max-len 64 --batch-size 32 --lr "$LR" --warmup-ratio 0.1 \
    --out "$OUT/cluener" --overwrite --no-progress
$MT eval --model "$OUT/cluener" --data "$DATA/cluener/dev.json"
$MT predict --model "$OUT/cluener" --input "$DATA/cluener/dev.json" --output-format cluener \
    --output "$OUT/cluener/dev_predictions.json"
.venv/bin/python -c "import sys; from minitune.data import read_cluener; \
d = read_cluener(sys.argv[1]); print(f'{sys.argv[1]}: valid CLUENER, {len(d)} records, \
{sum(map(len, d.spans))} entities')" "$OUT/cluener/dev_predictions.json"
