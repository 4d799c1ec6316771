#!/usr/bin/env bash
# The MRPC bench of docs/benchmarks.md ("Bench"): the MiniLM teacher fine-tuned on MRPC, GLUE MRPC, every default
# row (AdaBERT, 3 random genotypes, hand-designed students, ablations; the other-task row uses the architecture
# searched on SST-2 in docs/results.md). 4 teacher-labelled copies of each pair (AUGMENT), the search on a random
# 8,000 of the 18,340 pairs; further training keeps the word table fixed (the default for pairs).
# Rows resume: run the same command again after an interruption.
# ROWS picks rows (default: every row that applies); more flags after the three paths go to bertnas bench.
# The low-noise protocol (issue #18): SEEDS seeds per row (mean ± se, verdicts paired over seeds), RANDOM_PER_BIN
# random genotypes in each of LATENCY_BINS cost bins besides the 3 uniform draws (e.g. SEEDS=3 RANDOM_PER_BIN=2).
#   bash benchmarks/bench_mrpc.sh [GLUE_MRPC_DIR] [TEACHER_DIR] [OUT_DIR] [FLAGS...]
set -euo pipefail
DATA=${1:-../shared/data/glue/MRPC}
TEACHER=${2:-../shared/teachers/mrpc-minilm-L6-H384}
OUT=${3:-runs/bench-mrpc}
SST2_GENOTYPE="K=1 | n0: avg_pool_3<0 conv_3<1 | n1: max_pool_3<1 dil_conv_3<2 | n2: max_pool_3<0 dil_conv_3<3"
bertnas bench --teacher "$TEACHER" --task mrpc --data-dir "$DATA" --out "$OUT" \
    --max-seq-len 128 --search-epochs 3 --retrain-epochs 3 --random-n 3 --rows "${ROWS:-default}" \
    --augment "${AUGMENT:-4}" --search-max-examples 8000 \
    --genotype-from "${GENOTYPE_FROM:-$SST2_GENOTYPE}" \
    --seeds "${SEEDS:-1}" --random-per-bin "${RANDOM_PER_BIN:-0}" --latency-bins "${LATENCY_BINS:-3}" "${@:4}"
