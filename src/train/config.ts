/** Run configuration: zod schema for JSON configs and flags, defaults, and cross-field validation. */
import type { z } from "zod";
import { defaultNumKvPairs, type MqarConfig, MqarConfigError, validateMqarConfig } from "../data/mqar.ts";
import { isMixerName, makeModelConfig, MIXERS, type ModelConfig, ModelConfigError } from "../model/config.ts";
import type { RunConfig } from "./result.ts";
import { parseJsonStrict } from "../io/strict_json.ts";
import { RUN_DEFAULTS, runConfigInputSchema } from "./run_fields.ts";
import { architecture, findArchitecture } from "../mixers/registry.ts";
import { mixerPrefix } from "../model/param_spec.ts";

/** A bad run configuration: the message names the field, the value and what is allowed. */
export class RunConfigError extends Error {
  override name = "RunConfigError";
}

/** Every field optional (a config file and flags are merged over the defaults); built from run_fields.ts. */
export const runConfigSchema = runConfigInputSchema();

export type RunConfigInput = Partial<RunConfig>;

export { RUN_DEFAULTS } from "./run_fields.ts";

/**
 * The reference code's micro-batch rule (spec §2.5): 256 // (L // 512) for L ≥ 512, else the whole batch. Where that
 * is not a divisor of the batch (L = 1536 gives 85) or is 0 (L > 131072), the largest divisor of the batch below it is
 * taken, so the default never makes a valid config invalid; for the paper's L and batch 512 it is the rule itself.
 */
export function paperMicroBatch(seqLen: number, batchSize: number): number {
  if (seqLen < 512) return batchSize;
  const target = Math.max(1, Math.min(batchSize, Math.floor(256 / Math.floor(seqLen / 512))));
  for (let m = target; m > 1; m--) if (batchSize % m === 0) return m;
  return 1;
}

function describeIssue(issue: z.core.$ZodIssue, input: unknown): string {
  const path = issue.path.join(".") || "(config)";
  let value: unknown = input;
  for (const key of issue.path) value = (value as Record<PropertyKey, unknown> | undefined)?.[key as PropertyKey];
  // JSON.stringify writes Infinity (JSON's 1e999) and NaN as null: show the number itself.
  const shown = value === undefined
    ? "nothing"
    : typeof value === "number" && !Number.isFinite(value)
    ? `${value} (out of the float64 range)`
    : JSON.stringify(value);
  if (issue.code === "invalid_value" && "values" in issue && !issue.message.startsWith("expected")) {
    return `${path}: got ${shown}, expected one of ${(issue.values as unknown[]).join(", ")}`;
  }
  if (issue.code === "unrecognized_keys") {
    return `unknown field(s) ${issue.keys.join(", ")}; allowed: ${Object.keys(runConfigSchema.shape).join(", ")}`;
  }
  return `${path}: got ${shown}, ${issue.message.replace(/^Invalid input: /, "")}`;
}

/** Validates a partial config (from JSON or flags), naming the first bad field. */
export function parseRunConfigInput(input: unknown, source = "config"): RunConfigInput {
  const r = runConfigSchema.safeParse(input);
  if (!r.success) throw new RunConfigError(`${source}: ${describeIssue(r.error.issues[0], input)}`);
  return r.data as RunConfigInput;
}

/** Merges inputs over the defaults (later inputs win) and checks cross-field constraints. */
export function resolveRunConfig(...inputs: RunConfigInput[]): RunConfig {
  const merged: RunConfigInput = Object.assign({}, ...inputs);
  const seqLen = merged.seqLen ?? RUN_DEFAULTS.seqLen;
  const batchSize = merged.batchSize ?? RUN_DEFAULTS.batchSize;
  const cfg: RunConfig = {
    ...RUN_DEFAULTS,
    numKvPairs: defaultNumKvPairs(seqLen),
    microBatchSize: paperMicroBatch(seqLen, batchSize),
    ...merged,
  } as RunConfig;
  if (cfg.microBatchSize > cfg.batchSize || cfg.batchSize % cfg.microBatchSize !== 0) {
    throw new RunConfigError(
      `microBatchSize: got ${cfg.microBatchSize}, expected a divisor of batchSize ${cfg.batchSize}`,
    );
  }
  if (cfg.trainExamples < cfg.batchSize) {
    throw new RunConfigError(
      `trainExamples: got ${cfg.trainExamples}, expected at least batchSize ${cfg.batchSize} ` +
        `(an epoch runs whole batches; lower --batch-size or raise --train-examples)`,
    );
  }
  if (cfg.fixPrevTokenConv && !frozenParams(cfg)) {
    const able = MIXERS.filter((m) => architecture(m).layers[0].previousTokenParams);
    throw new RunConfigError(
      `fixPrevTokenConv: ${cfg.mixer} has no short convolution in layer 0 to fix; mixers with one: ${able.join(", ")}`,
    );
  }
  try {
    validateMqarConfig(mqarConfigOf(cfg));
    modelConfigOf(cfg);
  } catch (e) {
    if (e instanceof MqarConfigError || e instanceof ModelConfigError) throw new RunConfigError(e.message);
    throw e;
  }
  return cfg;
}

/**
 * The parameters a run keeps fixed, by full name, with their values: layer 0's previous-token conv with
 * fixPrevTokenConv (null when that layer has no such form), else none.
 */
export function frozenParams(cfg: RunConfig): Map<string, Float32Array> | null {
  if (!cfg.fixPrevTokenConv) return new Map();
  const layer = findArchitecture(cfg.mixer)?.layers[0];
  const values = layer?.previousTokenParams?.(modelConfigOf(cfg));
  if (!values) return null;
  return new Map(Object.entries(values).map(([name, v]) => [mixerPrefix(modelConfigOf(cfg), 0) + name, v]));
}

export function mqarConfigOf(cfg: RunConfig): MqarConfig {
  return {
    vocabSize: cfg.vocabSize,
    seqLen: cfg.seqLen,
    numKvPairs: cfg.numKvPairs,
    powerA: cfg.powerA,
    randomNonQueries: cfg.randomNonQueries,
    dataSeed: cfg.dataSeed,
    trainExamples: cfg.trainExamples,
    testExamples: cfg.testExamples,
  };
}

export function modelConfigOf(cfg: RunConfig): ModelConfig {
  if (!isMixerName(cfg.mixer)) {
    throw new RunConfigError(`mixer: got "${cfg.mixer}", expected one of ${MIXERS.join(", ")}`);
  }
  return makeModelConfig({
    mixer: cfg.mixer,
    dModel: cfg.dModel,
    seqLen: cfg.seqLen,
    vocabSize: cfg.vocabSize,
    wkvBf16: cfg.wkvBf16,
    mambaInit: cfg.mambaInit,
    window: cfg.window,
  });
}

/** Reads and validates a JSON config file. */
export async function loadRunConfigFile(path: string): Promise<RunConfigInput> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new RunConfigError(`config file ${path}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = parseJsonStrict(text, `config file ${path}`);
  } catch (e) {
    throw new RunConfigError((e as Error).message);
  }
  return parseRunConfigInput(json, path);
}

/** Cosine annealing stepped per epoch, T_max = epochs, eta_min = 0, no warmup (spec §2.5). */
export function cosineLr(baseLr: number, epoch: number, epochs: number): number {
  return baseLr * (1 + Math.cos((Math.PI * epoch) / epochs)) / 2;
}
