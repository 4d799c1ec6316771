#!/usr/bin/env bash
# NAS-BERT on this machine (2 CPU cores; every stage on 1 torch thread): one supernet from the MiniLM encoder over
# the SST-2 + MRPC training sentences, models selected under latency (and optional parameter) budgets, each with
# two hand-designed BERTs trained the same way (matched on parameters and on latency), all pre-training-distilled
# and fine-tuned on SST-2 and MRPC with distillation from the fine-tuned MiniLM teachers. Results: docs/nasbert.md.
#   bash benchmarks/nasbert.sh          (run dir: /tmp/nb-run; every stage resumes or skips what is done)
# Knobs (environment): R, CORPUS, SENTENCES (0 = all), EPOCHS, BLOCKS, LAYERS, BINS, LATENCY_MS, PARAMS, SST2_EXAMPLES (0 = all),
# SST2_AUGMENT, MRPC_AUGMENT, REG_AUGMENT, SST2_SEEDS, MRPC_SEEDS, REG_SEEDS,
# STAGES="supernet teacher latency select baseline pretrain finetune regression" to run some.
set -euo pipefail
SHARED=${SHARED:-/work/shared}
R=${R:-/tmp/nb-run}
export BERTNAS_CACHE_DIR=${BERTNAS_CACHE_DIR:-/tmp/bertnas-cache}
STAGES=${STAGES:-"supernet teacher latency select baseline pretrain finetune regression"}
TEACHER=$SHARED/pretrained/minilm-L6-H384-uncased
CORPUS=${CORPUS:-$SHARED/data/glue/SST-2,$SHARED/data/glue/MRPC}  # MRPC gives its pairs as pairs
SST2_SAMPLE=${SST2_SAMPLE:-0}      # N > 0: the corpus is a seeded N of SST-2's sentences + every MRPC pair
SENTENCES=${SENTENCES:-0}          # 0: every corpus item
EPOCHS=${EPOCHS:-20}
BLOCKS=${BLOCKS:-4}
LAYERS=${LAYERS:-2}
BINS=${BINS:-10}                   # B ranges per axis (the paper's 10): the fastest tenth of paths keeps m of its own
LATENCY_MS=${LATENCY_MS:-3.85,12.8}  # 1/10 and 1/3 of the MiniLM teacher's batch-1 latency (38.5 ms, 1 thread, min)
PARAMS=${PARAMS:-}                 # optional parameter budgets, e.g. 5M,10M
SST2_EXAMPLES=${SST2_EXAMPLES:-0}  # 0: every training sentence (5,000 of them held out to pick the epoch)
SST2_AUGMENT=${SST2_AUGMENT:-2}    # teacher-labelled copies per training example (nasbert finetune --augment)
MRPC_AUGMENT=${MRPC_AUGMENT:-10}
REG_AUGMENT=${REG_AUGMENT:-4}
SST2_SEEDS=${SST2_SEEDS:-"0 1"}
MRPC_SEEDS=${MRPC_SEEDS:-"0 1"}
REG_SEEDS=${REG_SEEDS:-"0"}
LOG=$R/stage_times.tsv
mkdir -p "$R"
[[ "$SENTENCES" == 0 ]] && MAX=1000000 || MAX=$SENTENCES
if [[ "$SST2_SAMPLE" != 0 ]]; then
  mkdir -p "$R/corpus"
  python - "$SHARED/data/glue/SST-2/train.tsv" "$SST2_SAMPLE" "$R/corpus/sst2-$SST2_SAMPLE.txt" <<'PY'
import csv, random, sys
rows = [r["sentence"].strip() for r in csv.DictReader(open(sys.argv[1]), delimiter="\t", quoting=csv.QUOTE_NONE)]
rows = list(dict.fromkeys(r for r in rows if r))
open(sys.argv[3], "w").write("\n".join(random.Random(0).sample(rows, int(sys.argv[2]))) + "\n")
PY
  CORPUS="$R/corpus/sst2-$SST2_SAMPLE.txt,$SHARED/data/glue/MRPC"
fi

stage() {  # stage NAME CMD...: run, append the wall time to $LOG
  local name=$1; shift
  local t0=$(date +%s)
  "$@"
  echo -e "$name\t$(( $(date +%s) - t0 ))" >> "$LOG"
}
has() { [[ " $STAGES " == *" $1 "* ]]; }
done_() { [[ -f "$1" ]] && echo "skip: $1 exists"; }  # finished runs are not repeated when the script is run again

