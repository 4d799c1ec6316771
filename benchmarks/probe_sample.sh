#!/usr/bin/env bash
# Issue #21's check of --probe-max-examples: the default SST-2 recipe on 25,000 training examples with every
# example's probe features (bound 0) and with a 5,000-example feature sample, seeds 0 and 1; dev accuracy in
# each run's results.json (student.metric). About 10 minutes a run on 2 cores. Results: docs/design.md.
#   SHARED=../shared R=runs/probe-sample bash benchmarks/probe_sample.sh
set -euo pipefail
SHARED=${SHARED:-../shared}
R=${R:-runs/probe-sample}
mkdir -p "$R"
for seed in 0 1; do
  for bound in 0 5000; do
    out=$R/b${bound}-s${seed}
    [[ -f $out/results.json ]] && continue
    bertnas run --task sst2 --data-dir "$SHARED/data/glue/SST-2" --teacher "$SHARED/teachers/sst2-minilm-L6-H384" \
      --max-train-examples 25000 --probe-max-examples "$bound" --seed "$seed" --out "$out" --no-onnx-latency \
      > "$out.log" 2>&1
  done
done
for f in "$R"/b*/results.json; do
  python -c "import json, sys; r = json.load(open(sys.argv[1])); print(sys.argv[1], round(r['student']['metric'], 4), r['student']['architecture'])" "$f"
done
