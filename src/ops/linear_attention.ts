/**
 * Based / ReBased causal linear attention: forward y = Σ g(S) v / (Σ g(S) + eps) and its backward (dq; dk, dv), in the
 * exact parallel form (spec §5.1, O(L²) per sequence) or the chunked form (spec §5.3, O(L)); see
 * kernels/linear_attention.wgsl.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import { ceilDiv, type Dispatch, makeDispatch, makeUniform } from "./_dispatch.ts";

export type LinearAttentionKernel = "based" | "rebased";
/**
 * Parallel (exact O(L²)) variants, all summing the same terms in the same order (bit-identical results):
 * "rows": register accumulators, keys read from global memory (CPU rasterisers): `rowBlock` rows per invocation
 *   reading q/k rows as vec4s when featureDim is a multiple of 4, else one row per invocation;
 * "tiled": the same with key tiles staged through workgroup memory;
 * "smem": one invocation per (row, output column) with scalar accumulators, score tiles in workgroup memory (GPUs).
 * O(L) variants (f ≤ 16), constant memory per token; same math, different summation order, so they agree with the
 * parallel variants to fp32 rounding, not bitwise:
 * "chunked": the fused chunk form of spec §5.3, forward and backward: one workgroup carries the state of one (batch,
 * head) through the sequence in workgroup memory, 16-token chunks.
 */
export type LinearAttentionVariant = "rows" | "tiled" | "smem" | "chunked";

/** [R]'s denominator eps for Based and ReBased. */
export const DEFAULT_LINEAR_ATTENTION_EPS = 1e-12;

export interface LinearAttentionConfig {
  batch: number;
  seqLen: number;
  heads: number;
  /** f: query/key features per head (16 in the paper). */
  featureDim: number;
  /** dv: value features per head (⌊d/12⌋ in the paper). */
  valueDim: number;
  kernel: LinearAttentionKernel;
  /** Default DEFAULT_LINEAR_ATTENTION_EPS. */
  eps?: number;
  variant?: LinearAttentionVariant;
  /** Rows (query rows, or key rows for dk/dv) per workgroup of the rows and tiled variants; default 64. */
  rowsPerWorkgroup?: number;
  /**
   * Rows per invocation of the rows variant (1-8), each key read once for all of them as vec4s; default 4 forward, 2
   * backward when featureDim is a multiple of 4 (otherwise always 1).
   */
  rowBlock?: number;
  /** Rows staged per step through workgroup memory by the tiled and smem variants; default 32 (8 on GL). */
  keyTile?: number;
  /** Invocations per workgroup of the smem variant (rows per workgroup = this / columns per row); default 512. */
  threadsPerWorkgroup?: number;
  /**
   * Chunked variant: state columns per workgroup (forward: value columns, default 16, 4 on GL) or per sweep (backward:
   * of the dv + 1 columns; default as many as fit in workgroup memory).
   */
  chunkColumns?: number;
  /**
   * Chunked variant: chunks (of 16 tokens) per dispatch of a sweep; default 32 on CPU rasterisers (llvmpipe ends an
   * invocation after 65535 loop iterations), the whole sequence on GPUs.
   */
  segmentChunks?: number;
}

export interface LinearAttentionForwardArgs extends LinearAttentionConfig {
  /** [B*L, H*f] */
  q: Tensor;
  /** [B*L, H*f] */
  k: Tensor;
  /** [B*L, H*dv] */
  v: Tensor;
  /** Output [B*L, H*dv]. */
  y: Tensor;
  /** Output [B*L, H]: 1/(z + eps), saved for the backward pass (and for attention maps: a_ij = g(S_ij)·zinv_i). */
  zinv: Tensor;
}

export interface LinearAttentionBackwardArgs extends LinearAttentionConfig {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  /** The forward's y and zinv. */
  y: Tensor;
  zinv: Tensor;
  /** [B*L, H*dv] */
  dy: Tensor;
  /** Outputs, shaped like q, k, v. */
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
  /** Scratch [B*L, H]: the dq pass writes dz_i = -(dy_i·y_i)/(z_i+eps) there for the dk/dv pass. */
  dz: Tensor;
  /** dq/dk/dv += instead of =. */
  accumulate?: boolean;
}

