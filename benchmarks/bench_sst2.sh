#!/usr/bin/env bash
# The SST-2 bench of docs/benchmarks.md ("Bench"): the MiniLM teacher fine-tuned on SST-2, every default row
# (AdaBERT, random genotypes, hand-designed students, ablations; the other-task row trains the architecture
# searched on MRPC). A CPU budget: every row sees the same first TRAIN (default 10,000) training sentences,
# search 3 epochs (1 warm-up), training 2 epochs. Rows resume: run the same command again after an interruption.
# ROWS picks rows (default: every row that applies); more flags after the four arguments go to bertnas bench.
# The low-noise protocol (issue #18): SEEDS seeds per row (mean ± se, verdicts paired over seeds), RANDOM_PER_BIN
# random genotypes in each of LATENCY_BINS cost bins besides the RANDOM_N uniform draws (e.g. SEEDS=3 RANDOM_PER_BIN=2).
#   bash benchmarks/bench_sst2.sh [GLUE_SST2_DIR] [TEACHER_DIR] [OUT_DIR] [OTHER_TASK_GENOTYPE] [FLAGS...]
set -euo pipefail
DATA=${1:-../shared/data/glue/SST-2}
TEACHER=${2:-../shared/teachers/sst2-minilm-L6-H384}
OUT=${3:-runs/bench-sst2}
OTHER=${4:-runs/mrpc/search/genotype.json}
bertnas bench --teacher "$TEACHER" --task sst2 --data-dir "$DATA" --out "$OUT" \
    --max-seq-len 64 --max-train-examples "${TRAIN:-10000}" --search-epochs 3 --retrain-epochs 2 --augment 0 \
    --random-n "${RANDOM_N:-5}" --rows "${ROWS:-default}" --genotype-from "$OTHER" \
    --seeds "${SEEDS:-1}" --random-per-bin "${RANDOM_PER_BIN:-0}" --latency-bins "${LATENCY_BINS:-3}" "${@:5}"
