#!/usr/bin/env bash
# The batched-decoding-under-load sweep of BENCHMARKS.md (issue #14), one run: the machine, the cost table
# (`specdec bench costs`: the target forward over T x B x C, and ngram's, Medusa's and EAGLE's cost per step,
# Medusa with the shipped heads, EAGLE with results/eagle_smollm2.safetensors (a static tree), the batched
# drafters also per batch size; the median of 3 passes over the grid, fitted monotone: its defaults; each
# drafter's acceptance by position on training prompts, the cost model's prior = table), the sweep
# (experiments/configs/load_sweep.ini, or load_sweep_cuda.ini with cuda) and its report. Raw output: bench/results/load-<TAG>-*; the logs: results/load-<TAG>*.h5.
#   bench/load_sweep.sh TAG [BUILD_DIR] [cpu|cuda] [OVERRIDE...]
# OVERRIDEs go to `specdec run`, e.g. --run.interleave=false for the runs one after another.
# Environment: DRAFTERS (ngram,medusa,eagle: the drafters of the cost table and the sweep; without eagle no
# EAGLE weights are needed), REPLICATES (1: the sweep this many times with the same cost table, seed and
# arrivals, logs results/load-<TAG>-r<i>.h5, reports bench/results/load-<TAG>-r<i>-report.*, and the verdict
# over them, bench/load_sweep_replicates.py, in bench/results/load-<TAG>-replicates.md), COSTS (a cost table
# measured earlier on this machine by the same command: used instead of measuring one).
set -euo pipefail
TAG=${1:?usage: bench/load_sweep.sh TAG [BUILD_DIR] [cpu|cuda] [OVERRIDE...]}
B=${2:-build}
DEV=${3:-cpu}
shift $(($# < 3 ? $# : 3))
cd "$(dirname "${BASH_SOURCE[0]}")/.."
S=$B/experiments/specdec
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
SUFFIX=""
if [ "$DEV" = cuda ]; then SUFFIX=_cuda; fi
CFG=experiments/configs/load_sweep$SUFFIX.ini
R=bench/results/load-$TAG
L=results/load-$TAG  # the HDF5 logs (not committed: results/ is ignored)
mkdir -p bench/results results
{ lscpu | grep -E "Model name|^CPU\(s\)|Flags" | cut -c1-400; nvidia-smi -L 2>/dev/null || true; uptime; } > "$R-machine.txt"

DRAFTERS=${DRAFTERS:-ngram,medusa,eagle}
REPLICATES=${REPLICATES:-1}
EAGLE=results/eagle_smollm2.safetensors
opts=(-o medusa.heads=artifacts/medusa_smollm2.safetensors)
if [[ ",$DRAFTERS," == *,eagle,* ]]; then
  if [ ! -f "$EAGLE" ]; then
    echo "load_sweep.sh: $EAGLE is missing: train the EAGLE layer first (BENCHMARKS.md, specdec collect + specdec train eagle)" >&2
    exit 2
  fi
  opts+=(-o eagle.weights=$EAGLE -o eagle.tree=static)
fi
python=.venv/bin/python
[ -x "$python" ] || python=python3
if [ -n "${COSTS:-}" ]; then
  echo "== cost table: $COSTS (COSTS=, measured earlier on this machine)"
  # the table must price every drafter of the sweep and hold its acceptance profile (the cost model's prior)
  "$python" - "$COSTS" "$DRAFTERS" <<'PY'
import json, sys
path, drafters = sys.argv[1], sys.argv[2].split(",")
with open(path) as f:
    t = json.load(f)
for d in drafters:
    if d not in t.get("drafters", {}):
        sys.exit(f"load_sweep.sh: COSTS={path} has no cost for drafter '{d}' (it prices {sorted(t.get('drafters', {}))}): "
                 f"measure a table with DRAFTERS={','.join(drafters)}")
    if d not in t.get("acceptance", {}).get("drafters", {}):
        sys.exit(f"load_sweep.sh: COSTS={path} has no acceptance profile for drafter '{d}': "
                 f"measure a table with --acceptance-prompts (this script's own cost step)")
PY
  [ "$COSTS" -ef "$R-costs.json" ] || cp "$COSTS" "$R-costs.json"
else
  echo "== cost table"
  "$S" bench costs --model "$M" --threads 2 --device "$DEV" --tokens 1,2,3,4,5 --batch 1,2,4,8 --context 64,256,512 \
    --drafters "$DRAFTERS" "${opts[@]}" --k-max 4 --min-ms 200 \
    --acceptance-prompts data/train/gsm8k_train.jsonl,data/train/self_instruct_user_oriented.jsonl,data/train/t0_mix.jsonl \
    --out "$R-costs.json" > "$R-costs.txt" 2>&1
fi
cp "$R-costs.json" "results/load_sweep${SUFFIX}_costs.json"

# sweep OUT_PREFIX LOG: one invocation of the sweep, its raw output and report under OUT_PREFIX
sweep() {
  rm -f "$2.h5"
  { uptime; /usr/bin/time -v "$S" run "$CFG" --out "$2.h5" --run.drafters="$DRAFTERS" "${@:3}"; uptime; } > "$1-run.txt" 2>&1
  "$S" report "$2.h5" --json "$1-report.json" --plots "$1-plots" --slo-ttft 2 --slo-itl 0.1 > "$1-report.txt"
  sed -n '/Batched decoding under load/,/policy runs reach the bar/p' "$1-report.txt"
}
if [ "$REPLICATES" -le 1 ]; then
  echo "== sweep"
  sweep "$R" "$L" "$@"
  exit 0
fi
reports=()
for i in $(seq 1 "$REPLICATES"); do
  echo "== sweep, invocation $i of $REPLICATES"
  sweep "$R-r$i" "$L-r$i" "$@" > /dev/null
  reports+=("$R-r$i-report.json")
done
"$python" bench/load_sweep_replicates.py "${reports[@]}" --plot "$R-replicates.png" | tee "$R-replicates.md"
