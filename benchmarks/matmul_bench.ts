/**
 * Matmul kernel micro-benchmarks: `deno bench -A benchmarks/matmul_bench.ts`.
 * One group per MQAR training shape, one bench per variant (the adapter's default is the baseline). Each iteration
 * submits several dispatches (about 1 GFLOP on a CPU rasteriser, 200 GFLOP on a GPU; the count is in the name) and
 * waits for the GPU, so time/iter ÷ dispatches is the time per matmul. A GFLOP/s summary (median per bench) is printed
 * when the run ends; `benchmarks/matmul_gflops.ts` gives the same table with spreads, without deno bench.
 */
import { MATMUL_VARIANTS, selectMatmulVariant } from "../src/ops/matmul.ts";
import { benchGpu, caseLabel, flopsOf, MATMUL_CASES, median, prepareMatmul, repeatsFor, runAndWait } from "./_setup.ts";

const gpu = await benchGpu();
const defaultVariant = selectMatmulVariant(gpu);
// deno bench would otherwise pick iteration counts for microsecond functions; ours take ~0.1-1 s on a CPU rasteriser.
const iterations = gpu.info.software ? { n: 5, warmup: 1 } : { n: 20, warmup: 3 };
const summary: { label: string; variant: string; gflopsPerIteration: number; seconds: number[] }[] = [];

for (const c of MATMUL_CASES) {
  for (const variant of MATMUL_VARIANTS) {
    // Pipelines compile here, outside the timed iterations.
    const prepared = prepareMatmul(gpu, c, variant);
    const repeats = repeatsFor(gpu, c);
    const entry = {
      label: caseLabel(c),
      variant,
      gflopsPerIteration: (flopsOf(c) * repeats) / 1e9,
      seconds: [] as number[],
    };
    summary.push(entry);
    Deno.bench({
      name: `${variant}: ${repeats} × ${(flopsOf(c) / 1e9).toFixed(3)} GFLOP`,
      group: caseLabel(c),
      baseline: variant === defaultVariant,
      ...iterations,
      async fn() {
        const t0 = performance.now();
        await runAndWait(gpu, prepared.dispatch, repeats);
        entry.seconds.push((performance.now() - t0) / 1000);
      },
    });
  }
}

globalThis.addEventListener("unload", () => {
  console.log(`\nGFLOP/s, median of timed iterations (${gpu.info.description}, ${gpu.info.backend}):`);
  for (const e of summary) {
    if (e.seconds.length === 0) continue;
    const gflops = e.gflopsPerIteration / median(e.seconds);
    console.log(`  ${e.label.padEnd(58)} ${e.variant.padEnd(8)} ${gflops.toFixed(2).padStart(9)}`);
  }
});