/** The adapter facts the variant rules read (a Gpu satisfies it). */
export interface LinearAttentionAdapter {
  info: { software: boolean; backend: string };
}

/**
 * The adapter's exact parallel variant: software rasterisers pay heavily for workgroup barriers, so they read keys
 * straight from global memory; real GPUs get scalar accumulators and score tiles in workgroup memory.
 */
export function parallelLinearAttentionVariant(adapter: LinearAttentionAdapter): LinearAttentionVariant {
  return adapter.info.software ? "rows" : "smem";
}

/**
 * Sequence lengths from which the chunked variant beats the adapter's default parallel variant over a training step
 * (forward + backward), measured on lavapipe as CPU time per token (H = 12, f = 16, 2048 tokens per step, ReBased,
 * median of 7): dv = 5: rows 36 / 50 / 61 / 56 / 65 µs at L = 256 / 512 / 576 / 640 / 704, chunked 47-57 µs (flat),
 * crossing near L = 550; dv = 42: rows 263 / 327 µs at L = 320 / 352, chunked 277 / 304 µs, crossing near L = 330
 * (its state columns take three sweeps). Hardware: not measured; a guess, since the chunked sweeps are sequential over
 * L/16 chunks with only batch·heads workgroups in flight while the smem variant fills a GPU.
 */
export const CHUNKED_FROM_SEQ_LEN = { software: 576, softwareWide: 336, hardware: 1024 } as const;

/**
 * The length from which selectLinearAttentionVariant picks chunked (wide: more than 15 value columns per head). Never on
 * GL (llvmpipe's GL compiler took 6 minutes over the f = 16 chunked pipelines).
 */
export function chunkedFromSeqLen(adapter: LinearAttentionAdapter, valueDim: number): number {
  if (adapter.info.backend === "gl") return Infinity;
  if (!adapter.info.software) return CHUNKED_FROM_SEQ_LEN.hardware;
  return valueDim + 1 > 16 ? CHUNKED_FROM_SEQ_LEN.softwareWide : CHUNKED_FROM_SEQ_LEN.software;
}

/**
 * The one variant rule of this op (its default, and what the model and the bench use): chunked (O(L) per sequence)
 * from chunkedFromSeqLen on when its state fits (f ≤ 16), otherwise the adapter's parallel variant (O(L²)).
 */
export function selectLinearAttentionVariant(
  adapter: LinearAttentionAdapter,
  cfg: Pick<LinearAttentionConfig, "seqLen" | "featureDim" | "valueDim">,
): LinearAttentionVariant {
  if (cfg.featureDim > 16) return parallelLinearAttentionVariant(adapter);
  const long = cfg.seqLen >= chunkedFromSeqLen(adapter, cfg.valueDim);
  // On CPU rasterisers a sequence too long for one rows invocation's loop budget also goes to chunked (segmented).
  const tooLong = adapter.info.software && adapter.info.backend !== "gl" && !rowsFitLoopLimit(cfg, 1);
  return long || tooLong ? "chunked" : parallelLinearAttentionVariant(adapter);
}

/**
 * llvmpipe silently ends a shader invocation after 65535 loop iterations (the rest of its work is skipped, no error):
 * the rows variant's loops over the sequence must stay under it on CPU rasterisers.
 */
export const SOFTWARE_LOOP_LIMIT = 65535;

const PASSES: readonly Pass[] = ["forward", "backward_dq", "backward_dkdv"];

/**
 * Loop iterations of one rows-variant invocation of `pass` with `rowBlock` rows per invocation (1: the one-row kernel),
 * counting every loop: an upper bound, since the compiler unrolls short constant loops (f = 16, dv = 5 at L = 4096
 * measured correct although this count is 184k; dv = 42 at L = 512, rowBlock 4, whose 42-column loops stay loops,
 * stopped early).
 */
export function rowsLoopIterations(
  cfg: Pick<LinearAttentionConfig, "seqLen" | "featureDim" | "valueDim">,
  pass: Pass,
  rowBlock: number,
): number {
  const L = cfg.seqLen, F = cfg.featureDim, DV = cfg.valueDim, F4 = Math.ceil(F / 4), RB = rowBlock;
  if (RB <= 1) {
    const perKey = { forward: F + DV, backward_dq: 2 * F + DV, backward_dkdv: 2 * F + 2 * DV }[pass];
    return L * perKey + 2 * (F + DV);
  }
  const perRow = { forward: F4 + DV, backward_dq: 2 * F4 + DV, backward_dkdv: 2 * F4 + 2 * DV }[pass];
  return L * (F4 + DV + RB * (perRow + RB)) + 2 * RB * (F4 + DV);
}

