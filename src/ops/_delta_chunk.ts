/**
 * The chunked form of the delta rule (kernels/delta_chunk.wgsl; the math is at the top of that file). Reached through
 * createDeltaRule / createDeltaRuleBackward with variant "chunked", which validate the operands first.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import type { DeltaShape } from "../reference/delta_rule.ts";
import type { DeltaRuleArgs, DeltaRuleBackwardArgs, DeltaRuleInputs } from "./delta_rule.ts";
import { ceilDiv, type Dispatch, grid1d, makeDispatch, makeUniform } from "./_dispatch.ts";

export type DeltaRuleVariant = "recurrent" | "chunked";

/** Tokens per chunk (fla uses 64 with tensor-core matmuls; 16 keeps a chunk's C×C matrices small in workgroup memory). */
export const DELTA_CHUNK_TOKENS = 16;
const KERNEL = "delta_chunk";
const WG = 64;
/** Loop iterations one invocation may run on a software adapter (llvmpipe's limit is 65,535). */
const LOOP_BUDGET = 60_000;

/**
 * Value rows per workgroup: the VB×K state slice (and the adjoint's) stay within 2 KiB each; at most 4 on GL, whose
 * compile time grows quadratically with workgroup memory (see kernels/delta_chunk.wgsl).
 */
export function deltaValueBlock(keyDim: number, valueDim: number, backend?: string): number {
  const cap = backend === "gl" ? 4 : 16;
  return Math.min(valueDim, Math.max(1, Math.min(cap, Math.floor(512 / keyDim))));
}

const chunksOf = (s: DeltaShape) => ceilDiv(s.seqLen, DELTA_CHUNK_TOKENS);
const statesLength = (s: DeltaShape) => chunksOf(s) * s.batch * s.heads * s.valueDim * s.keyDim;
const tokenValues = (s: DeltaShape) => s.batch * s.seqLen * s.heads * s.valueDim;

/** Chunk states [chunks, B·H, V, K], then u [rows, H·V]. */
export function chunkedCheckpointLength(s: DeltaShape): number {
  return statesLength(s) + tokenValues(s);
}

/** Partials [blocks, rows·H, 2K + 2], then the adjoint carry [B·H, V, K]; at the largest value block. */
export function chunkedWorkspaceLength(s: DeltaShape, valueBlock = deltaValueBlock(s.keyDim, s.valueDim)): number {
  const blocks = ceilDiv(s.valueDim, valueBlock);
  return blocks * s.batch * s.seqLen * s.heads * (2 * s.keyDim + 2) + s.batch * s.heads * s.valueDim * s.keyDim;
}

/** createDeltaRule's inputs after validation: the update as a flag, the scale resolved. */
export interface ChunkedInputs extends
  Pick<
    DeltaRuleInputs,
    "shape" | "q" | "k" | "v" | "gates" | "gated" | "checkpoints" | "valueBlock" | "chunksPerDispatch"
  > {
  /** The delta rule's correction (false: the additive update). */
  delta: boolean;
  scale: number;
}

export type ChunkedArgs = ChunkedInputs & Pick<DeltaRuleArgs, "o">;
export type ChunkedBackwardArgs = ChunkedInputs & Pick<DeltaRuleBackwardArgs, "dout" | "dq" | "dk" | "dv" | "dgates">;

const gl = (gpu: Gpu) => gpu.info.backend === "gl";

interface Plan {
  VB: number;
  blocks: number;
  chunks: number;
  ranges: { c0: number; c1: number }[];
  defines: Record<string, number | boolean>;
  workgroups: [number, number];
}

/** Upper bounds of one invocation's loop iterations per chunk (see the kernel's loops). */
function iterationsPerChunk(K: number, VB: number, backward: boolean): number {
  const C = DELTA_CHUNK_TOKENS, cv = ceilDiv(C * VB, WG), sk = ceilDiv(VB * K, WG), cc = ceilDiv(C * C, WG);
  const matrices = C + cc * (K + 1);
  if (!backward) return matrices + cv * (2 * K + 2) + C * C + cv * (C + 1) + sk * (C + 1) + 8;
  const partials = ceilDiv(C * (2 * K + 1), WG) * (2 * VB * K + 4 * C + C * VB + 4 * VB + 8);
  return 2 * sk + cv + matrices + cv * (K + 1) + cv * (2 * C + 2) + C * C + cv + cc * (VB + 1) + partials +
    sk * (C + 1) + 8;
}

