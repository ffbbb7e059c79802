/**
 * Delta-rule ops (DeltaNet, Gated DeltaNet; kernels/delta_rule.wgsl; float64 reference and the math:
 * src/reference/delta_rule.ts). Token-major activations: q, k [B*L, H*K], v, o [B*L, H*V]; `gates` [2, B*L*H] holds β
 * (first block) and, for Gated DeltaNet, the log decay g (second block).
 *
 * The sweep runs the recurrence directly, one invocation per row of the state (R = B·H·V of them; a row of S_t depends
 * only on its own row of S_{t−1}), with the row's K values in registers: O(L) work, L steps deep. The backward needs
 * S_{t−1} at every token in decreasing t, so, as the selective scan does (src/ops/mamba.ts), the sequence is cut into
 * segments of S tokens: the forward saves the rows at each segment start (`deltaCheckpointLength` floats), the backward
 * walks the segments last to first, recomputing a segment's rows from its checkpoint into a workspace (bit-identical to
 * the forward's), sweeping them in decreasing t, then summing dq, dk, dβ, dg over the head's V rows in a fixed order.
 * Workspace `deltaWorkspaceLength` = (2S + 1)·K·R + 2S·R + K·R floats. That is variant "recurrent" (software
 * adapters). Variant "chunked" (src/ops/_delta_chunk.ts, kernels/delta_chunk.wgsl) is flash-linear-attention's form:
 * the same results in chunks of 16 tokens, L/16 steps deep, with matmul-shaped work inside a chunk.
 * llvmpipe ends an invocation after 65,535 loop iterations: on software adapters segments and forward dispatches are
 * sized so that no invocation loops more than LOOP_BUDGET times.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import { ceilDiv, type Dispatch, grid1d, makeDispatch, makeUniform } from "./_dispatch.ts";
import { checkDims, type Operand, validate } from "./_matrix_view.ts";
import { createColumnSum } from "./elementwise.ts";
import { deltaScale, type DeltaShape, L2_NORM_EPS } from "../reference/delta_rule.ts";
import {
  chunkedCheckpointLength,
  chunkedWorkspaceLength,
  createDeltaRuleChunked,
  createDeltaRuleChunkedBackward,
  DELTA_CHUNK_TOKENS,
  type DeltaRuleVariant,
  deltaValueBlock,
} from "./_delta_chunk.ts";

export type { DeltaRuleVariant, DeltaShape };
export { DELTA_CHUNK_TOKENS, deltaValueBlock };

/**
 * The one variant rule of the delta rule: the recurrent sweep on software adapters (a chunk's barriers cost more than
 * its work there), the chunked form elsewhere. On GPUs this is unmeasured (none was available): the recurrent sweep runs
 * B·H·V invocations L steps deep, the chunked one L/16 steps of matmul-shaped work in B·H·⌈V/VB⌉ workgroups.
 */
export function selectDeltaRuleVariant(adapter: { info: { software: boolean } }): DeltaRuleVariant {
  return adapter.info.software ? "recurrent" : "chunked";
}

/** What a layer needs to set up the delta rule on an adapter: the variant, its checkpoints and its record label. */
export interface DeltaPlan {
  variant: DeltaRuleVariant;
  segmentTokens: number;
  checkpointLength: number;
  label: string;
}

export function deltaPlan(
  adapter: { info: { software: boolean; backend?: string }; limits?: Readonly<Record<string, number>> },
  s: DeltaShape,
  forced?: string,
): DeltaPlan {
  if (forced !== undefined && forced !== "recurrent" && forced !== "chunked") {
    throw new Error(`delta rule: variant must be "recurrent" or "chunked", got ${JSON.stringify(forced)}`);
  }
  const variant = forced ?? selectDeltaRuleVariant(adapter);
  const segmentTokens = deltaSegmentTokens(adapter, s);
  return {
    variant,
    segmentTokens,
    checkpointLength: deltaCheckpointLength(s, segmentTokens, variant),
    label: variant === "chunked"
      ? `chunked-${DELTA_CHUNK_TOKENS}-vb${deltaValueBlock(s.keyDim, s.valueDim, adapter.info.backend)}`
      : `recurrent-segments-${segmentTokens}`,
  };
}

