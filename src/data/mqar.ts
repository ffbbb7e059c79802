/**
 * MQAR (multi-query associative recall) data, with the semantics of zoology/ReBased `_mqar` (spec §1.2–1.3).
 *
 * Layout of one example of length L with N key-value pairs (0-indexed positions):
 *   0 .. 2N−1         k_0 v_0 k_1 v_1 … k_{N−1} v_{N−1}   keys distinct in [1, V/2 − 1], values distinct in [V/2, V − 1]
 *   2N + 2·g_j        k_j, with target v_j                 g_j distinct query slots in [0, S − 1], S = (L − 2N)/2
 *   everything else   0 (filler), target IGNORE_INDEX      (random tokens in [0, V) when randomNonQueries)
 * The slots g are drawn with p_i ∝ a·i^(a−1) (i = 1..S) by numpy's legacy weighted without-replacement procedure, so
 * early slots dominate and later keys tend to be queried later. (V/2 means ⌊V/2⌋ for odd V, as in the reference.)
 *
 * Data are a pure function of (dataSeed, split, index): example i of a split is drawn from its own stream
 * new Rng(dataSeed, splitId, i). Batches are generated on the fly: no dataset cache, memory independent of the number
 * of examples, and an example does not depend on which batch it lands in. Train and test are separate streams of the
 * same data seed (the reference seeded numpy with 42 for train and 52 for test; the streams differ, the law is the
 * same). The data seed is fixed (default 42) and independent of the run seed, which only drives `epochOrder`.
 */
import { Rng } from "./rng.ts";
import { powerLawWeights, sampleDistinctUniform, sampleWeightedDistinctLegacy, weightedScratch } from "./_sampling.ts";

/** Target of unlabelled positions (PyTorch's cross-entropy ignore_index, as in the reference). */
export const IGNORE_INDEX = -100;

export type MqarSplit = "train" | "test";

/** Stream ids mixed into the seed of each example; fixed forever, since they define the data. */
export const SPLIT_IDS: Readonly<Record<MqarSplit, number>> = { train: 0, test: 1 };

/** Seed word that keeps epoch-order streams apart from data streams that share a seed value. */
const EPOCH_ORDER_STREAM = 0x45504f43; // "EPOC"

export interface MqarConfig {
  /** V: token ids are in [0, V). */
  vocabSize: number;
  /** L: tokens per example (even). */
  seqLen: number;
  /** N: key-value pairs = labelled positions per example. */
  numKvPairs: number;
  /** a in p_i ∝ a·i^(a−1); the reference uses 0.01 (≈ Zipf). */
  powerA: number;
  /** Replace the filler 0 by uniform random tokens in [0, V) (zoology's default; ReBased: false). */
  randomNonQueries: boolean;
  dataSeed: number;
  trainExamples: number;
  testExamples: number;
}

/** The ReBased sweep's N: 16 at L = 128, else L/4 (spec §1.1). */
export function defaultNumKvPairs(seqLen: number): number {
  return seqLen === 128 ? 16 : Math.floor(seqLen / 4);
}

/** The reference configuration (spec §1.1) at sequence length L. */
export function defaultMqarConfig(seqLen = 128): MqarConfig {
  return {
    vocabSize: 8192,
    seqLen,
    numKvPairs: defaultNumKvPairs(seqLen),
    powerA: 0.01,
    randomNonQueries: false,
    dataSeed: 42,
    trainExamples: 100_000,
    testExamples: 3_000,
  };
}

export class MqarConfigError extends Error {
  constructor(readonly field: keyof MqarConfig, readonly value: unknown, allowed: string) {
    super(`invalid MQAR config: ${field} = ${describe(value)}; ${allowed}`);
    this.name = "MqarConfigError";
  }
}