/** Whether every pass of the rows variant fits the loop limit with `rowBlock` rows (per pass default when omitted). */
export function rowsFitLoopLimit(
  cfg: Pick<LinearAttentionConfig, "seqLen" | "featureDim" | "valueDim">,
  rowBlock?: number,
): boolean {
  return PASSES.every((pass) => rowsLoopIterations(cfg, pass, rowBlock ?? 1) <= SOFTWARE_LOOP_LIMIT);
}

const DEFAULT_ROWS_PER_WG = 64;
/**
 * Rows per invocation of the rows variant when featureDim is a multiple of 4. Best of 1, 2, 3, 4, 8 on lavapipe (B = 8,
 * L = 256, H = 12, f = 16, dv = 5): forward 34 / 15 / 10 / 10 / 18 ms at 1 / 2 / 3 / 4 / 8 rows; backward (more state
 * per row, so more register spills) 111 / 39 / 72 / 84 / 72 ms.
 */
const DEFAULT_ROW_BLOCK: Record<Pass, number> = { forward: 4, backward_dq: 2, backward_dkdv: 2 };

/**
 * Rows per invocation: rowBlock (or the default) for the rows variant when q/k rows are whole vec4s, else 1. On CPU
 * rasterisers the default shrinks until the invocation's loops fit SOFTWARE_LOOP_LIMIT (1: the one-row kernel, whose
 * loops are the shortest).
 */
function rowBlockOf(gpu: Gpu, cfg: LinearAttentionConfig, variant: LinearAttentionVariant, pass: Pass): number {
  if (variant !== "rows" || cfg.featureDim % 4 !== 0) return 1;
  if (cfg.rowBlock !== undefined) return cfg.rowBlock;
  let rowBlock = DEFAULT_ROW_BLOCK[pass];
  while (gpu.info.software && rowBlock > 1 && rowsLoopIterations(cfg, pass, rowBlock) > SOFTWARE_LOOP_LIMIT) rowBlock--;
  return rowBlock;
}
// Best of 128..1024 on an H200 (B=512, L=256 and L ≤ 2048 shapes); capped by the device's invocation limit.
const DEFAULT_SMEM_THREADS = 512;

function validate(label: string, cfg: LinearAttentionConfig, tensors: Record<string, [Tensor, number]>): void {
  for (const [name, n] of Object.entries({ batch: cfg.batch, seqLen: cfg.seqLen, heads: cfg.heads })) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`${label}: ${name} must be a positive integer, got ${n}`);
  }
  for (const [name, n] of Object.entries({ featureDim: cfg.featureDim, valueDim: cfg.valueDim })) {
    // They size per-invocation register arrays in the rows/tiled variants.
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`${label}: ${name} must be in [1, 64], got ${n}`);
  }
  if (cfg.kernel !== "based" && cfg.kernel !== "rebased") throw new Error(`${label}: unknown kernel ${cfg.kernel}`);
  const tuning = {
    rowsPerWorkgroup: cfg.rowsPerWorkgroup,
    keyTile: cfg.keyTile,
    threads: cfg.threadsPerWorkgroup,
    chunkColumns: cfg.chunkColumns,
    segmentChunks: cfg.segmentChunks,
  };
  if (cfg.rowBlock !== undefined && !(Number.isInteger(cfg.rowBlock) && cfg.rowBlock >= 1 && cfg.rowBlock <= 8)) {
    throw new Error(`${label}: rowBlock must be an integer in [1, 8], got ${cfg.rowBlock}`);
  }
  for (const [name, n] of Object.entries(tuning)) {
    if (n !== undefined && (!Number.isInteger(n) || n < 1 || n > 1024)) {
      throw new Error(`${label}: ${name} must be in [1, 1024], got ${n}`);
    }
  }
  for (const [name, [t, per]] of Object.entries(tensors)) {
    const n = cfg.batch * cfg.seqLen * cfg.heads * per;
    if (t.length < n) throw new Error(`${label}: ${name} ${t.label} has ${t.length} elements, needs ${n}`);
  }
}