const KERNEL = "delta_rule";
const WG = 64;
/** Loop iterations one invocation may run on a software adapter (llvmpipe's limit is 65,535). */
export const LOOP_BUDGET = 60_000;
const MIN_SEGMENT_TOKENS = 16;
const SOFTWARE_MIN_SEGMENT_TOKENS = 256;

/** A composite dispatch that owns workspace buffers. */
export interface DeltaDispatch extends Dispatch {
  readonly workspace: readonly Tensor[];
}

/** Loop iterations per token: the forward's two passes over K; the backward's recompute and reverse sweep, two each. */
const forwardIterations = (K: number) => 2 * K + 1;
const backwardIterations = (K: number) => 4 * K + 2;

/** Longest segment a software adapter runs in one backward invocation. */
export function deltaMaxSegmentTokens(keyDim: number): number {
  return Math.max(1, Math.floor((LOOP_BUDGET - 3 * keyDim) / backwardIterations(keyDim)));
}

/** The forward's saved state: segment checkpoints (recurrent), or chunk states and u (chunked). */
export function deltaCheckpointLength(
  s: DeltaShape,
  segmentTokens: number,
  variant: DeltaRuleVariant = "recurrent",
): number {
  if (variant === "chunked") return chunkedCheckpointLength(s);
  const segments = ceilDiv(s.seqLen, segmentTokens);
  return Math.max(1, (segments - 1) * s.keyDim * stateRows(s));
}

/** The backward's workspace in floats. */
export function deltaWorkspaceLength(
  s: DeltaShape,
  segmentTokens: number,
  variant: DeltaRuleVariant = "recurrent",
): number {
  if (variant === "chunked") return chunkedWorkspaceLength(s);
  const S = Math.min(segmentTokens, s.seqLen), K = s.keyDim, R = stateRows(s);
  return (S + 1) * K * R + S * (K + 2) * R + K * R;
}

const stateRows = (s: DeltaShape) => s.batch * s.heads * s.valueDim;

/**
 * Default segment: ⌈√L⌉ tokens (at least 16) on GPUs; on software adapters at least 256 (each dispatch costs
 * milliseconds there) and at most deltaMaxSegmentTokens; shorter where the backward's workspace would pass the largest
 * buffer the adapter binds.
 */
export function deltaSegmentTokens(
  gpu: { info: { software: boolean }; limits?: Readonly<Record<string, number>> },
  s: DeltaShape,
): number {
  const root = Math.ceil(Math.sqrt(s.seqLen));
  let S = gpu.info.software
    ? Math.min(s.seqLen, deltaMaxSegmentTokens(s.keyDim), Math.max(SOFTWARE_MIN_SEGMENT_TOKENS, root))
    : Math.min(s.seqLen, Math.max(MIN_SEGMENT_TOKENS, root));
  if (!gpu.limits) return S;
  const bytes = Math.min(gpu.limits.maxStorageBufferBindingSize ?? Infinity, gpu.limits.maxBufferSize ?? Infinity);
  const maxFloats = Math.floor(bytes / 4);
  while (S > 1 && deltaWorkspaceLength(s, S) > maxFloats) S = Math.max(1, Math.floor(S / 2));
  if (deltaWorkspaceLength(s, S) > maxFloats) {
    throw new Error(
      `delta rule: even 1-token segments need a ${deltaWorkspaceLength(s, 1) * 4}-byte workspace, more than this ` +
        `adapter binds (${bytes}): lower the batch`,
    );
  }
  return S;
}

interface UniformFields {
  shape: DeltaShape;
  t0?: number;
  t1?: number;
  segTokens?: number;
  segment?: number;
  scale?: number;
  eps?: number;
  n?: number;
  wsP?: number;
  wsCarry?: number;
  /** Overrides keyDim (the L2 norm's group width). */
  width?: number;
}

