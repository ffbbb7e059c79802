#!/usr/bin/env bash
# One-shot checks for a lent GPU machine (see ../shared/tools/device/README.md for the set-up lines that come first):
# adapter report, the GPU-facing kernel and model tests, the throughput/memory bench to L = 4096, and the
# linear-attention crossover that CHUNKED_FROM_SEQ_LEN.hardware guesses, and the delta rule's two forms side by side
# (selectDeltaRuleVariant guesses chunked on GPUs). Everything lands under $OUT (default: a temp directory):
# doctor.json, tests.txt, bench/ (bench.json/csv/md, kernels.csv), crossover-dv5.json, crossover-dv42.json,
# delta-recurrent/, delta-chunked/.
#
#   OUT=/path bash benchmarks/gpu.sh [--quick]     --quick: d = 64 only and L ≤ 2048
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
D_MODELS=64,128
SEQ_LENS=256,512,1024,2048,4096
if [[ "${1:-}" == "--quick" ]]; then
  D_MODELS=64
  SEQ_LENS=256,512,1024,2048
fi

step() { echo "== $* ($(date +%T))"; }

step doctor
deno run -A main.ts doctor --json >"$OUT/doctor.json" || { cat "$OUT/doctor.json"; exit 1; }

step tests
deno test -A tests/ops tests/model tests/bench/throughput_test.ts >"$OUT/tests.txt" 2>&1
tail -n 3 "$OUT/tests.txt"

step bench
deno run -A main.ts bench --mixers attention,conv_attention,based,rebased,rwkv,conv_rwkv,mamba,hyena,sliding_window,\
deltanet,gated_deltanet,mamba2 --d-models "$D_MODELS" --seq-lens "$SEQ_LENS" --batch-size 64 --vocab-size 8192 \
  --out "$OUT/bench" | tail -n 30

step delta forms
for form in recurrent chunked; do
  deno run -A main.ts bench --mixers deltanet,gated_deltanet,mamba2 --d-models 64 --seq-lens 256,2048 --batch-size 64 \
    --no-profile --variant "delta_rule=$form,ssd=$form" --out "$OUT/delta-$form" | tail -n 5
done

step crossover
deno run -A benchmarks/linear_attention_crossover.ts --value-dim=5 --seq-lens=256,512,1024,2048,4096 \
  --tokens=65536 --json >"$OUT/crossover-dv5.json"
deno run -A benchmarks/linear_attention_crossover.ts --value-dim=42 --seq-lens=256,512,1024,2048 \
  --tokens=65536 --json >"$OUT/crossover-dv42.json"
step done