if has supernet; then  # resumes from its last epoch checkpoint
  stage supernet bertnas nasbert supernet --teacher "$TEACHER" \
    --corpus "$CORPUS" --out "$R" \
    --max-sentences "$MAX" --heldout-sentences 256 --max-len 64 --num-blocks "$BLOCKS" --layers-per-block "$LAYERS" \
    --hidden-sizes 128,192,256,384 --epochs "$EPOCHS" --warmup-epochs 1 --bins "$BINS" --samples-per-bin 16 --keep-per-bin 4 \
    --score-batches 4 --batch-size 32 --lr 5e-4 --seed 0 --threads 1
fi
if has teacher; then  # the MiniLM teacher's latency, measured the same way as the students'
  done_ "$R/teacher_latency.json" || stage teacher-latency python - "$SHARED/teachers/sst2-minilm-L6-H384" "$R/teacher_latency.json" <<'PY'
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
has latency && stage latency bertnas nasbert latency --out "$R" --seq-len 128 --batch-sizes 1,32 --embedding-sizes 64,128,256 --threads 1 --repeats 20 --stat min
if has select; then
  stage select bertnas nasbert select --out "$R" --max-latency-ms "$LATENCY_MS" --embedding-sizes 64,128,256 --top-t 20
  [[ -n "$PARAMS" ]] && stage select-params bertnas nasbert select --out "$R" --max-params "$PARAMS" --embedding-sizes 64,128,256 --top-t 20
fi
has baseline && stage baseline bertnas nasbert baseline --out "$R"

MODELS=$(python - "$R" <<'PY'
import json, os, sys
r = sys.argv[1]
names = [m["name"] for m in json.load(open(f"{r}/selection.json"))["models"]]
if os.path.isfile(f"{r}/baselines.json"):
    names += [b["name"] for b in json.load(open(f"{r}/baselines.json"))["models"]]
print(" ".join(names))
PY
)
if has pretrain; then
  for m in $MODELS; do
    done_ "$R/pretrained/$m/config.json" || stage "pretrain $m" bertnas nasbert pretrain --out "$R" --model "$R/models/$m" --save "$R/pretrained/$m" --epochs 1 --threads 1
  done
fi
if has finetune; then
  for s in $SST2_SEEDS; do
    for m in $MODELS; do
      done_ "$R/sst2/$m/seed$s/results.json" || stage "finetune sst2 $m seed $s" bertnas nasbert finetune --model "$R/pretrained/$m" \
        --teacher "$SHARED/teachers/sst2-minilm-L6-H384" --task sst2 --data-dir "$SHARED/data/glue/SST-2" \
        --out "$R/sst2/$m/seed$s" --max-seq-len 64 --epochs 3 --max-train-examples "$SST2_EXAMPLES" --lr 2e-4 \
        --augment "$SST2_AUGMENT" --batch-size 32 --threads 1 --seed "$s"
    done
  done
  for s in $MRPC_SEEDS; do
    for m in $MODELS; do
      done_ "$R/mrpc/$m/seed$s/results.json" || stage "finetune mrpc $m seed $s" bertnas nasbert finetune --model "$R/pretrained/$m" \
        --teacher "$SHARED/teachers/mrpc-minilm-L6-H384" --task mrpc --data-dir "$SHARED/data/glue/MRPC" \
        --out "$R/mrpc/$m/seed$s" --max-seq-len 128 --epochs 3 --lr 2e-4 --augment "$MRPC_AUGMENT" --batch-size 32 \
        --threads 1 --seed "$s"
    done
  done
fi
if has regression; then  # a pair regression task: MRPC pairs scored by the MRPC teacher's logit margin (read as STS-B)
  done_ "$R/mrpc-score/task/pair_regression.json" || stage "build mrpc-score" python "$(dirname "$0")/pair_regression.py" \
    --teacher "$SHARED/teachers/mrpc-minilm-L6-H384" --task mrpc --data-dir "$SHARED/data/glue/MRPC" \
    --out "$R/mrpc-score/task" --threads 1
  for s in $REG_SEEDS; do
    for m in $MODELS; do
      done_ "$R/mrpc-score/$m/seed$s/results.json" || stage "finetune mrpc-score $m seed $s" bertnas nasbert finetune \
        --model "$R/pretrained/$m" --teacher "$R/mrpc-score/task/teacher" --task stsb --data-dir "$R/mrpc-score/task/data" \
        --out "$R/mrpc-score/$m/seed$s" --max-seq-len 128 --epochs 3 --lr 2e-4 --augment "$REG_AUGMENT" --batch-size 32 \
        --threads 1 --seed "$s"
    done
  done
fi
python -m bertnas.nasbert.report "$R"