function params(gpu: Gpu, label: string, f: UniformFields): GPUBuffer {
  const s = f.shape;
  return makeUniform(gpu, `${label}.params`, [
    ["u32", s.batch],
    ["u32", s.seqLen],
    ["u32", s.heads],
    ["u32", f.width ?? s.keyDim],
    ["u32", s.valueDim],
    ["u32", s.batch * s.seqLen],
    ["u32", f.t0 ?? 0],
    ["u32", f.t1 ?? s.seqLen],
    ["u32", f.segTokens ?? s.seqLen],
    ["u32", f.segment ?? 0],
    ["f32", f.scale ?? 0],
    ["f32", f.eps ?? 0],
    ["u32", f.n ?? 0],
    ["u32", f.wsP ?? 0],
    ["u32", f.wsCarry ?? 0],
    ["u32", 0],
  ]);
}

function sequence(label: string, passes: readonly Dispatch[], workspace: readonly Tensor[]): DeltaDispatch {
  return {
    label,
    workspace,
    encode(pass) {
      for (const p of passes) p.encode(pass);
    },
  };
}

// ---- L2 norm -------------------------------------------------------------------------------------------------------

export interface L2NormArgs {
  /** Groups of `width` consecutive values normalised separately (rows · heads). */
  groups: number;
  width: number;
  x: Tensor;
  /** Output (may not alias x). */
  y: Tensor;
}

export interface L2NormBackwardArgs {
  groups: number;
  width: number;
  x: Tensor;
  dy: Tensor;
  /** Overwritten. */
  dx: Tensor;
}

function l2Shape(label: string, groups: number, width: number): DeltaShape {
  checkDims(label, { groups, width });
  return { batch: 1, seqLen: 1, heads: 1, keyDim: width, valueDim: 1 };
}

export function createL2Norm(gpu: Gpu, label: string, args: L2NormArgs): Dispatch {
  const shape = l2Shape(label, args.groups, args.width), n = args.groups * args.width;
  validate(label, { x: [args.x, n], y: [args.y, n] }, ["y"]);
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "l2_forward",
    { PASS_L2_FORWARD: true },
    [params(gpu, label, { shape, n: args.groups, eps: L2_NORM_EPS }), args.x, args.y],
    grid1d(gpu, ceilDiv(args.groups, WG)),
  );
}

export function createL2NormBackward(gpu: Gpu, label: string, args: L2NormBackwardArgs): Dispatch {
  const shape = l2Shape(label, args.groups, args.width), n = args.groups * args.width;
  validate(label, { x: [args.x, n], dy: [args.dy, n], dx: [args.dx, n] }, ["dx"]);
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "l2_backward",
    { PASS_L2_BACKWARD: true },
    [params(gpu, label, { shape, n: args.groups, eps: L2_NORM_EPS }), args.x, args.dy, args.dx],
    grid1d(gpu, ceilDiv(args.groups, WG)),
  );
}

// ---- gates ---------------------------------------------------------------------------------------------------------

export interface DecayArgs {
  /** a_proj's output [rows, H]. */
  a: Tensor;
  /** [H] each. */
  A_log: Tensor;
  dtBias: Tensor;
}

export interface DeltaGatesArgs {
  rows: number;
  heads: number;
  /** b_proj's output [rows, H]. */
  b: Tensor;
  /** Gated DeltaNet's decay inputs; absent: β only. */
  decay?: DecayArgs;
  /** Output [2, rows·H] (β, then g) with a decay, [rows·H] without. */
  gates: Tensor;
}

export interface DeltaGatesBackwardArgs {
  rows: number;
  heads: number;
  b: Tensor;
  decay?: DecayArgs & {
    /** [rows, H], overwritten. */
    da: Tensor;
    /** [H] each, accumulated (+=). */
    dA_log: Tensor;
    dDtBias: Tensor;
  };
  /** dL/dgates, laid out as gates. */
  dgates: Tensor;
  /** [rows, H], overwritten. */
  db: Tensor;
}

const gatesLength = (n: number, gated: boolean) => (gated ? 2 * n : n);

