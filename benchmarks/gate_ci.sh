#!/usr/bin/env bash
# Regression gate for CI: runs the small bench that produced configs/gate/cpu-baseline.json and gates it.
#
#   benchmarks/gate_ci.sh                 gate every class; speed with a generous 60% tolerance (shared CI runners)
#   benchmarks/gate_ci.sh --tolerance 25% extra flags go to `mqar gate` (later tolerance rules win)
#   benchmarks/gate_ci.sh --update        rewrite the baseline (commit it together with the change that moved it)
#
# Deterministic figures (parameter counts, analytic FLOPs/bytes, peak bytes by category) are compared exactly; workspace
# and total bytes only on the baseline's adapter. Speed is tokens/s per GFLOP/s of a reference matmul timed in the same
# run. tests/bench/gate_test.ts runs the same bench in-process (settings read from the baseline) but gates only the
# deterministic figures, so `deno task test` never flakes on a busy machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
BASELINE=configs/gate/cpu-baseline.json
# Keep in sync with the baseline's "settings" (the unit test reads them from the file).
BENCH_ARGS=(--mixers attention,conv_attention,based,rebased --d-models 64 --seq-lens 64 --batch-size 2
  --steps 2 --repeats 3 --no-profile)
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
deno run -A main.ts bench "${BENCH_ARGS[@]}" --out "$OUT" >/dev/null
if [[ "${1:-}" == "--update" ]]; then
  cp "$OUT/bench.json" "$BASELINE"
  echo "updated $BASELINE"
  exit 0
fi
deno run -A main.ts gate --baseline "$BASELINE" --current "$OUT/bench.json" --tolerance speed=60% "$@"
