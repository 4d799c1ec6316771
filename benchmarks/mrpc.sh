#!/usr/bin/env bash
# The MRPC runs of docs/results.md: the MiniLM teacher fine-tuned on MRPC, GLUE MRPC (sentence pairs).
# BETA (default 4), AUGMENT (teacher-labelled copies, default 0), SEARCH_EPOCHS and RETRAIN_EPOCHS (default 8
# each), SEARCH_MAX (search subset, default 0: every example, as before issue #22); more flags after the three
# paths go to bertnas run.
#   bash benchmarks/mrpc.sh [GLUE_MRPC_DIR] [TEACHER_DIR] [OUT_DIR] [FLAGS...]
set -euo pipefail
DATA=${1:-../shared/data/glue/MRPC}
TEACHER=${2:-../shared/teachers/mrpc-minilm-L6-H384}
OUT=${3:-runs/mrpc}
bertnas run --teacher "$TEACHER" --task mrpc --data-dir "$DATA" --out "$OUT" \
    --max-seq-len 128 --search-epochs "${SEARCH_EPOCHS:-8}" --retrain-epochs "${RETRAIN_EPOCHS:-8}" \
    --search-max-examples "${SEARCH_MAX:-0}" --beta "${BETA:-4}" --augment "${AUGMENT:-0}" --compare-bert-base "${@:4}"
