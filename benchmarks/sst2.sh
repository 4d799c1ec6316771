#!/usr/bin/env bash
# The SST-2 run reported in docs/results.md: the teacher from shared/teachers, GLUE SST-2, then a latency
# comparison with a BERT-base-sized model in the same process.
#   bash benchmarks/sst2.sh [GLUE_SST2_DIR] [TEACHER_DIR] [OUT_DIR]
set -euo pipefail
DATA=${1:-../shared/data/glue/SST-2}
TEACHER=${2:-../shared/teachers/sst2-bert-L4-H256}
OUT=${3:-runs/sst2}
bertnas run --teacher "$TEACHER" --task sst2 --data-dir "$DATA" --out "$OUT" \
    --max-seq-len 64 --search-max-examples 20000 --search-epochs 3 --retrain-epochs 3 --compare-bert-base
