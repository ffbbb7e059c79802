/**
 * Cross-entropy at labelled positions with the LM head tied to the word embeddings (spec §2.3, §2.5).
 * Only the P labelled rows of the final hidden states get logits (MQAR labels N of L positions per example; logits
 * over V = 8192 for every position would be L/N times larger). Forward:
 *   gather hg = h[positions] → logits = hg·Embᵀ (matmul) → per-row loss/lse/correct → batch stats + accumulators.
 * Backward (after the forward, before anything else touches `logits`):
 *   dlogits = (softmax − onehot)·gradScale in place over the logits → dhg = dlogits·Emb → dh = scatter(dhg)
 *   → dEmb += dlogitsᵀ·hg.
 * Memory: logits [P, V] f32 would be the big one (P = B·N; e.g. 512·16·8192·4 B = 256 MiB at L = 128), so the rows go
 * through in chunks of R (lmHeadChunkRows) that reuse one [R, V] buffer; with several chunks a training forward runs
 * each chunk's backward right after it (the logits are gone afterwards) and the backward is only the scatter.
 */
import type { Tensor } from "../gpu/allocator.ts";
import { type Gpu, readTensorU32, writeTensor } from "../gpu/device.ts";
import { matmul, type MatmulVariant } from "./matmul.ts";
import {
  ceilDiv,
  checkPowerOfTwo,
  type Dispatch,
  grid1d,
  makeDispatch,
  makeUniform,
  type UniformField,
  writeUniform,
} from "./_dispatch.ts";

/** Word offsets in the stats tensor (must match kernels/cross_entropy.wgsl). */
export const XENT_STATS = { meanLoss: 0, correct: 1, accLossSum: 2, accCorrect: 3, accCount: 4 } as const;
const STATS_WORDS = 8;

export interface LmHeadXentArgs {
  /** Final hidden states [rows, d] (after ln_f). */
  hidden: Tensor;
  /** Tied embedding / LM head weights [V, d]. */
  emb: Tensor;
  /** u32 [P]: row indices into `hidden`, sorted ascending (see writeLabelledPositions). */
  positions: Tensor;
  /** u32 [P]: target token per labelled position, each < V. */
  targets: Tensor;
  rows: number;
  d: number;
  V: number;
  P: number;
  /** Backward writes dL/dh here [rows, d]: overwritten (zero at unlabelled rows) unless accumulateDHidden. */
  dHidden?: Tensor;
  /** Backward accumulates dL/dEmb here [V, d] (parameter gradients always accumulate). */
  dEmb?: Tensor;
  accumulateDHidden?: boolean;
  /** Multiplies the gradient: 1/P (default) gives the mean; use 1/(labels in the optimizer step) to accumulate. */
  gradScale?: number;
  matmulVariant?: MatmulVariant;
  /** Invocations per logits row in the loss pass (a power of two); default: 16 on CPU rasterisers, 256 on GPUs. */
  rowWorkgroup?: number;
  /** Labelled rows per chunk (default lmHeadChunkRows: 16 MiB of logits per chunk on CPUs, 256 MiB on GPUs). */
  chunkRows?: number;
}

export interface LmHeadXentStats {
  /** Mean loss and correct count of the latest forward. */
  meanLoss: number;
  correct: number;
  /** Running sums since the last resetAccumulators(). */
  accLossSum: number;
  accCorrect: number;
  accCount: number;
}

export interface LmHeadXentOp {
  /** gather, logits matmul, per-row loss, stats (also adds to the accumulators). */
  readonly forward: readonly Dispatch[];
  /** in-place dlogits, dhg matmul, scatter into dHidden, dEmb matmul (accumulate). Empty without dHidden/dEmb. */
  readonly backward: readonly Dispatch[];
  /** u32 words, see XENT_STATS. */
  readonly stats: Tensor;
  /**
   * Workspace, exposed for tests and debugging: hg [R,d] and logits [R,V] of the last chunk of R rows (all P rows when
   * one chunk holds them; logits become dlogits in the backward), dhg [P,d], rowLoss [P].
   */
  readonly hg: Tensor;
  readonly logits: Tensor;
  readonly dhg: Tensor;
  readonly rowLoss: Tensor;
  /** Rows per chunk (R = P when one chunk holds every labelled row). */
  readonly chunkRows: number;
  setGradScale(scale: number): void;
  /** Zeroes the accumulators (queue.writeBuffer: ordered before the next submit). */
  resetAccumulators(): void;
  /** Reads the stats back (one readback: call every k steps, not every step). */
  readStats(): Promise<LmHeadXentStats>;
  free(): void;
}

const WG = 256;

/** Validates and uploads labelled positions: the scatter kernel needs them sorted ascending and < rows. */
export function writeLabelledPositions(gpu: Gpu, t: Tensor, positions: ArrayLike<number>, rows: number): void {
  for (let k = 0; k < positions.length; k++) {
    const r = positions[k];
    if (!Number.isInteger(r) || r < 0 || r >= rows) throw new Error(`labelled position ${r} outside [0, ${rows})`);
    if (k > 0 && r < positions[k - 1]) throw new Error(`labelled positions must be sorted ascending (index ${k})`);
  }
  writeTensor(gpu, t, Uint32Array.from(positions));
}