/** The kernels' uniform; `segment` (chunked variant): the dispatch's chunks [begin, end) and state-column tile. */
function makeParams(
  gpu: Gpu,
  label: string,
  cfg: LinearAttentionConfig,
  segment: Segment = { begin: 0, end: 0, tile: 0 },
): GPUBuffer {
  return makeUniform(gpu, `${label}.params`, [
    ["u32", cfg.batch],
    ["u32", cfg.seqLen],
    ["u32", cfg.heads],
    ["f32", 1 / Math.sqrt(cfg.featureDim)],
    ["f32", cfg.eps ?? DEFAULT_LINEAR_ATTENTION_EPS],
    ["u32", segment.begin],
    ["u32", segment.end],
    ["u32", segment.tile],
  ]);
}

interface Segment {
  begin: number;
  end: number;
  tile: number;
}

export type Pass = "forward" | "backward_dq" | "backward_dkdv";
const PASS_DEFINE: Record<Pass, string> = {
  forward: "PASS_FORWARD",
  backward_dq: "PASS_BWD_DQ",
  backward_dkdv: "PASS_BWD_DKDV",
};

/** Entry point, defines and grid of one pass of a parallel variant. */
function parallelPass(gpu: Gpu, cfg: LinearAttentionConfig, pass: Pass, accumulate: boolean) {
  const variant = cfg.variant ?? selectLinearAttentionVariant(gpu, cfg);
  if (variant === "chunked") throw new Error("linear attention: the chunked variant is not parallel");
  const f = cfg.featureDim, dv = cfg.valueDim;
  const defines: Record<string, number | boolean> = {
    F: f,
    DV: dv,
    REBASED: cfg.kernel === "rebased",
    ACCUMULATE: accumulate,
    [PASS_DEFINE[pass]]: true,
    // Small on GL, whose compiler unrolls the zero-initialisation of workgroup arrays.
    BS: cfg.keyTile ?? (gpu.info.backend === "gl" ? 8 : 32),
    // GL: workgroup arrays as mat4x4 (16 floats a constructor argument of that zero-initialisation).
    PACKED: gpu.info.backend === "gl",
  };
  if (variant === "smem") {
    // One invocation per (row, output column): forward DV values + denominator, dq F, dk/dv F + DV.
    const cols = pass === "forward" ? dv + 1 : pass === "backward_dq" ? f : f + dv;
    const limit = gpu.limits.maxComputeInvocationsPerWorkgroup ?? 256;
    // GL compiles workgroup arrays slowly (it unrolls their zero-initialisation), so it gets small workgroups.
    const fallback = gpu.info.backend === "gl" ? 64 : DEFAULT_SMEM_THREADS;
    const threads = Math.min(cfg.threadsPerWorkgroup ?? fallback, limit);
    const rows = Math.max(1, Math.min(64, Math.floor(threads / cols)));
    if (rows * cols > limit) throw new Error(`linear attention: ${cols} columns per row exceed ${limit} invocations`);
    Object.assign(defines, { SMEM: true, FR: rows, COLS: cols, WG_SIZE: rows * cols });
    return {
      entry: `${pass}_smem`,
      defines,
      workgroups: [ceilDiv(cfg.seqLen, rows), cfg.heads, cfg.batch] as [number, number, number],
    };
  }
  const rowsPerWorkgroup = cfg.rowsPerWorkgroup ?? DEFAULT_ROWS_PER_WG;
  Object.assign(defines, { ROWS_PER_WG: rowsPerWorkgroup, TILED: variant === "tiled" });
  const rowBlock = rowBlockOf(gpu, cfg, variant, pass);
  if (rowBlock > 1) {
    // rowsPerWorkgroup counts rows: the blocked kernels cover them with rowBlock rows per invocation.
    const lanes = ceilDiv(rowsPerWorkgroup, rowBlock);
    Object.assign(defines, { ROW_BLOCK: true, RB: rowBlock, ROWS_PER_WG: lanes, F4: f / 4 });
    return {
      entry: `${pass}_rows`,
      defines,
      workgroups: [ceilDiv(cfg.seqLen, lanes * rowBlock), cfg.heads, cfg.batch] as [number, number, number],
    };
  }
  return {
    entry: pass,
    defines,
    workgroups: [ceilDiv(cfg.seqLen, rowsPerWorkgroup), cfg.heads, cfg.batch] as [number, number, number],
  };
}

