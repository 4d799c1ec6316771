#!/usr/bin/env bash
# The SST-2 runs of docs/results.md: the MiniLM teacher fine-tuned on SST-2, GLUE SST-2, then a latency
# comparison with the teacher and a BERT-base-sized model in the same process. BETA (default 4) sets the
# efficiency-loss weight, AUGMENT the number of teacher-labelled copies (default 0: none), RETRAIN_EPOCHS the
# epochs of further training (default 3); more flags after the three paths go to bertnas run.
#   bash benchmarks/sst2.sh [GLUE_SST2_DIR] [TEACHER_DIR] [OUT_DIR] [FLAGS...]
set -euo pipefail
DATA=${1:-../shared/data/glue/SST-2}
TEACHER=${2:-../shared/teachers/sst2-minilm-L6-H384}
OUT=${3:-runs/sst2}
bertnas run --teacher "$TEACHER" --task sst2 --data-dir "$DATA" --out "$OUT" \
    --max-seq-len 64 --search-max-examples 20000 --search-epochs 4 --retrain-epochs "${RETRAIN_EPOCHS:-3}" \
    --beta "${BETA:-4}" --augment "${AUGMENT:-0}" --compare-bert-base "${@:4}"
