/**
 * Sweep configs: a zod-validated JSON grid over mixers × d_model × (seqLen, numKvPairs) × lr × seed, fully checked
 * before any training starts, and expanded into RunConfigs in a fixed, documented order.
 */
import { z } from "zod";
import { MIXERS } from "../model/config.ts";
import type { RunConfig } from "../train/result.ts";
import { computeRunId } from "../train/run_id.ts";
import { paperMicroBatch } from "../train/config.ts";
import { RUN_DEFAULTS, runFieldSchema } from "../train/run_fields.ts";
import { type JsonInputError, parseJsonStrict } from "../io/strict_json.ts";

/** Mixer names accepted when the caller passes none: the trainable mixers of src/model/config.ts. */
export const DEFAULT_MIXERS: readonly string[] = MIXERS;

/** The paper's number of kv pairs: N = L/4, except N = 16 at L = 128 ([R] configs/utils.py). */
export function paperNumKvPairs(seqLen: number): number {
  return seqLen === 128 ? 16 : Math.floor(seqLen / 4);
}

/** The paper's micro-batch (gradient accumulation): the one rule of src/train/config.ts. */
export const paperMicroBatchSize = paperMicroBatch;

/** A bad sweep config: every problem found, one per line, each naming the field, the value and what is allowed. */
export class SweepConfigError extends Error {
  override name = "SweepConfigError";
  constructor(readonly issues: { path: string; message: string }[], source?: string) {
    super(
      `${source ? `${source}: ` : ""}invalid sweep config (${issues.length} problem${
        issues.length === 1 ? "" : "s"
      }):\n` +
        issues.map((i) => `  - ${i.path ? `${i.path}: ` : ""}${i.message}`).join("\n"),
    );
  }
}

