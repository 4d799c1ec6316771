#!/usr/bin/env bash
# The MRPC run of docs/results.md: the MiniLM teacher fine-tuned on MRPC, GLUE MRPC (sentence pairs).
#   bash benchmarks/mrpc.sh [GLUE_MRPC_DIR] [TEACHER_DIR] [OUT_DIR]
set -euo pipefail
DATA=${1:-../shared/data/glue/MRPC}
TEACHER=${2:-../shared/teachers/mrpc-minilm-L6-H384}
OUT=${3:-runs/mrpc}
bertnas run --teacher "$TEACHER" --task mrpc --data-dir "$DATA" --out "$OUT" \
    --max-seq-len 128 --search-epochs 8 --retrain-epochs 8 --beta "${BETA:-4}" --augment "${AUGMENT:-0}" \
    --compare-bert-base
