#!/usr/bin/env bash
# The batched-decoding-under-load sweep of BENCHMARKS.md (issue #14), one run: the machine, the cost table
# (`specdec bench costs`: the target forward over T x B x C and ngram's cost per step; Medusa's row from a
# calibration run, since bench costs cannot give Medusa its heads file: the median drafter time per step,
# t_draft_us, of a Medusa run at each k = 1..4), the sweep (experiments/configs/load_sweep.ini, or
# load_sweep_cuda.ini with cuda) and its report. Raw output: bench/results/load-<TAG>-*; the logs: results/load-<TAG>*.h5.
#   bench/load_sweep.sh TAG [BUILD_DIR] [cpu|cuda]
set -euo pipefail
TAG=${1:?usage: bench/load_sweep.sh TAG [BUILD_DIR] [cpu|cuda]}
B=${2:-build}
DEV=${3:-cpu}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
S=$B/experiments/specdec
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
SUFFIX=""
if [ "$DEV" = cuda ]; then SUFFIX=_cuda; fi
CFG=experiments/configs/load_sweep$SUFFIX.ini
R=bench/results/load-$TAG
L=results/load-$TAG  # the HDF5 logs (not committed: results/ is ignored)
PY=.venv/bin/python
mkdir -p bench/results results
{ lscpu | grep -E "Model name|^CPU\(s\)|Flags" | cut -c1-400; nvidia-smi -L 2>/dev/null || true; uptime; } > "$R-machine.txt"

echo "== cost table"
"$S" bench costs --model "$M" --threads 2 --device "$DEV" --tokens 1,2,3,4,5 --batch 1,2,4,8 --context 64,256,512 \
  --drafters ngram --k-max 4 --out "$R-costs-ngram.json" > "$R-costs.txt" 2>&1
cat > "$R-medusa-calibration.ini" <<INI
[target]
model = $M
threads = 2
device = $DEV
[run]
name = medusa_calibration
drafters = medusa
k = 1, 2, 3, 4
max_new_tokens = 32
[prompts]
sets = spec_bench
per_category = 1
max_prompt_tokens = 256
[drafter.medusa]
heads = artifacts/medusa_smollm2.safetensors
INI
rm -f "$L-medusa-calibration.h5"
"$S" run "$R-medusa-calibration.ini" --quiet --out "$L-medusa-calibration.h5" >> "$R-costs.txt" 2>&1
"$PY" - "$R-costs-ngram.json" "$L-medusa-calibration.h5" "$R-costs.json" <<'PYEOF'
import json, sys
sys.path.insert(0, "experiments/report")
import specdec_report as rep
costs = json.load(open(sys.argv[1]))
res = rep.load(sys.argv[2])
row = [0.0] + [float(res.steps[res.steps.run == f"medusa_k{k}_t0"].t_draft_us.median()) for k in range(1, 5)]
costs["drafters"]["medusa"] = row
costs["source"] += "; medusa: median t_draft_us per step of " + sys.argv[2] + " at k = 1..4"
json.dump(costs, open(sys.argv[3], "w"), indent=1)
print("medusa us per step at k = 0..4:", " ".join(f"{x:.1f}" for x in row))
PYEOF
cp "$R-costs.json" "results/load_sweep${SUFFIX}_costs.json"

echo "== sweep"
rm -f "$L.h5"
{ uptime; /usr/bin/time -v "$S" run "$CFG" --out "$L.h5"; uptime; } > "$R-run.txt" 2>&1
"$S" report "$L.h5" --json "$R-report.json" --plots "$R-plots" --slo-ttft 2 --slo-itl 0.1 > "$R-report.txt"
sed -n '/Batched decoding under load/,/definitions below/p' "$R-report.txt"
