/**
 * GFLOP/s table for the matmul family: `deno run -A benchmarks/matmul_gflops.ts [--runs=5] [--variants=a,b]
 * [--cases=substring,...] [--splitK=n] [--json]`. Each (shape, variant) is warmed up once, then timed `runs` times (each timing
 * = several dispatches + one wait for the GPU); the table shows the median and the spread (min..max).
 */
import { defaultMatmulSplitK, MATMUL_VARIANTS, type MatmulVariant, selectMatmulVariant } from "../src/ops/matmul.ts";
import {
  benchGpu,
  caseLabel,
  flopsOf,
  MATMUL_CASES,
  median,
  prepareMatmul,
  processCpuSeconds,
  repeatsFor,
  runAndWait,
  secondsPerDispatch,
} from "./_setup.ts";

function flag(name: string): string | undefined {
  const hit = Deno.args.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  return hit === undefined ? undefined : hit.slice(name.length + 3);
}

const gpu = await benchGpu();
const runs = Number(flag("runs") ?? 5);
const variants = (flag("variants")?.split(",") ?? ["default", ...MATMUL_VARIANTS]) as (MatmulVariant | "default")[];
const caseFilters = flag("cases")?.split(",");
const splitK = flag("splitK") === undefined ? undefined : Number(flag("splitK"));
const cases = MATMUL_CASES.filter((c) => !caseFilters || caseFilters.some((f) => c.name.includes(f)));

console.log(`adapter: ${gpu.info.description} (${gpu.info.backend}${gpu.info.software ? ", software" : ""})`);
console.log(
  `median of ${runs} timed waits per cell: GFLOP/s wall-clock (min..max)` +
    (gpu.info.software ? "; GFLOP per CPU-second of this process (robust to other load on the cores)" : ""),
);
const rows: { shape: string; variant: string; gflops: number; min: number; max: number; perCpuSecond?: number }[] = [];
for (const c of cases) {
  for (const v of variants) {
    const variant = v === "default" ? undefined : v;
    const prepared = prepareMatmul(gpu, c, variant, splitK === undefined ? {} : { splitK });
    const repeats = repeatsFor(gpu, c);
    await runAndWait(gpu, prepared.dispatch, 1); // warm-up: first-use costs stay out of the timings
    const rates: number[] = [], cpuRates: number[] = [];
    for (let r = 0; r < runs; r++) {
      const cpu0 = processCpuSeconds();
      rates.push(flopsOf(c) / await secondsPerDispatch(gpu, prepared.dispatch, repeats) / 1e9);
      const cpu1 = processCpuSeconds();
      if (cpu0 !== undefined && cpu1 !== undefined) cpuRates.push(flopsOf(c) * repeats / (cpu1 - cpu0) / 1e9);
    }
    prepared.free();
    const split = prepared.args.splitK ??
      defaultMatmulSplitK(gpu, prepared.args.variant ?? selectMatmulVariant(gpu), c);
    const name = (v === "default" ? `default(${selectMatmulVariant(gpu, prepared.args)})` : v) +
      (split > 1 ? ` split${split}` : "");
    const row = {
      shape: caseLabel(c),
      variant: name,
      gflops: median(rates),
      min: Math.min(...rates),
      max: Math.max(...rates),
      perCpuSecond: gpu.info.software && cpuRates.length ? median(cpuRates) : undefined,
    };
    rows.push(row);
    console.log(
      `${row.shape.padEnd(58)} ${row.variant.padEnd(20)} ${row.gflops.toFixed(2).padStart(8)}` +
        `  (${row.min.toFixed(2)}..${row.max.toFixed(2)})` +
        (row.perCpuSecond === undefined ? "" : `  per-CPU-s ${row.perCpuSecond.toFixed(2)}`),
    );
  }
}
if (Deno.args.includes("--json")) console.log(JSON.stringify({ adapter: gpu.info, runs, rows }));