/** β = sigmoid(b); with a decay g = −exp(A_log)·softplus(a + dt_bias). */
export function createDeltaGates(gpu: Gpu, label: string, args: DeltaGatesArgs): Dispatch {
  checkDims(label, { rows: args.rows, heads: args.heads });
  const n = args.rows * args.heads, H = args.heads, d = args.decay;
  validate(label, {
    b: [args.b, n],
    gates: [args.gates, gatesLength(n, Boolean(d))],
    ...(d ? { a: [d.a, n], A_log: [d.A_log, H], dtBias: [d.dtBias, H] } : {}),
  }, ["gates"]);
  const shape = { batch: 1, seqLen: args.rows, heads: H, keyDim: 1, valueDim: 1 };
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "gates_forward",
    { PASS_GATES_FORWARD: true, GATED: Boolean(d) },
    [params(gpu, label, { shape, n }), args.b, args.gates, ...(d ? [d.a, d.A_log, d.dtBias] : [])],
    grid1d(gpu, ceilDiv(n, WG)),
  );
}

/** db; with a decay da, and dA_log, ddt_bias += their sums over rows (fixed order). */
export function createDeltaGatesBackward(gpu: Gpu, label: string, args: DeltaGatesBackwardArgs): DeltaDispatch {
  checkDims(label, { rows: args.rows, heads: args.heads });
  const n = args.rows * args.heads, H = args.heads, d = args.decay;
  validate(label, {
    b: [args.b, n],
    dgates: [args.dgates, gatesLength(n, Boolean(d))],
    db: [args.db, n],
    ...(d ? { a: [d.a, n], A_log: [d.A_log, H], dtBias: [d.dtBias, H], da: [d.da, n] } : {}),
    ...(d ? { dA_log: [d.dA_log, H], dDtBias: [d.dDtBias, H] } : {}),
  }, ["db", ...(d ? ["da", "dA_log", "dDtBias"] : [])]);
  const shape = { batch: 1, seqLen: args.rows, heads: H, keyDim: 1, valueDim: 1 };
  const u = params(gpu, label, { shape, n });
  const grid = grid1d(gpu, ceilDiv(n, WG));
  const passes: Dispatch[] = [
    makeDispatch(gpu, `${label}.beta`, KERNEL, "gates_backward", { PASS_GATES_BACKWARD: true }, [
      u,
      args.b,
      args.dgates,
      args.db,
    ], grid),
  ];
  const workspace: Tensor[] = [];
  if (d) {
    const dgg = gpu.allocator.tensor(`${label}.dgg`, [args.rows, H], "workspace");
    workspace.push(dgg);
    passes.push(
      makeDispatch(gpu, `${label}.decay`, KERNEL, "decay_backward", { PASS_DECAY_BACKWARD: true }, [
        u,
        d.a,
        d.A_log,
        d.dtBias,
        args.dgates,
        d.da,
        dgg,
      ], grid),
    );
    const dtSum = createColumnSum(gpu, `${label}.dt_bias`, { input: d.da, out: d.dDtBias, rows: args.rows, cols: H });
    const aSum = createColumnSum(gpu, `${label}.A_log`, { input: dgg, out: d.dA_log, rows: args.rows, cols: H });
    passes.push(dtSum, aSum);
    workspace.push(dtSum.workspace, aSum.workspace);
  }
  return sequence(label, passes, workspace);
}

export interface DtGatesArgs {
  rows: number;
  heads: number;
  /** The dt pre-activation [rows, H] (Mamba-2's in_proj columns). */
  x: Tensor;
  /** [H] each. */
  A_log: Tensor;
  dtBias: Tensor;
  /** Output [2, rows·H]: β = dt = softplus(x + dt_bias), then g = −exp(A_log)·dt. */
  gates: Tensor;
}

export interface DtGatesBackwardArgs extends Omit<DtGatesArgs, "gates"> {
  dgates: Tensor;
  /** [rows, H], overwritten. */
  dx: Tensor;
  /** [H] each, accumulated (+=). */
  dA_log: Tensor;
  dDtBias: Tensor;
}

