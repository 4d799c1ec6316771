#!/usr/bin/env bash
# NAS-BERT on this machine (2 CPU cores shared with other jobs: every stage runs on 1 torch thread): one supernet from the MiniLM encoder over the SST-2 + MRPC training
# sentences, three models of different sizes, each with a same-size hand-designed BERT, all fine-tuned on SST-2
# and MRPC with distillation from the fine-tuned MiniLM teachers. Results and wall times: docs/nasbert.md.
#   bash benchmarks/nasbert.sh                 (run dir: /tmp/nb-run; STAGES="supernet latency ..." to run some)
set -euo pipefail
SHARED=${SHARED:-/work/shared}
R=${R:-/tmp/nb-run}
export BERTNAS_CACHE_DIR=${BERTNAS_CACHE_DIR:-/tmp/bertnas-cache}
STAGES=${STAGES:-"supernet latency select baseline pretrain finetune teacher"}
TEACHER=$SHARED/pretrained/minilm-L6-H384-uncased
BUDGETS=${BUDGETS:-4M,7M,12M}
SST2_EXAMPLES=${SST2_EXAMPLES:-8000}
LOG=$R/stage_times.tsv
mkdir -p "$R"

stage() {  # stage NAME CMD...: run, append the wall time to $LOG
  local name=$1; shift
  local t0=$(date +%s)
  "$@"
  echo -e "$name\t$(( $(date +%s) - t0 ))" >> "$LOG"
}
has() { [[ " $STAGES " == *" $1 "* ]]; }
done_() { [[ -f "$1" ]] && echo "skip: $1 exists"; }  # finished runs are not repeated when the script is run again

if has supernet; then
  stage supernet bertnas nasbert supernet --teacher "$TEACHER" \
    --corpus "$SHARED/data/glue/SST-2,$SHARED/data/glue/MRPC" --out "$R" \
    --max-sentences 12000 --heldout-sentences 256 --max-len 64 --num-blocks 3 --layers-per-block 2 \
    --hidden-sizes 128,192,256,384 --epochs 6 --warmup-epochs 1 --bins 4 --samples-per-bin 16 --keep-per-bin 4 \
    --score-batches 4 --batch-size 32 --lr 5e-4 --seed 0 --threads 1
fi
has latency && stage latency bertnas nasbert latency --out "$R" --seq-len 128 --batch-sizes 1,32 --embedding-sizes 64,128,256 --threads 1 --repeats 20 --stat min
has select && stage select bertnas nasbert select --out "$R" --max-params "$BUDGETS" --embedding-sizes 64,128,256 --top-t 20
has baseline && stage baseline bertnas nasbert baseline --out "$R"

MODELS=$(python -c "import json,sys; print(' '.join(m['name'] for m in json.load(open('$R/selection.json'))['models']))")
if has pretrain; then
  for m in $MODELS; do
    for kind in $KINDS; do
      stage "pretrain $kind$m" bertnas nasbert pretrain --out "$R" --model "$R/models/$kind$m" --save "$R/pretrained/$kind$m" --epochs 1 --threads 1
    done
  done
fi
if has teacher; then  # the MiniLM teacher's latency, measured the same way as the students'
  stage teacher-latency python - "$SHARED/teachers/sst2-minilm-L6-H384" "$R/teacher_latency.json" <<'PY'
import json, sys, torch
from transformers import AutoModelForSequenceClassification
from bertnas.measure.profile import profile_classifier
m = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], dtype=torch.float32)
r = profile_classifier(m, m.config.vocab_size, (1, 32), seq_len=128, threads=1, repeats=20)
from bertnas.measure.profile import random_batch, measure_latency
for b in (1, 32):  # the minimum too, the statistic of the latency table
    batch = random_batch(m.config.vocab_size, b, 128, torch.Generator().manual_seed(b), "cpu")
    r[f"min_ms_b{b}"] = measure_latency(lambda: m(**batch), repeats=20, threads=1)["min_ms"]
json.dump(r, open(sys.argv[2], "w"), indent=2); print(r)
PY
fi
if has finetune; then
  for m in $MODELS; do
    for kind in $KINDS; do
      done_ "$R/sst2/$kind$m/results.json" || stage "finetune sst2 $kind$m" bertnas nasbert finetune --model "$R/pretrained/$kind$m" --teacher "$SHARED/teachers/sst2-minilm-L6-H384" \
        --task sst2 --data-dir "$SHARED/data/glue/SST-2" --out "$R/sst2/$kind$m" --max-seq-len 64 --epochs 2 \
        --max-train-examples "$SST2_EXAMPLES" --lr 2e-4 --batch-size 32 --threads 1
      done_ "$R/mrpc/$kind$m/results.json" || stage "finetune mrpc $kind$m" bertnas nasbert finetune --model "$R/pretrained/$kind$m" --teacher "$SHARED/teachers/mrpc-minilm-L6-H384" \
        --task mrpc --data-dir "$SHARED/data/glue/MRPC" --out "$R/mrpc/$kind$m" --max-seq-len 128 --epochs 3 --lr 2e-4 --batch-size 32 --threads 1
    done
  done
fi
python -m bertnas.nasbert.report "$R"