export function decodeXentStats(words: Uint32Array): LmHeadXentStats {
  const asF32 = new Float32Array(words.buffer, words.byteOffset, words.length);
  return {
    meanLoss: asF32[XENT_STATS.meanLoss],
    correct: words[XENT_STATS.correct],
    accLossSum: asF32[XENT_STATS.accLossSum],
    accCorrect: words[XENT_STATS.accCorrect],
    accCount: words[XENT_STATS.accCount],
  };
}

/**
 * Logits bytes per chunk of the LM head: the [rows, V] logits buffer is reused chunk after chunk, so memory stays
 * bounded whatever the batch and no buffer passes the device's binding limit. CPU rasterisers: 16 MiB (lavapipe,
 * rebased d = 64, L = 2048, B = 4: peak 168 → 119 MiB, same tokens/s within noise for 4-64 MiB chunks); GPUs: 256 MiB,
 * so large batches (P = 32768 labelled rows at the paper's B = 512, L = 256) take a few chunks, not hundreds of
 * dispatches.
 */
export const LM_HEAD_CHUNK_BYTES = { software: 16 * 2 ** 20, hardware: 256 * 2 ** 20 } as const;

/** Labelled rows per LM-head chunk: at most the chunk bytes of logits, within the binding limit, at most P. */
export function lmHeadChunkRows(
  limits: Readonly<Record<string, number>>,
  P: number,
  V: number,
  software: boolean,
): number {
  const binding = Math.min(limits.maxStorageBufferBindingSize ?? 2 ** 27, limits.maxBufferSize ?? 2 ** 28);
  const bytes = software ? LM_HEAD_CHUNK_BYTES.software : LM_HEAD_CHUNK_BYTES.hardware;
  return Math.max(1, Math.min(P, Math.floor(Math.min(binding, bytes) / (4 * V))));
}