// Each schema carries one "expected ..." text used for every way it can fail (wrong type, missing, out of range).
const intField = (expected: string, min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.number({ error: expected }).int({ error: expected }).min(min, { error: expected }).max(max, { error: expected });
const nonEmptyList = <T extends z.ZodType>(item: T, expected: string) =>
  z.array(item, { error: expected }).min(1, { error: expected });

const KV_RULES = ["paper", "L/4"] as const;

const sequenceSchema = z.strictObject({
  seqLen: runFieldSchema("seqLen"),
  numKvPairs: runFieldSchema("numKvPairs"),
}, { error: 'expected {"seqLen": L, "numKvPairs": N}' });

interface SchemaForm {
  sequenceList: boolean;
  microBatchMap: boolean;
}

function makeSchema(mixers: readonly string[], form: SchemaForm) {
  const mixerList = mixers.join(", ");
  return z.strictObject({
    name: z.string({ error: "expected a string" }).optional(),
    description: z.string({ error: "expected a string" }).optional(),
    mixers: nonEmptyList(
      z.string({ error: `expected a mixer name (one of ${mixerList})` }).refine((m) => mixers.includes(m), {
        error: `unknown mixer; valid mixers: ${mixerList}`,
      }),
      `expected a non-empty list of mixer names (${mixerList})`,
    ),
    dModels: nonEmptyList(runFieldSchema("dModel"), "expected a non-empty list of d_model"),
    // The two accepted forms are told apart by shape (array or object) so errors keep the exact element path.
    sequences: form.sequenceList
      ? nonEmptyList(sequenceSchema, 'expected a non-empty list of {"seqLen", "numKvPairs"}')
      : z.strictObject({
        seqLens: nonEmptyList(runFieldSchema("seqLen"), "expected a non-empty list of sequence lengths"),
        numKvPairs: z.union([intField("", 1), z.enum(KV_RULES)], {
          error: 'expected an integer >= 1 or a rule: "paper" (L/4, 16 at L=128) or "L/4"',
        }),
      }, {
        error: 'expected a list of {"seqLen", "numKvPairs"} or {"seqLens": [...], "numKvPairs": N | "paper" | "L/4"}',
      }),
    lrs: nonEmptyList(runFieldSchema("lr"), "expected a non-empty list of lrs"),
    seeds: nonEmptyList(runFieldSchema("seed"), "expected a non-empty seed list"),
    trainExamples: runFieldSchema("trainExamples"),
    testExamples: runFieldSchema("testExamples"),
    epochs: runFieldSchema("epochs"),
    batchSize: runFieldSchema("batchSize"),
    microBatchSize: (form.microBatchMap
      ? z.record(z.string(), intField("expected an integer >= 1 (micro-batch size for this seqLen)", 1))
      : z.union([intField("", 1), z.literal("paper")], {
        error: 'expected an integer >= 1, "paper" (256 // (L // 512) for L >= 512) or {"<seqLen>": size}',
      })).optional(),
    vocabSize: runFieldSchema("vocabSize"),
    dataSeed: runFieldSchema("dataSeed"),
    earlyStopAccuracy: runFieldSchema("earlyStopAccuracy"),
    maxSteps: runFieldSchema("maxSteps").optional(),
    powerA: runFieldSchema("powerA").optional(),
    randomNonQueries: runFieldSchema("randomNonQueries").optional(),
    weightDecay: runFieldSchema("weightDecay").optional(),
  });
}

type RawSweepConfig = z.infer<ReturnType<typeof makeSchema>>;

/** A validated sweep config with the sequence list and defaults resolved. */
export interface SweepConfig {
  name: string | null;
  description: string | null;
  mixers: string[];
  dModels: number[];
  sequences: { seqLen: number; numKvPairs: number }[];
  lrs: number[];
  seeds: number[];
  trainExamples: number;
  testExamples: number;
  epochs: number;
  batchSize: number;
  /** Micro-batch size per sequence length (already resolved from the number / "paper" / per-L map). */
  microBatchSizes: Record<number, number>;
  vocabSize: number;
  dataSeed: number;
  earlyStopAccuracy: number;
  maxSteps: number | null;
  powerA: number;
  randomNonQueries: boolean;
  weightDecay: number;
}

export interface ParseSweepOptions {
  /** Valid mixer names (default DEFAULT_MIXERS). */
  mixers?: readonly string[];
  /** Extra per-run check (e.g. the model's own config validator): return a problem or null. Runs before training. */
  checkRun?: (config: RunConfig) => string | null;
  /** Named in error messages (usually the config file path). */
  source?: string;
}

function formatPath(path: readonly PropertyKey[]): string {
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s;
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let v = raw;
  for (const p of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

function show(value: unknown): string {
  const s = JSON.stringify(value);
  return s === undefined ? String(value) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Field names allowed in the object at `path`, for unknown-field messages. */
function knownFields(schema: ReturnType<typeof makeSchema>, path: readonly PropertyKey[]): string[] {
  if (path.length === 0) return Object.keys(schema.shape);
  if (path[0] === "sequences") return path.length === 1 ? ["seqLens", "numKvPairs"] : ["seqLen", "numKvPairs"];
  return [];
}

function zodIssues(
  raw: unknown,
  error: z.ZodError,
  schema: ReturnType<typeof makeSchema>,
): { path: string; message: string }[] {
  return error.issues.map((issue) => {
    if (issue.code === "unrecognized_keys") {
      const where = formatPath(issue.path);
      return {
        path: issue.keys.map((k) => (where ? `${where}.${k}` : k)).join(", "),
        message: `unknown field${issue.keys.length > 1 ? "s" : ""}; allowed fields: ${
          knownFields(schema, issue.path).join(", ")
        }`,
      };
    }
    const value = valueAt(raw, issue.path);
    const got = value === undefined ? "missing" : `got ${show(value)}`;
    return { path: formatPath(issue.path), message: `${got}; ${issue.message}` };
  });
}

function duplicateIssues(list: readonly unknown[], field: string): { path: string; message: string }[] {
  const seen = new Map<string, number>();
  const issues: { path: string; message: string }[] = [];
  list.forEach((v, i) => {
    const key = JSON.stringify(v);
    const first = seen.get(key);
    if (first !== undefined) {
      issues.push({
        path: `${field}[${i}]`,
        message: `got ${show(v)}, a duplicate of ${field}[${first}]; list values once`,
      });
    } else seen.set(key, i);
  });
  return issues;
}

function resolveSequences(raw: RawSweepConfig): { seqLen: number; numKvPairs: number }[] {
  const s = raw.sequences;
  if (Array.isArray(s)) return s.map((x) => ({ seqLen: x.seqLen, numKvPairs: x.numKvPairs }));
  return s.seqLens.map((seqLen) => ({
    seqLen,
    numKvPairs: s.numKvPairs === "paper"
      ? paperNumKvPairs(seqLen)
      : s.numKvPairs === "L/4"
      ? Math.floor(seqLen / 4)
      : s.numKvPairs,
  }));
}

/** Validates a parsed JSON value as a sweep config; throws SweepConfigError listing every problem. */
export function parseSweepConfig(raw: unknown, opts: ParseSweepOptions = {}): SweepConfig {
  const mixers = opts.mixers ?? DEFAULT_MIXERS;
  const rawObject = (raw !== null && typeof raw === "object" ? raw : {}) as Record<string, unknown>;
  const form: SchemaForm = {
    sequenceList: Array.isArray(rawObject.sequences),
    microBatchMap: rawObject.microBatchSize !== null && typeof rawObject.microBatchSize === "object",
  };
  const schema = makeSchema(mixers, form);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new SweepConfigError(zodIssues(raw, parsed.error, schema), opts.source);
  const c = parsed.data;
  const issues: { path: string; message: string }[] = [];
  const sequences = resolveSequences(c);
  const seqPath = (i: number, field: string) =>
    Array.isArray(c.sequences)
      ? `sequences[${i}].${field}`
      : field === "seqLen"
      ? `sequences.seqLens[${i}]`
      : `sequences.numKvPairs (at seqLen ${sequences[i].seqLen})`;

  issues.push(
    ...duplicateIssues(c.mixers, "mixers"),
    ...duplicateIssues(c.dModels, "dModels"),
    ...duplicateIssues(c.lrs, "lrs"),
    ...duplicateIssues(c.seeds, "seeds"),
    // One L may appear with several N (Figure 1's N = L/4 next to the ablation's N = 32), but each pair once.
    ...(Array.isArray(c.sequences)
      ? duplicateIssues(sequences, "sequences")
      : duplicateIssues(c.sequences.seqLens, "sequences.seqLens")),
  );
  sequences.forEach(({ seqLen, numKvPairs }, i) => {
    if (seqLen % 2 !== 0) {
      issues.push({
        path: seqPath(i, "seqLen"),
        message: `got ${seqLen}; expected an even sequence length (key-value pairs take 2 tokens each)`,
      });
    }
    if (4 * numKvPairs > seqLen) {
      issues.push({
        path: seqPath(i, "numKvPairs"),
        message:
          `got ${numKvPairs}; too many kv pairs for seqLen ${seqLen}: MQAR needs 4·numKvPairs <= seqLen (at most ${
            Math.floor(seqLen / 4)
          })`,
      });
    }
    if (c.vocabSize <= seqLen) {
      issues.push({
        path: "vocabSize",
        message: `got ${c.vocabSize}; expected a vocabulary larger than every seqLen (seqLen ${seqLen})`,
      });
    }
  });

  if (c.trainExamples < c.batchSize) {
    issues.push({
      path: "trainExamples",
      message: `got ${c.trainExamples}; expected at least batchSize ${c.batchSize} (one optimizer step per epoch)`,
    });
  }
  const microBatchSizes: Record<number, number> = {};
  const mb = c.microBatchSize;
  if (typeof mb === "object") {
    const lens = new Set(sequences.map((s) => String(s.seqLen)));
    for (const key of Object.keys(mb)) {
      if (!lens.has(key)) {
        issues.push({
          path: `microBatchSize.${key}`,
          message: `no sequence has seqLen ${key}; keys must be seqLens of this sweep (${[...lens].join(", ")})`,
        });
      }
    }
  }
  for (const { seqLen } of sequences) {
    const size = mb === undefined
      ? c.batchSize
      : mb === "paper"
      ? paperMicroBatchSize(seqLen, c.batchSize)
      : typeof mb === "number"
      ? mb
      : mb[String(seqLen)] ?? c.batchSize;
    const where = typeof mb === "object" ? `microBatchSize.${seqLen}` : `microBatchSize (at seqLen ${seqLen})`;
    if (size > c.batchSize || c.batchSize % size !== 0) {
      issues.push({
        path: where,
        message:
          `got ${size}; expected a divisor of batchSize ${c.batchSize} (gradient accumulation uses whole micro-batches)`,
      });
    }
    microBatchSizes[seqLen] = size;
  }

  const config: SweepConfig = {
    name: c.name ?? null,
    description: c.description ?? null,
    mixers: c.mixers,
    dModels: c.dModels,
    sequences,
    lrs: c.lrs,
    seeds: c.seeds,
    trainExamples: c.trainExamples,
    testExamples: c.testExamples,
    epochs: c.epochs,
    batchSize: c.batchSize,
    microBatchSizes,
    vocabSize: c.vocabSize,
    dataSeed: c.dataSeed,
    earlyStopAccuracy: c.earlyStopAccuracy,
    maxSteps: c.maxSteps ?? null,
    powerA: c.powerA ?? RUN_DEFAULTS.powerA,
    randomNonQueries: c.randomNonQueries ?? RUN_DEFAULTS.randomNonQueries,
    weightDecay: c.weightDecay ?? RUN_DEFAULTS.weightDecay,
  };

  if (issues.length === 0 && opts.checkRun) {
    // The hook sees one run per (mixer, d, L): lr and seed do not change what a model/data validator can reject.
    for (const run of expandGrid(config)) {
      if (run.lr !== config.lrs[0] || run.seed !== config.seeds[0]) continue;
      const problem = opts.checkRun(run);
      if (problem) issues.push({ path: `run ${run.mixer} d=${run.dModel} L=${run.seqLen}`, message: problem });
    }
  }
  if (issues.length) throw new SweepConfigError(issues, opts.source);
  return config;
}

/** Reads and validates a sweep config file; unreadable files and bad JSON are SweepConfigErrors too. */
export async function loadSweepConfig(
  path: string,
  opts: Omit<ParseSweepOptions, "source"> = {},
): Promise<SweepConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new SweepConfigError([{ path: "", message: `cannot read the file: ${(e as Error).message}` }], path);
  }
  let raw: unknown;
  try {
    raw = parseJsonStrict(text, path);
  } catch (e) {
    throw new SweepConfigError([{ path: "", message: (e as JsonInputError).detail }], path);
  }
  return parseSweepConfig(raw, { ...opts, source: path });
}

/**
 * Every run of the grid. Order (outermost first): sequences in config order, dModels, mixers, lrs, seeds — so the
 * cheap short sequences come first and the seeds of one (mixer, d, L, lr) cell are adjacent.
 */
export function expandGrid(config: SweepConfig): RunConfig[] {
  const runs: RunConfig[] = [];
  for (const { seqLen, numKvPairs } of config.sequences) {
    for (const dModel of config.dModels) {
      for (const mixer of config.mixers) {
        for (const lr of config.lrs) {
          for (const seed of config.seeds) {
            runs.push({
              mixer,
              dModel,
              seqLen,
              numKvPairs,
              vocabSize: config.vocabSize,
              powerA: config.powerA,
              randomNonQueries: config.randomNonQueries,
              dataSeed: config.dataSeed,
              trainExamples: config.trainExamples,
              testExamples: config.testExamples,
              batchSize: config.batchSize,
              microBatchSize: config.microBatchSizes[seqLen],
              epochs: config.epochs,
              lr,
              weightDecay: config.weightDecay,
              seed,
              earlyStopAccuracy: config.earlyStopAccuracy,
              maxSteps: config.maxSteps,
            });
          }
        }
      }
    }
  }
  return runs;
}

/** A grid point with its id and its position in the expanded grid. */
export interface PlannedRun {
  index: number;
  runId: string;
  config: RunConfig;
}

export function planRuns(runs: readonly RunConfig[]): PlannedRun[] {
  return runs.map((config, index) => ({ index, runId: computeRunId(config), config }));
}