/** Mamba-2's gates for the additive update: β = dt, the decay exp(−exp(A_log)·dt). */
export function createDtGates(gpu: Gpu, label: string, args: DtGatesArgs): Dispatch {
  checkDims(label, { rows: args.rows, heads: args.heads });
  const n = args.rows * args.heads, H = args.heads;
  validate(label, {
    x: [args.x, n],
    A_log: [args.A_log, H],
    dtBias: [args.dtBias, H],
    gates: [args.gates, 2 * n],
  }, ["gates"]);
  const shape = { batch: 1, seqLen: args.rows, heads: H, keyDim: 1, valueDim: 1 };
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "dt_gates_forward",
    { PASS_DT_GATES_FORWARD: true },
    [params(gpu, label, { shape, n }), args.x, args.A_log, args.dtBias, args.gates],
    grid1d(gpu, ceilDiv(n, WG)),
  );
}

/** dx; dt_bias += Σ_rows dx and A_log += Σ_rows dg·g (fixed order). */
export function createDtGatesBackward(gpu: Gpu, label: string, args: DtGatesBackwardArgs): DeltaDispatch {
  checkDims(label, { rows: args.rows, heads: args.heads });
  const n = args.rows * args.heads, H = args.heads;
  validate(label, {
    x: [args.x, n],
    A_log: [args.A_log, H],
    dtBias: [args.dtBias, H],
    dgates: [args.dgates, 2 * n],
    dx: [args.dx, n],
    dA_log: [args.dA_log, H],
    dDtBias: [args.dDtBias, H],
  }, ["dx", "dA_log", "dDtBias"]);
  const shape = { batch: 1, seqLen: args.rows, heads: H, keyDim: 1, valueDim: 1 };
  const dgg = gpu.allocator.tensor(`${label}.dgg`, [args.rows, H], "workspace");
  const gates = makeDispatch(gpu, `${label}.gates`, KERNEL, "dt_gates_backward", { PASS_DT_GATES_BACKWARD: true }, [
    params(gpu, label, { shape, n }),
    args.x,
    args.A_log,
    args.dtBias,
    args.dgates,
    args.dx,
    dgg,
  ], grid1d(gpu, ceilDiv(n, WG)));
  const dtSum = createColumnSum(gpu, `${label}.dt_bias`, {
    input: args.dx,
    out: args.dDtBias,
    rows: args.rows,
    cols: H,
  });
  const aSum = createColumnSum(gpu, `${label}.A_log`, { input: dgg, out: args.dA_log, rows: args.rows, cols: H });
  return sequence(label, [gates, dtSum, aSum], [dgg, dtSum.workspace, aSum.workspace]);
}

// ---- Mamba-2's inputs ----------------------------------------------------------------------------------------------

export interface SsdShape {
  rows: number;
  heads: number;
  /** Channels per head P. */
  headDim: number;
  /** d_state N (one group: B and C shared by the heads). */
  state: number;
}

function ssdParams(gpu: Gpu, label: string, s: SsdShape, n: number): GPUBuffer {
  checkDims(label, { rows: s.rows, heads: s.heads, headDim: s.headDim, state: s.state });
  const shape = { batch: 1, seqLen: s.rows, heads: s.heads, keyDim: s.state, valueDim: s.headDim };
  return params(gpu, label, { shape, n });
}

/** out = y + D[h]·x over [rows, H·P] (Mamba-2's skip). */
export function createSsdSkip(
  gpu: Gpu,
  label: string,
  args: { shape: SsdShape; y: Tensor; x: Tensor; D: Tensor; out: Tensor },
): Dispatch {
  const s = args.shape, n = s.rows * s.heads * s.headDim;
  const u = ssdParams(gpu, label, s, n);
  validate(label, { y: [args.y, n], x: [args.x, n], D: [args.D, s.heads], out: [args.out, n] }, ["out"]);
  return makeDispatch(gpu, label, KERNEL, "ssd_skip_forward", { PASS_SSD_SKIP_FORWARD: true }, [
    u,
    args.y,
    args.x,
    args.D,
    args.out,
  ], grid1d(gpu, ceilDiv(n, WG)));
}

export interface SsdInputsBackwardArgs {
  shape: SsdShape;
  /** The update's dv [rows, H·P] and the skip's input gradient dy (the update's dout) [rows, H·P]. */
  dv: Tensor;
  dy: Tensor;
  /** x [rows, H·P] and D [H]. */
  x: Tensor;
  D: Tensor;
  /** The update's dk (B broadcast to the heads) and dq (C), [rows, H·N] each. */
  dk: Tensor;
  dq: Tensor;
  /** Output [rows, H·P + 2N]: the gradient of the conv output (x | B | C), overwritten. */
  dxbc: Tensor;
  /** [H], accumulated (+=). */
  dD: Tensor;
}