function describe(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

/** Largest example count: epochOrder returns indices as a Uint32Array. */
const MAX_EXAMPLES = 2 ** 32;
/** Targets are Int32; inputs are Uint32. */
const MAX_VOCAB = 2 ** 31 - 1;

/** Throws MqarConfigError (naming field, value and what is allowed) unless cfg is usable; returns cfg. */
export function validateMqarConfig(cfg: MqarConfig): MqarConfig {
  const int = (field: keyof MqarConfig, min: number, max: number, what = "") => {
    const v = cfg[field] as unknown;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      throw new MqarConfigError(field, v, `must be an integer in [${min}, ${max}]${what}`);
    }
  };
  int("vocabSize", 4, MAX_VOCAB);
  int("seqLen", 4, 2 ** 30);
  int("numKvPairs", 1, 2 ** 28);
  int("dataSeed", 0, Number.MAX_SAFE_INTEGER);
  int("trainExamples", 1, MAX_EXAMPLES);
  int("testExamples", 1, MAX_EXAMPLES);
  if (typeof cfg.powerA !== "number" || !Number.isFinite(cfg.powerA) || cfg.powerA <= 0) {
    throw new MqarConfigError("powerA", cfg.powerA, "must be a finite number > 0 (the reference uses 0.01)");
  }
  if (typeof cfg.randomNonQueries !== "boolean") {
    throw new MqarConfigError("randomNonQueries", cfg.randomNonQueries, "must be a boolean");
  }
  const { vocabSize: V, seqLen: L, numKvPairs: N } = cfg;
  if (L % 2 !== 0) throw new MqarConfigError("seqLen", L, "must be even (key/filler pairs fill the query region)");
  if (4 * N > L) {
    throw new MqarConfigError(
      "numKvPairs",
      N,
      `must satisfy 4·numKvPairs ≤ seqLen = ${L} (at most ${Math.floor(L / 4)}), so each key has a query slot`,
    );
  }
  const numKeys = Math.floor(V / 2) - 1;
  if (N > numKeys) {
    throw new MqarConfigError(
      "numKvPairs",
      N,
      `needs N distinct keys in [1, ⌊vocabSize/2⌋ − 1], but vocabSize = ${V} gives only ${numKeys}`,
    );
  }
  if (V <= L) throw new MqarConfigError("vocabSize", V, `must be > seqLen = ${L} (as the reference asserts)`);
  return cfg;
}

/** S: number of candidate query slots (even offsets of the query region). */
export function numQuerySlots(cfg: MqarConfig): number {
  return (cfg.seqLen - 2 * cfg.numKvPairs) / 2;
}

export function splitSize(cfg: MqarConfig, split: MqarSplit): number {
  return split === "train" ? cfg.trainExamples : cfg.testExamples;
}

export interface MqarExample {
  inputs: Uint32Array;
  /** Value at query positions, IGNORE_INDEX elsewhere. */
  targets: Int32Array;
}

export interface MqarBatch {
  /** [B*L] token ids, example b at b*L .. (b+1)*L. */
  inputs: Uint32Array;
  /** [B*L] targets, IGNORE_INDEX where unlabelled. */
  targets: Int32Array;
  /** Flat positions b*L + t with a label, ascending; length B*N. */
  labelPositions: Uint32Array;
  /** targets[labelPositions[i]], as unsigned token ids. */
  labelTargets: Uint32Array;
}

/** Per-config state shared by the examples of a batch. */
interface Generator {
  cfg: MqarConfig;
  splitId: number;
  size: number;
  weights: Float64Array;
  scratch: ReturnType<typeof weightedScratch>;
  keys: Uint32Array;
  values: Uint32Array;
  gaps: Uint32Array;
}

function makeGenerator(cfg: MqarConfig, split: MqarSplit): Generator {
  validateMqarConfig(cfg);
  const splitId = Object.hasOwn(SPLIT_IDS, split) ? SPLIT_IDS[split] : undefined;
  if (splitId === undefined) throw new RangeError(`MQAR split must be "train" or "test", got ${describe(split)}`);
  const S = numQuerySlots(cfg), N = cfg.numKvPairs;
  return {
    cfg,
    splitId,
    size: splitSize(cfg, split),
    weights: powerLawWeights(S, cfg.powerA),
    scratch: weightedScratch(S),
    keys: new Uint32Array(N),
    values: new Uint32Array(N),
    gaps: new Uint32Array(N),
  };
}

