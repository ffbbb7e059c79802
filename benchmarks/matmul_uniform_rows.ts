/**
 * Experiment for the CPU rasteriser (issue 12, item 5): register blocks whose rows are the same for every lane of a
 * workgroup, so A's loads are uniform (one load and a broadcast on llvmpipe) and only B's columns are per-lane, timed
 * side by side with the project's matmul (`default`, the blocked kernel on software adapters) on C = A·B at 512³,
 * alternating, each output checked against a float64 reference first. Not wired into `src/ops/matmul.ts`: it covers
 * only row-major A·B with M, N and K multiples of its blocks.
 *
 *   deno run -A benchmarks/matmul_uniform_rows.ts [--blocks 8x8,16x8,32x16] [--rounds 5]
 *
 * A block RxC: R rows (uniform) × C columns (C/4 vec4 per lane) per invocation, 8 lanes per workgroup, k one at a time.
 */
import { parseArgs } from "node:util";
import {
  benchGpu,
  median,
  prepareMatmul,
  processCpuSeconds,
  randomValues,
  runAndWait,
  secondsPerDispatch,
} from "./_setup.ts";
import { readTensor } from "../src/gpu/device.ts";
import { matmulRef } from "../src/reference/matmul.ts";
import type { Dispatch } from "../src/ops/_dispatch.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    blocks: { type: "string", default: "8x8,16x8,32x8,16x16,32x16" },
    rounds: { type: "string", default: "5" },
  },
});
const SIZE = 512;
const LANES = 8;
const blocks = values.blocks!.split(",").map((b) => {
  const [rows, cols] = b.split("x").map(Number);
  if (!(rows > 0 && cols % 4 === 0 && SIZE % rows === 0 && SIZE % (cols * LANES) === 0)) {
    throw new Error(`--blocks: "${b}" must be RxC with ${SIZE} % R = 0, C a multiple of 4 and ${SIZE} % (8·C) = 0`);
  }
  return { rows, cols };
});
const rounds = Number(values.rounds);

function uniformRowsKernel(rows: number, cols: number): string {
  const quads = cols / 4;
  const acc = [], body = [], store = [];
  for (let i = 0; i < rows * quads; i++) acc.push(`var c${i} = vec4<f32>(0.0);`);
  for (let j = 0; j < quads; j++) body.push(`let b${j} = B4[(k * ${SIZE}u + n0) / 4u + ${j}u];`);
  for (let i = 0; i < rows; i++) {
    // Depends only on the workgroup id and k: uniform across the workgroup's lanes.
    body.push(`let a${i} = vec4<f32>(A[(m0 + ${i}u) * ${SIZE}u + k]);`);
    for (let j = 0; j < quads; j++) body.push(`c${i * quads + j} = fma(a${i}, b${j}, c${i * quads + j});`);
    for (let j = 0; j < quads; j++) store.push(`C4[((m0 + ${i}u) * ${SIZE}u + n0) / 4u + ${j}u] = c${i * quads + j};`);
  }
  return `@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> C4: array<vec4<f32>>;
@compute @workgroup_size(${LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let m0 = wid.y * ${rows}u;
  let n0 = (wid.x * ${LANES}u + lid.x) * ${cols}u;
  ${acc.join("\n  ")}
  for (var k = 0u; k < ${SIZE}u; k++) {
    ${body.join("\n    ")}
  }
  ${store.join("\n  ")}
}`;
}

const gpu = await benchGpu();
const prepared = prepareMatmul(gpu, { name: "square 512³", M: SIZE, N: SIZE, K: SIZE });
const [a, b, out] = prepared.tensors;
// The same seeded values prepareMatmul uploaded.
const reference = matmulRef(randomValues(SIZE * SIZE, 1), randomValues(SIZE * SIZE, 2), SIZE, SIZE, SIZE);

const candidates: { name: string; dispatch: Dispatch }[] = [{
  name: "default (src/ops/matmul.ts)",
  dispatch: prepared.dispatch,
}];
for (const { rows, cols } of blocks) {
  const module = gpu.device.createShaderModule({ code: uniformRowsKernel(rows, cols) });
  const pipeline = gpu.device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const bindGroup = gpu.device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [a, b, out].map((t, binding) => ({ binding, resource: { buffer: t.buffer } })),
  });
  candidates.push({
    name: `uniform rows ${rows}x${cols}`,
    dispatch: {
      label: `uniform-rows-${rows}x${cols}`,
      encode(pass) {
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(SIZE / (cols * LANES), SIZE / rows);
      },
    },
  });
}

for (const c of candidates) {
  await runAndWait(gpu, c.dispatch, 1);
  const got = await readTensor(gpu, out);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - reference[i]));
  if (!(worst < 1e-3)) throw new Error(`${c.name}: max |error| ${worst} against the float64 reference`);
  console.log(`${c.name}: max |error| ${worst.toExponential(2)}`);
}

const repeats = 4;
const flops = 2 * SIZE ** 3 * repeats;
const samples = new Map(candidates.map((c) => [c.name, [] as { wall: number; cpu?: number }[]]));
for (let r = 0; r < rounds; r++) {
  for (const c of candidates) {
    const cpu0 = processCpuSeconds();
    const wall = await secondsPerDispatch(gpu, c.dispatch, repeats) * repeats;
    const cpu1 = processCpuSeconds();
    samples.get(c.name)!.push({ wall, cpu: cpu0 === undefined || cpu1 === undefined ? undefined : cpu1 - cpu0 });
  }
}
console.log(`\n${gpu.info.description} (${gpu.info.backend}); ${rounds} alternating rounds, median:`);
for (const c of candidates) {
  const s = samples.get(c.name)!;
  const wall = median(s.map((x) => x.wall));
  const cpus = s.map((x) => x.cpu).filter((x): x is number => x !== undefined);
  const perCpu = cpus.length ? ` | ${(flops / median(cpus) / 1e9).toFixed(2)} GFLOP per CPU-second` : "";
  console.log(`  ${c.name.padEnd(30)} ${(flops / wall / 1e9).toFixed(2)} GFLOP/s${perCpu}`);
}
prepared.free();
