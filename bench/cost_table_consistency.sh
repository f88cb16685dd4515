#!/usr/bin/env bash
# How far two cost tables measured minutes apart on one machine disagree, for three ways of measuring them
# (BENCHMARKS.md, issue #14): one pass as measured (--passes 1 --fit none, the table before 2026-12-04), the
# median of three passes as measured (--passes 3 --fit none), and the same with the monotone fit (the
# default). Each way twice, interleaved (1a, 3a, 3fa, 1b, 3b, 3fb), on the load sweep's grid; then
# bench/cost_table_drift.py compares each pair.
#   bench/cost_table_consistency.sh TAG [BUILD_DIR]
set -euo pipefail
TAG=${1:?usage: bench/cost_table_consistency.sh TAG [BUILD_DIR]}
B=${2:-build}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
S=$B/experiments/specdec
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
R=bench/results/costs-$TAG
mkdir -p bench/results
{ lscpu | grep -E "Model name|^CPU\(s\)|Flags" | cut -c1-400; uptime; } > "$R-machine.txt"
measure() {  # NAME PASSES FIT
  echo "== $1 (--passes $2 --fit $3)"
  { /usr/bin/time -f "%e s" "$S" bench costs --model "$M" --threads 2 --tokens 1,2,3,4,5 --batch 1,2,4,8 \
      --context 64,256,512 --drafters ngram,medusa -o medusa.heads=artifacts/medusa_smollm2.safetensors --k-max 4 \
      --min-ms 200 --passes "$2" --fit "$3" --out "$R-$1.json"; } > "$R-$1.txt" 2>&1
  tail -1 "$R-$1.txt"
}
for round in a b; do
  measure "p1-$round" 1 none
  measure "p3-$round" 3 none
  measure "p3fit-$round" 3 monotone
done
uptime >> "$R-machine.txt"
for way in p1 p3 p3fit; do
  echo "== $way"
  python3 bench/cost_table_drift.py "$R-$way-a.json" "$R-$way-b.json"
done | tee "$R-drift.txt"