/** Fills inputs/targets[offset .. offset+L) with example `index`. targets must arrive filled with IGNORE_INDEX. */
function fillExample(gen: Generator, index: number, inputs: Uint32Array, targets: Int32Array, offset: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= gen.size) {
    throw new RangeError(`MQAR example index ${index} out of range [0, ${gen.size})`);
  }
  const { cfg, keys, values, gaps } = gen;
  const { vocabSize: V, seqLen: L, numKvPairs: N } = cfg;
  const half = Math.floor(V / 2);
  const rng = new Rng(cfg.dataSeed, gen.splitId, index);
  sampleDistinctUniform(rng, 1, half - 1, N, keys);
  sampleDistinctUniform(rng, half, V - 1, N, values);
  sampleWeightedDistinctLegacy(rng, gen.weights, N, gaps, 0, gen.scratch);
  for (let j = 0; j < N; j++) {
    inputs[offset + 2 * j] = keys[j];
    inputs[offset + 2 * j + 1] = values[j];
    const query = offset + 2 * N + 2 * gaps[j];
    inputs[query] = keys[j];
    targets[query] = values[j];
  }
  if (cfg.randomNonQueries) {
    // Keys and values are never 0, so the zeros are exactly the filler (zoology: inputs[inputs == 0] = randint(V)).
    for (let t = offset + 2 * N; t < offset + L; t++) if (inputs[t] === 0) inputs[t] = rng.int(0, V - 1);
  }
}

/** Example `index` of `split`: a pure function of (cfg.dataSeed, split, index) and the shape fields of cfg. */
export function generateExample(cfg: MqarConfig, split: MqarSplit, index: number): MqarExample {
  const gen = makeGenerator(cfg, split);
  const inputs = new Uint32Array(cfg.seqLen);
  const targets = new Int32Array(cfg.seqLen).fill(IGNORE_INDEX);
  fillExample(gen, index, inputs, targets, 0);
  return { inputs, targets };
}

/** The examples `indices` of `split`, concatenated, plus the flat label positions/targets the trainer uploads. */
export function generateBatch(cfg: MqarConfig, split: MqarSplit, indices: ArrayLike<number>): MqarBatch {
  const gen = makeGenerator(cfg, split);
  const B = indices.length, L = cfg.seqLen;
  const inputs = new Uint32Array(B * L);
  const targets = new Int32Array(B * L).fill(IGNORE_INDEX);
  for (let b = 0; b < B; b++) fillExample(gen, indices[b], inputs, targets, b * L);
  const numLabels = B * cfg.numKvPairs;
  const labelPositions = new Uint32Array(numLabels);
  const labelTargets = new Uint32Array(numLabels);
  let n = 0;
  for (let t = 0; t < B * L; t++) {
    if (targets[t] !== IGNORE_INDEX) {
      labelPositions[n] = t;
      labelTargets[n++] = targets[t];
    }
  }
  if (n !== numLabels) throw new Error(`MQAR batch has ${n} labels, expected ${numLabels}`);
  return { inputs, targets, labelPositions, labelTargets };
}

/**
 * Order in which epoch `epoch` visits examples 0..numExamples−1: a uniform permutation that depends on the run seed
 * (the data do not), from a stream apart from every data stream.
 */
export function epochOrder(numExamples: number, runSeed: number, epoch: number): Uint32Array {
  if (!Number.isInteger(numExamples) || numExamples < 1 || numExamples > MAX_EXAMPLES) {
    throw new RangeError(`epochOrder: numExamples must be an integer in [1, 2^32], got ${numExamples}`);
  }
  if (!Number.isSafeInteger(runSeed) || runSeed < 0) {
    throw new RangeError(`epochOrder: runSeed must be a non-negative integer, got ${runSeed}`);
  }
  if (!Number.isSafeInteger(epoch) || epoch < 0) {
    throw new RangeError(`epochOrder: epoch must be a non-negative integer, got ${epoch}`);
  }
  const order = new Uint32Array(numExamples);
  for (let i = 0; i < numExamples; i++) order[i] = i;
  new Rng(runSeed, EPOCH_ORDER_STREAM, epoch).shuffle(order);
  return order;
}
