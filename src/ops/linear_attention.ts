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
 * "rows": one invocation per row with register accumulators, keys read from global memory (CPU rasterisers);
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

/**
 * Software rasterisers pay heavily for workgroup barriers, so they read keys straight from global memory; real GPUs get
 * scalar accumulators and score tiles in workgroup memory.
 */
export function defaultLinearAttentionVariant(gpu: Gpu): LinearAttentionVariant {
  return gpu.info.software ? "rows" : "smem";
}

/**
 * Sequence lengths from which the chunked variant beats the adapter's default parallel variant over a training step
 * (forward + backward), measured on lavapipe as CPU time per token (H = 12, f = 16, 2048 tokens per step):
 * dv = 5: rows 42 / 140 / 275 / 520 / 1061 µs at L = 64 / 256 / 512 / 1024 / 2048, chunked a flat 201-206 µs, crossing
 * near L = 380 (ReBased the same); dv = 42: rows 462 / 927 / 1679 µs at L = 256 / 512 / 1024, chunked 1310-1350 µs,
 * crossing near L = 800 (its state columns take three sweeps). Hardware: not measured; a guess, since the chunked
 * sweeps are sequential over L/16 chunks with only batch·heads workgroups in flight while the smem variant fills a GPU.
 */
export const CHUNKED_FROM_SEQ_LEN = { software: 384, softwareWide: 768, hardware: 1024 } as const;

/**
 * The length from which chooseLinearAttentionVariant picks chunked (wide: more than 15 value columns per head). Never on
 * GL (llvmpipe's GL compiler took 6 minutes over the f = 16 chunked pipelines).
 */
export function chunkedFromSeqLen(gpu: Gpu, valueDim: number): number {
  if (gpu.info.backend === "gl") return Infinity;
  if (!gpu.info.software) return CHUNKED_FROM_SEQ_LEN.hardware;
  return valueDim + 1 > 16 ? CHUNKED_FROM_SEQ_LEN.softwareWide : CHUNKED_FROM_SEQ_LEN.software;
}

/**
 * The variant a model should train with: chunked (O(L) per sequence) from chunkedFromSeqLen on when its state fits
 * (f ≤ 16), otherwise the adapter's default parallel variant (O(L²)).
 */
export function chooseLinearAttentionVariant(
  gpu: Gpu,
  cfg: Pick<LinearAttentionConfig, "seqLen" | "featureDim" | "valueDim">,
): LinearAttentionVariant {
  const long = cfg.seqLen >= chunkedFromSeqLen(gpu, cfg.valueDim);
  return long && cfg.featureDim <= 16 ? "chunked" : defaultLinearAttentionVariant(gpu);
}

const DEFAULT_ROWS_PER_WG = 64;
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

type Pass = "forward" | "backward_dq" | "backward_dkdv";
const PASS_DEFINE: Record<Pass, string> = {
  forward: "PASS_FORWARD",
  backward_dq: "PASS_BWD_DQ",
  backward_dkdv: "PASS_BWD_DKDV",
};

/** Entry point, defines and grid of one pass of a parallel variant. */
function parallelPass(gpu: Gpu, cfg: LinearAttentionConfig, pass: Pass, accumulate: boolean) {
  const variant = cfg.variant ?? defaultLinearAttentionVariant(gpu);
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
  return {
    entry: pass,
    defines,
    workgroups: [ceilDiv(cfg.seqLen, rowsPerWorkgroup), cfg.heads, cfg.batch] as [number, number, number],
  };
}

export function linearAttentionForward(gpu: Gpu, label: string, args: LinearAttentionForwardArgs): Dispatch {
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
const CHUNK_WG = CHUNK;

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
function featureStateDefines(cfg: LinearAttentionConfig, stateWidth: number) {
  return {
    F: cfg.featureDim,
    DV: cfg.valueDim,
    DPHI: packedFeatureCount(cfg.kernel, cfg.featureDim),
    SW: stateWidth,
    CHUNK,
    CHUNK_WG,
    REBASED: cfg.kernel === "rebased",
    FEATURE_STATE: true,
  };
}

/** Workgroup bytes of a chunked pass: state [DPHI, width], `chunks` arrays [CHUNK, f], `vectors` [CHUNK, width]. */
function featureStateBytes(cfg: LinearAttentionConfig, width: number, chunks: number, vectors: number): number {
  const features = packedFeatureCount(cfg.kernel, cfg.featureDim);
  return 4 * ((features + vectors * CHUNK) * width + chunks * CHUNK * (cfg.featureDim + 1));
}

/**
 * Chunks per dispatch of a chunked sweep on CPU rasterisers: llvmpipe silently ends an invocation after 65535 loop
 * iterations in total, and a chunk costs several hundred (the feature loops; the column loops unroll), so a sweep is
 * cut into segments of this many chunks with the state parked in a workspace between them. GPUs sweep in one dispatch.
 */
const SOFTWARE_SEGMENT_CHUNKS = 32;

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
    ? slots * packedFeatureCount(cfg.kernel, cfg.featureDim) * width
    : 1;
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
  const defines = { ...featureStateDefines(args, columns + 1), DVT: columns, PASS_FWD_CHUNKED: true };
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
  const fixed = featureStateBytes(args, 0, 2, 2), perColumn = featureStateBytes(args, 1, 0, 2);
  const fitting = Math.min(Math.floor((budget - fixed) / perColumn), gpu.info.software ? 16 : Infinity);
  const wanted = Math.min(dv + 1, args.chunkColumns ?? fitting);
  if (wanted < 1 || featureStateBytes(args, wanted, 2, 2) > limit) {
    throw new Error(`${label}: the chunked backward state does not fit workgroup memory (f=${f}, dv=${dv})`);
  }
  // Balanced tiles: 43 columns with room for 16 give 3 tiles of 15, 15 and 13, not 16, 16 and 11.
  const tiles = ceilDiv(dv + 1, wanted);
  const width = ceilDiv(dv + 1, tiles);
  const defines = { ...featureStateDefines(args, width), ACCUMULATE: accumulate, PASS_BWD_CHUNKED: true };
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