export function linearAttentionForward(gpu: Gpu, label: string, input: LinearAttentionForwardArgs): Dispatch {
  const args = { ...input, variant: input.variant ?? selectLinearAttentionVariant(gpu, input) };
  const f = args.featureDim, dv = args.valueDim;
  validate(label, args, { q: [args.q, f], k: [args.k, f], v: [args.v, dv], y: [args.y, dv], zinv: [args.zinv, 1] });
  if (args.variant === "chunked") return chunkedForward(gpu, label, args);
  const params = makeParams(gpu, label, args);
  const { entry, defines, workgroups } = parallelPass(gpu, args, "forward", false);
  return makeDispatch(
    gpu,
    label,
    "linear_attention",
    entry,
    defines,
    [params, args.q, args.k, args.v, args.y, args.zinv],
    workgroups,
  );
}

/**
 * Tokens per chunk (fla's BT) and value columns per workgroup (fla's BV) of the chunked forward; one invocation per
 * chunk row (see the kernel: invocations differ in registers, not in the workgroup addresses they read). Larger chunks
 * measured slower on lavapipe (the same-chunk part grows, the state work does not shrink).
 */
const CHUNK = 16;
const CHUNK_COLUMNS = 16;
/**
 * Invocations per chunked workgroup: one per chunk row on GPUs; 8 (one SIMD row, two chunk rows each) on CPU
 * rasterisers, which run a workgroup's invocations in turn on one thread (lavapipe, dv = 5: 58-61 µs per token with 8,
 * 63-75 with 16, alternating runs).
 */
const chunkWorkgroup = (gpu: Gpu) => (gpu.info.software ? 8 : CHUNK);

/** Symmetrically packed feature count: ReBased f(f+1)/2, Based 1 + f + f(f+1)/2 (136 / 153 for f = 16). */
export function packedFeatureCount(kernel: LinearAttentionKernel, f: number): number {
  return (kernel === "based" ? 1 + f : 0) + (f * (f + 1)) / 2;
}

function workgroupMemoryLimit(gpu: Gpu): number {
  return gpu.limits.maxComputeWorkgroupStorageSize ?? 16384;
}

function checkChunkedFeatureDim(label: string, f: number): void {
  // fla's BK = 16; the packed state (153 features at f = 16) must fit workgroup memory.
  if (f > 16) throw new Error(`${label}: the chunked variant needs featureDim ≤ 16, got ${f}`);
}

/** Defines shared by the chunked passes, whose state has `stateWidth` columns. */
function featureStateDefines(gpu: Gpu, cfg: LinearAttentionConfig, stateWidth: number) {
  return {
    F: cfg.featureDim,
    DV: cfg.valueDim,
    DPHI: packedFeatureCount(cfg.kernel, cfg.featureDim),
    SW: stateWidth,
    // Stored as vec4s: the width rounded up to 4 (zero columns).
    SWP: paddedWidth(stateWidth),
    SW4: paddedWidth(stateWidth) / 4,
    CHUNK,
    CHUNK_WG: chunkWorkgroup(gpu),
    REBASED: cfg.kernel === "rebased",
    FEATURE_STATE: true,
    RUNTIME_BOUNDS: gpu.info.backend === "gl",
    PACKED: gpu.info.backend === "gl",
  };
}

/** State columns as stored: rounded up to a multiple of 4 (vec4s). */
const paddedWidth = (width: number) => Math.ceil(width / 4) * 4;

/**
 * Workgroup bytes of a chunked pass: state [DPHI, width], `chunks` arrays [CHUNK, f + 1], `vectors` [CHUNK, width]
 * (widths padded to vec4s), and the partners' vec4 copies.
 */
function featureStateBytes(cfg: LinearAttentionConfig, width: number, chunks: number, vectors: number): number {
  const f = cfg.featureDim, features = packedFeatureCount(cfg.kernel, f);
  // The partners' vec4 copies (partner4 [CHUNK, f rounded up to 4], partnerT [f + 1, CHUNK]) come with every pass.
  const partnerCopies = CHUNK * (4 * Math.ceil(f / 4) + f + 1);
  return 4 * ((features + vectors * CHUNK) * paddedWidth(width) + chunks * CHUNK * (f + 1) + partnerCopies);
}