/** dxbc (x: dv + D·dy; B, C: the sums over heads) and dD += Σ dy·x, in a fixed order. */
export function createSsdInputsBackward(gpu: Gpu, label: string, args: SsdInputsBackwardArgs): DeltaDispatch {
  const s = args.shape, HP = s.heads * s.headDim, n = s.rows * HP, hn = s.rows * s.heads * s.state;
  const W = HP + 2 * s.state;
  const u = ssdParams(gpu, label, s, n);
  validate(label, {
    dv: [args.dv, n],
    dy: [args.dy, n],
    x: [args.x, n],
    D: [args.D, s.heads],
    dk: [args.dk, hn],
    dq: [args.dq, hn],
    dxbc: [args.dxbc, s.rows * W],
    dD: [args.dD, s.heads],
  }, ["dxbc", "dD"]);
  const dDrows = gpu.allocator.tensor(`${label}.dD_rows`, [s.rows, s.heads], "workspace");
  const pass = makeDispatch(gpu, label, KERNEL, "ssd_inputs_backward", { PASS_SSD_INPUTS_BACKWARD: true }, [
    u,
    args.dv,
    args.dy,
    args.x,
    args.D,
    args.dk,
    args.dq,
    args.dxbc,
    dDrows,
  ], grid1d(gpu, ceilDiv(s.rows * (W + s.heads), WG)));
  const dSum = createColumnSum(gpu, `${label}.D`, { input: dDrows, out: args.dD, rows: s.rows, cols: s.heads });
  return sequence(label, [pass, dSum], [dDrows, dSum.workspace]);
}

// ---- the delta rule ------------------------------------------------------------------------------------------------

export type DeltaUpdate = "delta" | "additive";

export interface DeltaSegmenting {
  /** Tokens per segment (the checkpoint interval); default deltaSegmentTokens. Forward and backward must agree. */
  segmentTokens?: number;
}

/** What the forward and the backward both read. */
export interface DeltaRuleInputs extends DeltaSegmenting {
  shape: DeltaShape;
  /** [rows, H*K], L2-normalised by the caller (the kernel does not normalise). */
  q: Tensor;
  k: Tensor;
  /** [rows, H*V]. */
  v: Tensor;
  /** createDeltaGates' output: β [rows·H] and, when `gated`, the log decay after it. */
  gates: Tensor;
  gated: boolean;
  /** "delta" (default): S̃ + β(v − S̃k)kᵀ; "additive": S̃ + β·v·kᵀ (Mamba-2's SSD with β = dt, k = B, q = C). */
  update?: DeltaUpdate;
  /** The forward's output, the backward's input: deltaCheckpointLength floats. */
  checkpoints: Tensor;
  /** Query scale; default K^-1/2 (fla's). */
  scale?: number;
  /** Default selectDeltaRuleVariant; the checkpoints' length depends on it. */
  variant?: DeltaRuleVariant;
  /** chunked: value rows per workgroup (default deltaValueBlock). Forward and backward must agree. */
  valueBlock?: number;
  /** chunked: chunks per dispatch (default all on GPUs, as many as LOOP_BUDGET allows on software adapters). */
  chunksPerDispatch?: number;
}

export interface DeltaRuleArgs extends DeltaRuleInputs {
  /** Output [rows, H*V]. */
  o: Tensor;
  /** Segments per forward dispatch; default all on GPUs, as many as LOOP_BUDGET allows on software adapters. */
  segmentsPerDispatch?: number;
}

export interface DeltaRuleBackwardArgs extends DeltaRuleInputs {
  /** dL/do [rows, H*V]. */
  dout: Tensor;
  /** Overwritten: [rows, H*K], [rows, H*K], [rows, H*V], and dgates laid out as gates. */
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
  dgates: Tensor;
}

function checkDeltaShape(label: string, s: DeltaShape): void {
  checkDims(label, { batch: s.batch, seqLen: s.seqLen, heads: s.heads, keyDim: s.keyDim, valueDim: s.valueDim });
}

