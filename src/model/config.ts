/**
 * Model configuration: which architecture (src/mixers/registry.ts) and the sizes that fix every parameter shape, with
 * validation naming the field. The mixer names and everything about them come from the registry.
 */
import { ARCHITECTURES, type ArchName, findArchitecture, type MixerName } from "../mixers/registry.ts";
import { type ArchConfig as BaseArchConfig, MODEL_DEFAULTS, ModelConfigError } from "./arch_config.ts";

export { MODEL_DEFAULTS, ModelConfigError, valueHeadDim } from "./arch_config.ts";
export type { ArchName, MixerName } from "../mixers/registry.ts";

/** Trainable architectures, in registry order (the paper's order). */
export const MIXERS = ARCHITECTURES.filter((a) => a.trainable).map((a) =>
  a.name
) as MixerName[] as readonly MixerName[];

/** Architectures of the paper's Table 4 that can be counted but not trained yet. */
export const COUNT_ONLY_ARCHS: readonly ArchName[] = ARCHITECTURES.filter((a) => !a.trainable).map((a) => a.name);

export const ARCHS: readonly ArchName[] = ARCHITECTURES.map((a) => a.name);

/** Sizes of any architecture, including the count-only ones. */
export interface ArchConfig extends BaseArchConfig {
  mixer: ArchName;
}

/** A trainable model. */
export interface ModelConfig extends ArchConfig {
  mixer: MixerName;
}

export type ArchConfigInput = Pick<ArchConfig, "mixer" | "dModel" | "seqLen"> & Partial<ArchConfig>;
export type ModelConfigInput = Pick<ModelConfig, "mixer" | "dModel" | "seqLen"> & Partial<ModelConfig>;

export function isMixerName(name: string): name is MixerName {
  return (MIXERS as readonly string[]).includes(name);
}

export function isCountOnlyArch(name: string): boolean {
  return (COUNT_ONLY_ARCHS as readonly string[]).includes(name);
}

/** "name: summary" lines of the trainable (and, with `countOnly`, the count-only) architectures, for help texts. */
export function mixerHelp(indent: string, countOnly = false): string {
  const archs = ARCHITECTURES.filter((a) => a.trainable || countOnly);
  const width = Math.max(...archs.map((a) => a.name.length));
  return archs.map((a) => `${indent}${a.name.padEnd(width)}  ${a.summary}${a.trainable ? "" : " (count-only)"}`)
    .join("\n");
}

/** Drops fields set to undefined (e.g. absent flags) so they fall back to the defaults instead of erasing them. */
function definedFields<T extends object>(input: T): T {
  return Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) as T;
}

/** Fills defaults and validates an architecture (trainable or count-only). */
export function makeArchConfig(input: ArchConfigInput): ArchConfig {
  const cfg: ArchConfig = { ...MODEL_DEFAULTS, ...definedFields(input) };
  validateArchConfig(cfg);
  return cfg;
}

/** Fills defaults and validates a trainable model configuration. */
export function makeModelConfig(input: ModelConfigInput): ModelConfig {
  const cfg: ModelConfig = { ...MODEL_DEFAULTS, ...definedFields(input) };
  validateModelConfig(cfg);
  return cfg;
}

/** Throws ModelConfigError unless `cfg` is a trainable model configuration. */
export function validateModelConfig(cfg: BaseArchConfig): asserts cfg is ModelConfig {
  const arch = findArchitecture(cfg.mixer);
  if (arch && !arch.trainable) {
    throw new ModelConfigError(
      `mixer "${cfg.mixer}" can only be counted (paper Table 4), not trained yet; trainable mixers: ${
        MIXERS.join(", ")
      }`,
      "mixer",
    );
  }
  validateArchConfig(cfg);
}

/** Throws ModelConfigError naming the first invalid field. */
/** Whether an architecture has a layer that reads ArchConfig.window (a sliding window). */
export function hasWindow(mixer: string): boolean {
  return Boolean(findArchitecture(mixer)?.layers.some((l) => (l.options as { windowed?: boolean } | null)?.windowed));
}

export function validateArchConfig(cfg: BaseArchConfig): asserts cfg is ArchConfig {
  const mixer: unknown = cfg.mixer;
  const arch = typeof mixer === "string" ? findArchitecture(mixer) : undefined;
  if (!arch) {
    throw new ModelConfigError(
      `mixer: ${JSON.stringify(mixer)} is not a known mixer; valid mixers: ${MIXERS.join(", ")}` +
        ` (count-only: ${COUNT_ONLY_ARCHS.join(", ")})`,
      "mixer",
    );
  }
  for (const field of ["dModel", "seqLen", "vocabSize", "numHeads", "featureDim", "attnHeads"] as const) {
    const value: unknown = cfg[field];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
      throw new ModelConfigError(`${field}: ${JSON.stringify(value)} must be a positive integer`, field);
    }
  }
  if (cfg.wkvBf16 !== undefined && typeof cfg.wkvBf16 !== "boolean") {
    throw new ModelConfigError(`wkvBf16: ${JSON.stringify(cfg.wkvBf16)} must be true or false`, "wkvBf16");
  }
  if (cfg.mambaInit !== undefined && cfg.mambaInit !== "reference" && cfg.mambaInit !== "original") {
    throw new ModelConfigError(
      `mambaInit: ${JSON.stringify(cfg.mambaInit)} must be "reference" or "original"`,
      "mambaInit",
    );
  }
  if (cfg.window !== undefined) {
    if (typeof cfg.window !== "number" || !Number.isSafeInteger(cfg.window) || cfg.window < 0) {
      throw new ModelConfigError(`window: ${JSON.stringify(cfg.window)} must be a non-negative integer`, "window");
    }
    if (!hasWindow(arch.name)) {
      const windowed = ARCHITECTURES.filter((a) => hasWindow(a.name));
      throw new ModelConfigError(
        `window: ${cfg.mixer} has no sliding window; mixers with one: ${windowed.map((a) => a.name).join(", ")}`,
        "window",
      );
    }
  }
  // Each layer's own shape constraints (e.g. a d its head layout cannot split).
  for (const layer of new Set(arch.layers)) layer.validate?.(cfg);
  // Every element count must stay an exact integer in a float64 and fit one WebGPU-sized Float32Array.
  const field = cfg.seqLen > cfg.vocabSize ? "seqLen" : "vocabSize";
  const largest = cfg[field] * cfg.dModel;
  if (largest > 2 ** 31 - 1) {
    throw new ModelConfigError(
      `${field}: ${cfg[field]} x dModel ${cfg.dModel} = ${largest} elements is too large for one tensor ` +
        `(limit ${2 ** 31 - 1}: ${field} <= ${Math.floor((2 ** 31 - 1) / cfg.dModel)} at this dModel)`,
      field,
    );
  }
}