/**
 * Chunks per dispatch of a chunked sweep on CPU rasterisers: llvmpipe silently ends an invocation after 65535 loop
 * iterations in total, and a chunk costs up to ~3k per invocation (Based, 17 state columns, two chunk rows per
 * invocation: 32 chunks per segment measurably truncated dv = 42 at L = 1024), so a sweep is cut into segments of this
 * many chunks with the state parked in a workspace between them. GPUs sweep in one dispatch.
 */
const SOFTWARE_SEGMENT_CHUNKS = 16;

/** The segments of a sweep over the sequence in the order it visits them. */
function sweepSegments(gpu: Gpu, cfg: LinearAttentionConfig, backwards: boolean, tile = 0): Segment[] {
  const chunks = ceilDiv(cfg.seqLen, CHUNK);
  const per = cfg.segmentChunks ?? (gpu.info.software ? SOFTWARE_SEGMENT_CHUNKS : chunks);
  const out: Segment[] = [];
  for (let begin = 0; begin < chunks; begin += per) out.push({ begin, end: Math.min(chunks, begin + per), tile });
  return backwards ? out.reverse() : out;
}

/** Where a sweep parks its state between segments: [slots, DPHI·width]; a placeholder when one segment suffices. */
function carryBuffer(gpu: Gpu, label: string, cfg: LinearAttentionConfig, width: number, slots: number): Tensor {
  const floats = sweepSegments(gpu, cfg, false).length > 1
    ? slots * packedFeatureCount(cfg.kernel, cfg.featureDim) * paddedWidth(width)
    : 4;
  return gpu.allocator.tensor(`${label}.carry`, [floats], "workspace");
}

function chunkedForward(gpu: Gpu, label: string, args: LinearAttentionForwardArgs): Dispatch {
  const f = args.featureDim, dv = args.valueDim;
  checkChunkedFeatureDim(label, f);
  // Fewer columns on GL, whose compiler unrolls the zero-initialisation of workgroup arrays (slow to compile).
  const columns = Math.min(dv, args.chunkColumns ?? (gpu.info.backend === "gl" ? 4 : CHUNK_COLUMNS));
  // The state carries a ones column (the denominator); one partner chunk and its vectors.
  const bytes = featureStateBytes(args, columns + 1, 1, 1);
  const limit = workgroupMemoryLimit(gpu);
  if (bytes > limit) throw new Error(`${label}: chunked state needs ${bytes} B of workgroup memory, limit ${limit}`);
  const tiles = ceilDiv(dv, columns);
  const carry = carryBuffer(gpu, label, args, columns + 1, tiles * args.heads * args.batch);
  const defines = { ...featureStateDefines(gpu, args, columns + 1), DVT: columns, PASS_FWD_CHUNKED: true };
  return sequence(
    label,
    sweepSegments(gpu, args, false).map((segment) =>
      makeDispatch(
        gpu,
        `${label}.${segment.begin}`,
        "linear_attention",
        "forward_chunked",
        defines,
        [makeParams(gpu, label, args, segment), args.q, args.k, args.v, args.y, args.zinv, carry],
        [tiles, args.heads, args.batch],
      )
    ),
  );
}

/**
 * Parallel variants: two dispatches encoded in order, dq (which also writes dz), then dk/dv. Chunked: a dq sweep (which
 * also writes dz) and a dk/dv sweep, each one dispatch per column tile and segment.
 */
export function linearAttentionBackward(gpu: Gpu, label: string, args: LinearAttentionBackwardArgs): Dispatch {
  const f = args.featureDim, dv = args.valueDim;
  validate(label, args, {
    q: [args.q, f],
    k: [args.k, f],
    v: [args.v, dv],
    y: [args.y, dv],
    zinv: [args.zinv, 1],
    dy: [args.dy, dv],
    dq: [args.dq, f],
    dk: [args.dk, f],
    dv: [args.dv, dv],
    dz: [args.dz, 1],
  });
  const accumulate = Boolean(args.accumulate);
  args = { ...args, variant: args.variant ?? selectLinearAttentionVariant(gpu, args) };
  if (args.variant === "chunked") return sequence(label, chunkedBackwardPasses(gpu, label, args, accumulate));
  const params = makeParams(gpu, label, args);
  const passes = [
    parallelBackwardPass(gpu, label, args, params, "backward_dq", accumulate),
    parallelBackwardPass(gpu, label, args, params, "backward_dkdv", accumulate),
  ];
  return sequence(label, passes);
}

