/** Shared plumbing for op modules: a recorded dispatch with its bind group created once (static graph). */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Defines } from "../gpu/wgsl.ts";
import { optionalEnv } from "../gpu/env.ts";

/** One compute dispatch, ready to be encoded into any number of command buffers. */
export interface Dispatch {
  readonly label: string;
  encode(pass: GPUComputePassEncoder): void;
}

export type Binding = Tensor | GPUBuffer;

const bufferOf = (b: Binding): GPUBuffer => ("buffer" in b ? b.buffer : b);

/** Dispatches encoded by every Dispatch since the process started (the bench reads it around one step). */
export const dispatchCounter = { encoded: 0 };

/**
 * A test hook for the A/B gate's own check (benchmarks/ab_gate_check.ts): MQAR_SLOWDOWN_KERNELS, a regular expression,
 * makes every dispatch whose label matches it run MQAR_SLOWDOWN_REPEATS times (default 2), a known slowdown the gate
 * must flag. Results of kernels that accumulate are then wrong, so nothing else sets it; a warning says so once per
 * process.
 */
let slowdown: { pattern: RegExp; repeats: number } | null | undefined;
function slowdownRepeats(label: string): number {
  if (slowdown === undefined) {
    const source = optionalEnv("MQAR_SLOWDOWN_KERNELS"); // no env to read (a browser): the hook is off
    const repeats = optionalEnv("MQAR_SLOWDOWN_REPEATS");
    const n = repeats === undefined ? 2 : Number(repeats);
    if (source && !(Number.isInteger(n) && n >= 1)) {
      throw new Error(`MQAR_SLOWDOWN_REPEATS: got "${repeats}", expected an integer >= 1`);
    }
    slowdown = source ? { pattern: new RegExp(source), repeats: n } : null;
    if (slowdown) {
      console.error(`warning: MQAR_SLOWDOWN_KERNELS=${source}: matching kernels run ${n} times (a test hook)`);
    }
  }
  return slowdown?.pattern.test(label) ? slowdown.repeats : 1;
}

/**
 * Creates the pipeline (cached) and the bind group for `kernels/<kernel>.wgsl` entry `entry`.
 * `bindings[i]` is bound to `@group(0) @binding(i)`.
 */
export function makeDispatch(
  gpu: Gpu,
  label: string,
  kernel: string,
  entry: string,
  defines: Defines,
  bindings: readonly Binding[],
  workgroups: readonly [number, number?, number?],
): Dispatch {
  const pipeline = gpu.pipelines.get(kernel, entry, defines);
  const bindGroup = gpu.device.createBindGroup({
    label,
    layout: pipeline.getBindGroupLayout(0),
    entries: bindings.map((b, i) => ({ binding: i, resource: { buffer: bufferOf(b) } })),
  });
  const [x, y = 1, z = 1] = workgroups;
  const repeats = slowdownRepeats(label);
  const max = gpu.limits.maxComputeWorkgroupsPerDimension ?? 65535;
  for (const [name, n] of [["x", x], ["y", y], ["z", z]] as const) {
    if (!Number.isInteger(n) || n < 0 || n > max) {
      throw new Error(`${label}: workgroup count ${name}=${n} outside [0, ${max}]`);
    }
  }
  return {
    label,
    encode(pass) {
      if (x === 0 || y === 0 || z === 0) return;
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      for (let r = 0; r < repeats; r++) pass.dispatchWorkgroups(x, y, z);
      dispatchCounter.encoded += repeats;
    },
  };
}

/** Workgroup sizes of tree reductions must be powers of two: throws `label: name must be a power of two, got v`. */
export function checkPowerOfTwo(label: string, name: string, value: number): void {
  if (!(Number.isInteger(value) && value >= 1 && (value & (value - 1)) === 0)) {
    throw new Error(`${label}: ${name} must be a power of two, got ${value}`);
  }
}

export type UniformField = ["u32" | "i32" | "f32", number];

/** Packs a uniform struct of 4-byte fields (padded to 16 bytes), in declaration order. */
export function packUniform(fields: readonly UniformField[]): ArrayBuffer {
  const words = Math.max(4, Math.ceil(fields.length / 4) * 4);
  const buf = new ArrayBuffer(words * 4);
  const view = new DataView(buf);
  fields.forEach(([type, value], i) => {
    if (type === "f32") view.setFloat32(i * 4, value, true);
    else if (type === "i32") view.setInt32(i * 4, value, true);
    else view.setUint32(i * 4, value, true);
  });
  return buf;
}

/** Creates a uniform buffer holding `fields` (written once; later writes go through `writeUniform`). */
export function makeUniform(gpu: Gpu, label: string, fields: readonly UniformField[]): GPUBuffer {
  const data = packUniform(fields);
  const buffer = gpu.allocator.uniform(label, data.byteLength);
  gpu.device.queue.writeBuffer(buffer, 0, data);
  return buffer;
}

export function writeUniform(gpu: Gpu, buffer: GPUBuffer, fields: readonly UniformField[]): void {
  gpu.device.queue.writeBuffer(buffer, 0, packUniform(fields));
}

/** Encodes `dispatches` in order into one compute pass of a new command buffer and submits it (no readback). */
export function submit(gpu: Gpu, dispatches: readonly Dispatch[]): void {
  const enc = gpu.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  for (const d of dispatches) d.encode(pass);
  pass.end();
  gpu.device.queue.submit([enc.finish()]);
}

export const ceilDiv = (a: number, b: number): number => Math.ceil(a / b);

/**
 * A 2-D grid of `x` × `y` logical workgroups as dispatched: unchanged when both fit the per-dimension limit, else the
 * x·y workgroups numbered row by row and refolded into `dispX` columns (the kernel recovers its logical position from
 * `t = wid.x + wid.y·dispX` as `(t % x, t / x)`; the few workgroups past x·y fall outside the grid).
 */
export function foldGrid2d(
  gpu: Gpu,
  x: number,
  y: number,
): { dispatch: [number, number]; gridX: number; dispX: number } {
  const max = gpu.limits.maxComputeWorkgroupsPerDimension ?? 65535;
  if (x <= max && y <= max) return { dispatch: [x, y], gridX: x, dispX: x };
  const total = x * y;
  const dispX = Math.min(total, max);
  return { dispatch: [dispX, Math.ceil(total / dispX)], gridX: x, dispX };
}

/** Splits a 1-D workgroup count over x and y so neither exceeds the per-dimension limit. */
export function grid1d(gpu: Gpu, workgroups: number): [number, number] {
  const max = gpu.limits.maxComputeWorkgroupsPerDimension ?? 65535;
  if (workgroups <= max) return [workgroups, 1];
  const y = Math.ceil(workgroups / max);
  return [Math.ceil(workgroups / y), y];
}
