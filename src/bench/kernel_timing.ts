/**
 * Per-kernel GPU time from timestamp queries: a profiling pass encodes every dispatch of a step in its own compute pass
 * with `timestampWrites` (begin/end), resolves all queries once at the end and reads them back once. Separate passes
 * cost a little extra on some GPUs, so profiling runs after (never inside) the timed loop.
 */
import type { Gpu } from "../gpu/device.ts";
import type { Dispatch } from "../ops/_dispatch.ts";

/** The WebGPU limit on queries per query set. */
const MAX_QUERIES_PER_SET = 4096;

export interface ProfilePhase {
  /** e.g. "forward", "backward", "optimizer". */
  name: string;
  dispatches: readonly Dispatch[];
}

export interface KernelTime {
  label: string;
  /** The label with layer indices and per-parameter suffixes folded (see kernelGroup). */
  group: string;
  phase: string;
  /** Dispatch objects with this label (in this phase) in one step. */
  calls: number;
  /** Median over profiling passes of the summed time of those dispatches, in milliseconds. */
  ms: number;
  /** ms / total of the step. */
  share: number;
}

export interface KernelGroupTime {
  group: string;
  phase: string;
  calls: number;
  ms: number;
  share: number;
}

export interface KernelProfile {
  available: boolean;
  /** Why profiling is unavailable, or caveats. */
  note: string | null;
  passes: number;
  /** Sum of all kernel times of one step (median per kernel, then summed). */
  totalMs: number;
  /** Every label, slowest first. */
  kernels: KernelTime[];
  /** Time per group and phase (e.g. every layer's `proj_q.fwd` together), slowest first. */
  groups: KernelGroupTime[];
}

/** Folds labels that name the same kernel in different places: `layers.0.` → `layers.*.`, AdamW's per-tensor labels. */
export function kernelGroup(label: string): string {
  if (label.startsWith("adamw.")) return "adamw";
  // The LM head's row chunks (lm_head.logits.0, .1, ...) fold into one group per kernel.
  return label.replace(/(^|\.)layers\.\d+\./g, "$1layers.*.").replace(/^(lm_head\.\w+)\.\d+$/, "$1");
}

export function timestampsAvailable(gpu: Gpu): boolean {
  return gpu.features.has("timestamp-query");
}

export function unavailableProfile(note: string): KernelProfile {
  return { available: false, note, passes: 0, totalMs: 0, kernels: [], groups: [] };
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Profiles `passes` executions of `phases` (in order, as one step). `beforePass` runs before each pass: upload a batch,
 * set seeds and step uniforms, exactly as a real step does (queue writes are ordered before the submit).
 */
export async function profileDispatches(
  gpu: Gpu,
  phases: readonly ProfilePhase[],
  options: { passes?: number; beforePass?: (pass: number) => void } = {},
): Promise<KernelProfile> {
  if (!timestampsAvailable(gpu)) {
    return unavailableProfile("the adapter offers no working timestamp-query feature: per-kernel times unavailable");
  }
  const passes = options.passes ?? 1;
  if (!Number.isInteger(passes) || passes < 1) throw new Error(`profile: passes must be a positive integer`);
  const flat = phases.flatMap((ph) => ph.dispatches.map((d) => ({ phase: ph.name, dispatch: d })));
  if (flat.length === 0) return { available: true, note: null, passes, totalMs: 0, kernels: [], groups: [] };
  const device = gpu.device;
  const perSet = MAX_QUERIES_PER_SET / 2;
  const sets: { querySet: GPUQuerySet; resolve: GPUBuffer; first: number; count: number }[] = [];
  for (let first = 0; first < flat.length; first += perSet) {
    const count = Math.min(perSet, flat.length - first);
    sets.push({
      querySet: device.createQuerySet({ type: "timestamp", count: 2 * count }),
      resolve: device.createBuffer({
        size: 2 * count * 8,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      }),
      first,
      count,
    });
  }
  const staging = device.createBuffer({
    size: 2 * flat.length * 8,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const samples: number[][] = flat.map(() => []);
  let negative = 0;
  try {
    for (let p = 0; p < passes; p++) {
      options.beforePass?.(p);
      device.pushErrorScope("validation");
      const enc = device.createCommandEncoder({ label: "profile" });
      for (const set of sets) {
        for (let i = 0; i < set.count; i++) {
          const pass = enc.beginComputePass({
            label: flat[set.first + i].dispatch.label,
            timestampWrites: {
              querySet: set.querySet,
              beginningOfPassWriteIndex: 2 * i,
              endOfPassWriteIndex: 2 * i + 1,
            },
          });
          flat[set.first + i].dispatch.encode(pass);
          pass.end();
        }
      }
      for (const set of sets) {
        enc.resolveQuerySet(set.querySet, 0, 2 * set.count, set.resolve, 0);
        enc.copyBufferToBuffer(set.resolve, 0, staging, 2 * set.first * 8, 2 * set.count * 8);
      }
      device.queue.submit([enc.finish()]);
      const err = await device.popErrorScope();
      if (err) return unavailableProfile(`timestamp queries failed: ${err.message}`);
      await staging.mapAsync(GPUMapMode.READ);
      const stamps = new BigUint64Array(staging.getMappedRange().slice(0));
      staging.unmap();
      for (let i = 0; i < flat.length; i++) {
        const dt = Number(stamps[2 * i + 1] - stamps[2 * i]) / 1e6;
        if (dt < 0) negative++;
        samples[i].push(Math.max(0, dt));
      }
    }
  } finally {
    for (const s of sets) {
      s.querySet.destroy();
      s.resolve.destroy();
    }
    staging.destroy();
  }
  // Keyed by phase too: an op's forward and backward dispatches may share a label.
  const byLabel = new Map<string, { label: string; phase: string; calls: number; ms: number }>();
  for (const [i, { phase, dispatch }] of flat.entries()) {
    const key = `${phase}\u0000${dispatch.label}`;
    const e = byLabel.get(key) ?? { label: dispatch.label, phase, calls: 0, ms: 0 };
    e.calls++;
    e.ms += median(samples[i]);
    byLabel.set(key, e);
  }
  const totalMs = [...byLabel.values()].reduce((s, e) => s + e.ms, 0);
  const share = (ms: number) => (totalMs > 0 ? ms / totalMs : 0);
  const kernels: KernelTime[] = [...byLabel.values()]
    .map((e) => ({ label: e.label, group: kernelGroup(e.label), phase: e.phase, calls: e.calls, ms: e.ms, share: 0 }))
    .sort((a, b) => b.ms - a.ms || (a.label < b.label ? -1 : a.label > b.label ? 1 : a.phase < b.phase ? -1 : 1));
  for (const k of kernels) k.share = share(k.ms);
  const groupMap = new Map<string, KernelGroupTime>();
  for (const k of kernels) {
    const key = `${k.phase}\u0000${k.group}`;
    const g = groupMap.get(key) ?? { group: k.group, phase: k.phase, calls: 0, ms: 0, share: 0 };
    g.calls += k.calls;
    g.ms += k.ms;
    groupMap.set(key, g);
  }
  const groups = [...groupMap.values()].sort((a, b) => b.ms - a.ms || (a.group < b.group ? -1 : 1));
  for (const g of groups) g.share = share(g.ms);
  const note = negative > 0
    ? `${negative} timestamp pairs ran backwards (clamped to 0): this adapter's timestamps are unreliable`
    : null;
  return { available: true, note, passes, totalMs, kernels, groups };
}