function segmentOption(gpu: Gpu, label: string, s: DeltaShape, args: DeltaSegmenting): number {
  const S = args.segmentTokens ?? deltaSegmentTokens(gpu, s);
  if (!Number.isInteger(S) || S < 1) throw new Error(`${label}: segmentTokens must be a positive integer, got ${S}`);
  const max = deltaMaxSegmentTokens(s.keyDim);
  if (gpu.info.software && Math.min(S, s.seqLen) > max) {
    throw new Error(
      `${label}: segmentTokens ${S} exceeds ${max} at K = ${s.keyDim} on a software adapter (llvmpipe ends an ` +
        `invocation after 65,535 loop iterations)`,
    );
  }
  return S;
}

function variantOf(gpu: Gpu, label: string, args: DeltaRuleInputs): DeltaRuleVariant {
  const v = args.variant ?? selectDeltaRuleVariant(gpu);
  if (v !== "recurrent" && v !== "chunked") {
    throw new Error(`${label}: variant must be "recurrent" or "chunked", got ${JSON.stringify(v)}`);
  }
  return v;
}

function operands(
  s: DeltaShape,
  args: DeltaRuleInputs,
  S: number,
  variant: DeltaRuleVariant = "recurrent",
): Record<string, Operand> {
  const rows = s.batch * s.seqLen, H = s.heads;
  return {
    q: [args.q, rows * H * s.keyDim],
    k: [args.k, rows * H * s.keyDim],
    v: [args.v, rows * H * s.valueDim],
    gates: [args.gates, gatesLength(rows * H, args.gated)],
    checkpoints: [args.checkpoints, deltaCheckpointLength(s, S, variant)],
  };
}

function segmentRanges(seqLen: number, S: number): { begin: number; end: number }[] {
  const out = [];
  for (let begin = 0; begin < seqLen; begin += S) out.push({ begin, end: Math.min(seqLen, begin + S) });
  return out;
}

function scaleOf(label: string, s: DeltaShape, scale: number | undefined): number {
  const c = scale ?? deltaScale(s.keyDim);
  if (!Number.isFinite(c)) throw new Error(`${label}: scale must be finite, got ${c}`);
  return c;
}

function updateOf(label: string, update: DeltaUpdate | undefined): boolean {
  if (update === undefined || update === "delta") return true;
  if (update === "additive") return false;
  throw new Error(`${label}: update must be "delta" or "additive", got ${JSON.stringify(update)}`);
}

/** o and the checkpoints: one dispatch per `segmentsPerDispatch` segments in increasing t. */
export function createDeltaRule(gpu: Gpu, label: string, args: DeltaRuleArgs): Dispatch {
  const s = args.shape;
  checkDeltaShape(label, s);
  if (variantOf(gpu, label, args) === "chunked") {
    const rows = s.batch * s.seqLen;
    validate(label, {
      ...operands(s, args, 1, "chunked"),
      o: [args.o, rows * s.heads * s.valueDim],
    }, ["o", "checkpoints"]);
    return createDeltaRuleChunked(gpu, label, {
      ...args,
      delta: updateOf(label, args.update),
      scale: scaleOf(label, s, args.scale),
    });
  }
  const S = segmentOption(gpu, label, s, args), rows = s.batch * s.seqLen;
  validate(label, { ...operands(s, args, S), o: [args.o, rows * s.heads * s.valueDim] }, ["o", "checkpoints"]);
  const segments = segmentRanges(s.seqLen, S);
  const perDispatch = args.segmentsPerDispatch ??
    (gpu.info.software
      ? Math.max(1, Math.floor(LOOP_BUDGET / (forwardIterations(s.keyDim) * Math.min(S, s.seqLen))))
      : segments.length);
  if (!Number.isInteger(perDispatch) || perDispatch < 1) {
    throw new Error(`${label}: segmentsPerDispatch must be a positive integer, got ${perDispatch}`);
  }
  const scale = scaleOf(label, s, args.scale);
  const defines = {
    PASS_DELTA_FORWARD: true,
    STATE_STEP: true,
    SWEEP: true,
    GATED: args.gated,
    DELTA: updateOf(label, args.update),
    NK: s.keyDim,
  };
  const passes: Dispatch[] = [];
  for (let first = 0; first < segments.length; first += perDispatch) {
    const t0 = segments[first].begin, t1 = segments[Math.min(segments.length, first + perDispatch) - 1].end;
    const l = `${label}.${t0}`;
    passes.push(makeDispatch(
      gpu,
      l,
      KERNEL,
      "delta_forward",
      defines,
      [
        params(gpu, l, { shape: s, t0, t1, segTokens: S, scale }),
        args.q,
        args.k,
        args.v,
        args.gates,
        args.o,
        args
          .checkpoints,
      ],
      grid1d(gpu, ceilDiv(stateRows(s), WG)),
    ));
  }
  return sequence(label, passes, []);
}