/** Dispatches encoded in order as one. */
function sequence(label: string, passes: readonly Dispatch[]): Dispatch {
  return {
    label,
    encode(pass) {
      for (const p of passes) p.encode(pass);
    },
  };
}

function parallelBackwardPass(
  gpu: Gpu,
  label: string,
  args: LinearAttentionBackwardArgs,
  params: GPUBuffer,
  pass: "backward_dq" | "backward_dkdv",
  accumulate: boolean,
): Dispatch {
  const { entry, defines, workgroups } = parallelPass(gpu, args, pass, accumulate);
  const bindings = pass === "backward_dq"
    ? [params, args.q, args.k, args.v, args.y, args.zinv, args.dy, args.dq, args.dz]
    : [params, args.q, args.k, args.v, args.zinv, args.dy, args.dz, args.dk, args.dv];
  const suffix = pass === "backward_dq" ? "dq" : "dkdv";
  return makeDispatch(gpu, `${label}.${suffix}`, "linear_attention", entry, defines, bindings, workgroups);
}

/**
 * The chunked backward: a forwards sweep for dq (and dz) and a backwards sweep for dk and dv, one workgroup per (head,
 * batch) each. The state's dv + 1 columns go in tiles, one sweep per tile, as wide as workgroup memory allows (at most
 * 16 on CPU rasterisers, whose compiler then unrolls the column loops; chunkColumns overrides).
 */
function chunkedBackwardPasses(
  gpu: Gpu,
  label: string,
  args: LinearAttentionBackwardArgs,
  accumulate: boolean,
): Dispatch[] {
  const f = args.featureDim, dv = args.valueDim;
  checkChunkedFeatureDim(label, f);
  const limit = workgroupMemoryLimit(gpu);
  // Small on GL, whose compiler unrolls the zero-initialisation of workgroup arrays.
  const budget = gpu.info.backend === "gl" ? Math.min(8192, limit) : limit;
  // Row and partner chunks [CHUNK, f], their vectors [CHUNK, width], the state [DPHI, width].
  let fitting = Math.min(dv + 1, gpu.info.software ? 16 : Infinity);
  while (fitting > 1 && featureStateBytes(args, fitting, 2, 2) > budget) fitting--;
  const wanted = Math.min(dv + 1, args.chunkColumns ?? fitting);
  if (wanted < 1 || featureStateBytes(args, wanted, 2, 2) > limit) {
    throw new Error(`${label}: the chunked backward state does not fit workgroup memory (f=${f}, dv=${dv})`);
  }
  // Balanced tiles: 43 columns with room for 16 give 3 tiles of 15, 15 and 13, not 16, 16 and 11.
  const tiles = ceilDiv(dv + 1, wanted);
  const width = ceilDiv(dv + 1, tiles);
  const defines = { ...featureStateDefines(gpu, args, width), ACCUMULATE: accumulate, PASS_BWD_CHUNKED: true };
  const carry = carryBuffer(gpu, label, args, width, args.heads * args.batch);
  const common = [args.q, args.k, args.v, args.y, args.zinv, args.dy];
  const passes: Dispatch[] = [];
  for (const backwards of [false, true]) {
    for (let tile = 0; tile < tiles; tile++) {
      for (const segment of sweepSegments(gpu, args, backwards, tile)) {
        const name = `${label}.${backwards ? "dkdv" : "dq"}.${tile}.${segment.begin}`;
        passes.push(makeDispatch(
          gpu,
          name,
          "linear_attention",
          "backward_chunked",
          { ...defines, BACKWARDS: backwards },
          [
            makeParams(gpu, name, args, segment),
            ...common,
            ...(backwards ? [args.dk, args.dv] : [args.dq, args.dz]),
            carry,
          ],
          [args.heads, args.batch],
        ));
      }
    }
  }
  return passes;
}