export function createLmHeadXent(gpu: Gpu, label: string, args: LmHeadXentArgs): LmHeadXentOp {
  const { rows, d, V, P } = args;
  for (const [name, n] of [["rows", rows], ["d", d], ["V", V], ["P", P]] as const) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`${label}: ${name}=${n} must be a positive integer`);
  }
  const need = (t: Tensor | undefined, n: number, what: string) => {
    if (t && t.length < n) throw new Error(`${label}: ${what} ${t.label} has ${t.length} elements, needs ${n}`);
  };
  need(args.hidden, rows * d, "hidden");
  need(args.emb, V * d, "emb");
  need(args.positions, P, "positions");
  need(args.targets, P, "targets");
  need(args.dHidden, rows * d, "dHidden");
  need(args.dEmb, V * d, "dEmb");
  const chunkRows = args.chunkRows ?? lmHeadChunkRows(gpu.limits, P, V, gpu.info.software);
  if (!Number.isInteger(chunkRows) || chunkRows < 1) {
    throw new Error(`${label}: chunkRows must be a positive integer, got ${chunkRows}`);
  }
  const R = Math.min(chunkRows, P);
  const chunks = ceilDiv(P, R);
  const alloc = gpu.allocator;
  const hg = alloc.tensor(`${label}.hg`, [R, d], "activations");
  const logits = alloc.tensor(`${label}.logits`, [R, V], "activations");
  const dhg = alloc.tensor(`${label}.dhg`, [P, d], "activations");
  // With several chunks, each chunk's dhg rows are computed here, then placed at their offset in dhg.
  const dhgChunk = chunks > 1 ? alloc.tensor(`${label}.dhgChunk`, [R, d], "activations") : dhg;
  const rowLoss = alloc.tensor(`${label}.rowLoss`, [P], "activations");
  const rowLse = alloc.tensor(`${label}.rowLse`, [P], "activations");
  const rowCorrect = alloc.tensor(`${label}.rowCorrect`, [P], "activations");
  const stats = alloc.tensor(`${label}.stats`, [STATS_WORDS], "workspace");
  const fields = (scale: number, rowBase: number, count: number): UniformField[] => [
    ["u32", rows],
    ["u32", d],
    ["u32", V],
    ["u32", P],
    ["f32", scale],
    ["u32", rowBase],
    ["u32", count],
    ["u32", 0],
  ];
  const gradScale = args.gradScale ?? 1 / P;
  const chunkList = Array.from({ length: chunks }, (_, c) => ({ base: c * R, count: Math.min(R, P - c * R) }));
  const uniforms = chunkList.map(({ base, count }, c) =>
    makeUniform(gpu, `${label}.params${chunks > 1 ? `.${c}` : ""}`, fields(gradScale, base, count))
  );
  const variant = args.matmulVariant;
  const elementwise = (n: number) => grid1d(gpu, ceilDiv(n, WG));
  // Few lanes per row on CPU rasterisers, where every barrier of the tree reduction is expensive (rows pass: 256 lanes
  // 11 ms, 64 lanes 12.6 ms, 16 lanes 6.4 ms for 512 rows of 8192 on lavapipe).
  const rowWorkgroup = args.rowWorkgroup ?? (gpu.info.software ? 16 : WG);
  checkPowerOfTwo(label, "rowWorkgroup", rowWorkgroup);
  const training = Boolean(args.dHidden || args.dEmb);
  const name = (what: string, c: number) => `${label}.${what}${chunks > 1 ? `.${c}` : ""}`;

  const chunkForward = (c: number): Dispatch[] => {
    const { count } = chunkList[c], uniform = uniforms[c];
    return [
      makeDispatch(gpu, name("gather", c), "cross_entropy", "gather_rows", { WG, GATHER: true }, [
        uniform,
        args.positions,
        args.hidden,
        hg,
      ], elementwise(count * d)),
      matmul(gpu, name("logits", c), { a: hg, b: args.emb, out: logits, M: count, N: V, K: d, transB: true, variant }),
      makeDispatch(gpu, name("rows", c), "cross_entropy", "xent_rows", { WG: rowWorkgroup, ROWS: true }, [
        uniform,
        args.targets,
        logits,
        rowLoss,
        rowLse,
        rowCorrect,
      ], grid1d(gpu, count)),
    ];
  };
  // A chunk's backward in two parts: dlogits and dhg (what the scatter needs), then the dEmb accumulation.
  const chunkBackward = (c: number): { toDhg: Dispatch[]; dEmb: Dispatch[] } => {
    const { count } = chunkList[c], uniform = uniforms[c];
    const toDhg: Dispatch[] = [
      makeDispatch(gpu, name("grad", c), "cross_entropy", "xent_grad", { WG, GRAD: true, VEC4: V % 4 === 0 }, [
        uniform,
        args.targets,
        rowLse,
        logits,
      ], elementwise(V % 4 === 0 ? (count * V) / 4 : count * V)),
    ];
    if (args.dHidden) {
      toDhg.push(
        matmul(gpu, name("dhg", c), { a: logits, b: args.emb, out: dhgChunk, M: count, N: d, K: V, variant }),
      );
      if (chunks > 1) {
        toDhg.push(
          makeDispatch(gpu, name("place", c), "cross_entropy", "place_rows", { WG, PLACE: true }, [
            uniform,
            dhgChunk,
            dhg,
          ], elementwise(count * d)),
        );
      }
    }
    const dEmb = args.dEmb
      ? [matmul(gpu, name("dEmb", c), {
        a: logits,
        b: hg,
        out: args.dEmb,
        M: V,
        N: d,
        K: count,
        transA: true,
        accumulate: true,
        variant,
      })]
      : [];
    return { toDhg, dEmb };
  };
  const finish = makeDispatch(gpu, `${label}.finish`, "cross_entropy", "xent_finish", { WG, FINISH: true }, [
    uniforms[0],
    rowLoss,
    rowCorrect,
    stats,
  ], [1]);
  const scatter = args.dHidden
    ? makeDispatch(
      gpu,
      `${label}.scatter`,
      "cross_entropy",
      "scatter_rows",
      { WG, SCATTER: true, ACCUMULATE: Boolean(args.accumulateDHidden) },
      [uniforms[0], args.positions, dhg, args.dHidden],
      elementwise(rows * d),
    )
    : undefined;

  const forward: Dispatch[] = [];
  const backward: Dispatch[] = [];
  if (chunks === 1) {
    // One chunk: the forward leaves the logits for inspection; the backward turns them into dlogits.
    forward.push(...chunkForward(0), finish);
    if (training) {
      const { toDhg, dEmb } = chunkBackward(0);
      backward.push(...toDhg, ...(scatter ? [scatter] : []), ...dEmb);
    }
  } else {
    // Several chunks share one logits buffer, so in training each chunk's backward follows its forward at once.
    for (let c = 0; c < chunks; c++) {
      forward.push(...chunkForward(c));
      if (training) {
        const { toDhg, dEmb } = chunkBackward(c);
        forward.push(...toDhg, ...dEmb);
      }
    }
    forward.push(finish);
    if (scatter) backward.push(scatter);
  }

  return {
    forward,
    backward,
    stats,
    hg,
    logits,
    dhg,
    rowLoss,
    chunkRows: R,
    setGradScale(scale) {
      if (!Number.isFinite(scale)) throw new Error(`${label}: gradient scale must be finite`);
      chunkList.forEach(({ base, count }, c) => writeUniform(gpu, uniforms[c], fields(scale, base, count)));
    },
    resetAccumulators() {
      writeTensor(gpu, stats, new Uint32Array(STATS_WORDS));
    },
    async readStats() {
      return decodeXentStats(await readTensorU32(gpu, stats));
    },
    free() {
      for (const t of [hg, logits, dhg, rowLoss, rowLse, rowCorrect, stats]) alloc.free(t);
      if (dhgChunk !== dhg) alloc.free(dhgChunk);
      for (const u of uniforms) alloc.free(u);
    },
  };
}