/** Per segment, last to first: the recompute + reverse sweep, then the reduction over state rows. */
export function createDeltaRuleBackward(gpu: Gpu, label: string, args: DeltaRuleBackwardArgs): DeltaDispatch {
  const s = args.shape;
  checkDeltaShape(label, s);
  if (variantOf(gpu, label, args) === "chunked") {
    const rows = s.batch * s.seqLen, H = s.heads;
    validate(label, {
      ...operands(s, args, 1, "chunked"),
      dout: [args.dout, rows * H * s.valueDim],
      dq: [args.dq, rows * H * s.keyDim],
      dk: [args.dk, rows * H * s.keyDim],
      dv: [args.dv, rows * H * s.valueDim],
      dgates: [args.dgates, gatesLength(rows * H, args.gated)],
    }, ["dq", "dk", "dv", "dgates"]);
    return createDeltaRuleChunkedBackward(gpu, label, {
      ...args,
      delta: updateOf(label, args.update),
      scale: scaleOf(label, s, args.scale),
    });
  }
  const S = segmentOption(gpu, label, s, args), rows = s.batch * s.seqLen, H = s.heads, K = s.keyDim;
  validate(label, {
    ...operands(s, args, S),
    dout: [args.dout, rows * H * s.valueDim],
    dq: [args.dq, rows * H * K],
    dk: [args.dk, rows * H * K],
    dv: [args.dv, rows * H * s.valueDim],
    dgates: [args.dgates, gatesLength(rows * H, args.gated)],
  }, ["dq", "dk", "dv", "dgates"]);
  const span = Math.min(S, s.seqLen), R = stateRows(s);
  const wsP = (span + 1) * K * R, wsCarry = wsP + span * (K + 2) * R;
  const ws = gpu.allocator.tensor(`${label}.workspace`, [deltaWorkspaceLength(s, S)], "workspace");
  const scale = scaleOf(label, s, args.scale);
  const defines = { SWEEP: true, GATED: args.gated, DELTA: updateOf(label, args.update), NK: K };
  const columns = 2 * K + (args.gated ? 2 : 1);
  const passes: Dispatch[] = [];
  const segments = segmentRanges(s.seqLen, S);
  for (let seg = segments.length - 1; seg >= 0; seg--) {
    const { begin: t0, end: t1 } = segments[seg], l = `${label}.${t0}`;
    const u = params(gpu, l, { shape: s, t0, t1, segTokens: S, segment: seg, scale, wsP, wsCarry });
    passes.push(
      makeDispatch(
        gpu,
        `${l}.sweep`,
        KERNEL,
        "delta_backward",
        { ...defines, PASS_DELTA_BACKWARD: true, STATE_STEP: true },
        [u, args.q, args.k, args.v, args.gates, args.checkpoints, args.dout, args.dv, ws],
        grid1d(gpu, ceilDiv(R, WG)),
      ),
      makeDispatch(
        gpu,
        `${l}.reduce`,
        KERNEL,
        "delta_backward_reduce",
        { ...defines, PASS_DELTA_BWD_REDUCE: true },
        [u, args.dout, ws, args.dq, args.dk, args.dgates, ...(args.gated ? [args.gates] : [])],
        grid1d(gpu, ceilDiv(s.batch * (t1 - t0) * H * columns, WG)),
      ),
    );
  }
  return sequence(label, passes, [ws]);
}
