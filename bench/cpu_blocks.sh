#!/usr/bin/env bash
# The CPU block-cost benchmark of BENCHMARKS.md (issue #13), one run, on a quiet machine: memory bandwidth,
# SmolLM2-135M Q4_1 AR decode and T = 1..16 / B x T block costs beside llama.cpp (llama-cpp-python in .venv,
# scripts/reference/requirements.txt) at each x86 kernel level this CPU runs, the op timeline, and stories260K
# (f32 GGUF made by the format tests' fixture) beside llama.cpp. Raw output: bench/results/cpu-<TAG>-*.
#   bench/cpu_blocks.sh TAG [BUILD_DIR]
set -euo pipefail
TAG=${1:?usage: bench/cpu_blocks.sh TAG [BUILD_DIR]}
B=${2:-build}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
S=$B/experiments/specdec
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
STORIES=$B/fixtures/stories260K-formats/stories260K.gguf
R=bench/results/cpu-$TAG
PY=.venv/bin/python
run() {  # name, command...: the command's output with the load average before and after
  local name=$1
  shift
  { echo "# $*"; uptime; "$@"; uptime; } > "$R-$name.txt" 2>&1
  echo "== $name"; tail -n 40 "$R-$name.txt"
}
{ lscpu | grep -E "Model name|^CPU\(s\)|Flags" | cut -c1-400; } > "$R-machine.txt"
run membw "$B/bench/membw_bench" --mb 1024
run decode-2t env OMP_NUM_THREADS=2 "$S" bench decode -m "$M" --threads 2 --max-t 16 --stat min --ops --out "$R.jsonl"
for level in avxvnni avx2; do
  run "decode-2t-$level" env SPECDEC_CPU_KERNELS=$level OMP_NUM_THREADS=2 "$S" bench decode -m "$M" --threads 2 \
    --max-t 16 --stat min --llamacpp off --out "$R.jsonl"
done
run decode-1t env OMP_NUM_THREADS=1 "$S" bench decode -m "$M" --threads 1 --max-t 16 --stat min --out "$R.jsonl"
run verify-2t env OMP_NUM_THREADS=2 "$S" bench verify -m "$M" --threads 2 --batch 1,4 --max-k 8 --stat min --out "$R.jsonl"
run llamacpp-ar-2t "$PY" scripts/reference/llamacpp_bench.py --model "$M" --threads 2 --out "$R-llamacpp.jsonl"
if [ -f "$STORIES" ]; then
  run stories-1t env OMP_NUM_THREADS=1 "$S" bench decode -m "$STORIES" --threads 1 --prompt-tokens 16 --new-tokens 250 \
    --max-t 9 --stat min --out "$R.jsonl"
  run llamacpp-stories-1t "$PY" scripts/reference/llamacpp_bench.py --model "$STORIES" --threads 1 --prompt-tokens 16 \
    --new-tokens 250 --out "$R-llamacpp.jsonl"
fi