function plan(gpu: Gpu, label: string, a: ChunkedInputs, backward: boolean): Plan {
  const s = a.shape, K = s.keyDim, C = DELTA_CHUNK_TOKENS;
  const VB = a.valueBlock ?? deltaValueBlock(K, s.valueDim, gpu.info.backend);
  if (!Number.isInteger(VB) || VB < 1 || VB > Math.min(WG, s.valueDim)) {
    throw new Error(`${label}: valueBlock must be an integer in [1, ${Math.min(WG, s.valueDim)}], got ${VB}`);
  }
  const shared = 4 * (2 * VB * K + 4 * C * C + 6 * C * VB + 2 * C);
  const maxShared = gpu.limits.maxComputeWorkgroupStorageSize ?? 16384;
  if (shared > maxShared) {
    throw new Error(
      `${label}: the chunked delta rule needs ${shared} bytes of workgroup memory at K = ${K}, valueBlock ${VB}; ` +
        `this adapter has ${maxShared}: lower valueBlock or use variant "recurrent"`,
    );
  }
  const chunks = chunksOf(s), blocks = ceilDiv(s.valueDim, VB);
  const per = a.chunksPerDispatch ??
    (gpu.info.software ? Math.max(1, Math.floor(LOOP_BUDGET / iterationsPerChunk(K, VB, backward))) : chunks);
  if (!Number.isInteger(per) || per < 1) {
    throw new Error(`${label}: chunksPerDispatch must be a positive integer, got ${per}`);
  }
  const ranges = [];
  for (let c0 = 0; c0 < chunks; c0 += per) ranges.push({ c0, c1: Math.min(chunks, c0 + per) });
  return {
    VB,
    blocks,
    chunks,
    ranges,
    defines: {
      CHUNK_SWEEP: true,
      GATED: a.gated,
      DELTA: a.delta,
      NK: K,
      VB,
      CH: C,
      RUNTIME_BOUNDS: gl(gpu),
      PACKED: gl(gpu),
    },
    workgroups: grid1d(gpu, s.batch * s.heads * blocks),
  };
}

function params(gpu: Gpu, label: string, s: DeltaShape, p: Plan, c0: number, c1: number, scale: number): GPUBuffer {
  return makeUniform(gpu, `${label}.params`, [
    ["u32", s.batch],
    ["u32", s.seqLen],
    ["u32", s.heads],
    ["u32", s.valueDim],
    ["u32", s.batch * s.seqLen],
    ["u32", c0],
    ["u32", c1],
    ["u32", p.chunks],
    ["u32", p.blocks],
    ["u32", statesLength(s)],
    ["u32", p.blocks * s.batch * s.seqLen * s.heads * (2 * s.keyDim + 2)],
    ["f32", scale],
  ]);
}

export function createDeltaRuleChunked(gpu: Gpu, label: string, a: ChunkedArgs): Dispatch {
  const s = a.shape, p = plan(gpu, label, a, false);
  const passes = p.ranges.map(({ c0, c1 }) => {
    const l = `${label}.${c0}`;
    return makeDispatch(
      gpu,
      l,
      KERNEL,
      "chunk_forward",
      { ...p.defines, PASS_CHUNK_FORWARD: true },
      [params(gpu, l, s, p, c0, c1, a.scale), a.q, a.k, a.v, a.gates, a.o, a.checkpoints],
      p.workgroups,
    );
  });
  return {
    label,
    encode(pass) {
      for (const d of passes) d.encode(pass);
    },
  };
}

/** Chunk ranges last to first, then one reduction over value blocks. */
export function createDeltaRuleChunkedBackward(
  gpu: Gpu,
  label: string,
  a: ChunkedBackwardArgs,
): Dispatch & { readonly workspace: readonly Tensor[] } {
  const s = a.shape, p = plan(gpu, label, a, true), K = s.keyDim, n = s.batch * s.seqLen * s.heads;
  const ws = gpu.allocator.tensor(`${label}.workspace`, [chunkedWorkspaceLength(s, p.VB)], "workspace");
  const passes: Dispatch[] = [];
  for (const { c0, c1 } of [...p.ranges].reverse()) {
    const l = `${label}.${c0}`;
    passes.push(makeDispatch(
      gpu,
      l,
      KERNEL,
      "chunk_backward",
      { ...p.defines, PASS_CHUNK_BACKWARD: true },
      [params(gpu, l, s, p, c0, c1, a.scale), a.q, a.k, a.v, a.gates, a.checkpoints, a.dout, a.dv, ws],
      p.workgroups,
    ));
  }
  const columns = 2 * K + (a.gated ? 2 : 1);
  const r = `${label}.reduce`;
  passes.push(makeDispatch(
    gpu,
    r,
    KERNEL,
    "chunk_reduce",
    { NK: K, CH: DELTA_CHUNK_TOKENS, GATED: a.gated, PASS_CHUNK_REDUCE: true, RUNTIME_BOUNDS: gl(gpu) },
    [params(gpu, r, s, p, 0, p.chunks, a.scale), ws, a.dq, a.dk, a.dgates],
    grid1d(gpu, ceilDiv(n * columns, WG)),
  ));
  return {
    label,
    workspace: [ws],
    encode(pass) {
      for (const d of passes) d.encode(pass);
    },
  };
}
