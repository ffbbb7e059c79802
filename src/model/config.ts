/** Model configuration: which mixer sits in layer 1 (spec §2.2) and the sizes that fix every parameter shape. */

/** Trainable architectures. Every one but `attention` has BaseConv in layer 0 (spec §2.2, §3.4 ablation table). */
export const MIXERS = [
  "attention",
  "conv_attention",
  "based",
  "rebased",
  "rebased_x2",
  "rebased_gamma",
  "rebased_gamma_beta",
  "rebased_norm",
] as const;
export type MixerName = typeof MIXERS[number];

/**
 * Architectures of the paper's Table 4 that we can count but not train: two RWKV time-mixers, BaseConv + RWKV
 * (the paper's "ConvRWKV" column) and two Mamba blocks.
 */
export const COUNT_ONLY_ARCHS = ["rwkv", "conv_rwkv", "mamba"] as const;
export type CountOnlyArch = typeof COUNT_ONLY_ARCHS[number];

export type ArchName = MixerName | CountOnlyArch;
export const ARCHS: readonly ArchName[] = [...MIXERS, ...COUNT_ONLY_ARCHS];

/** Sizes of any architecture, including the count-only ones. */
export interface ArchConfig {
  mixer: ArchName;
  dModel: number;
  /** Sequence length L; also the number of learned position embeddings (max_position_embeddings = L, spec §2.1). */
  seqLen: number;
  vocabSize: number;
  /** Heads of Based/ReBased linear attention (H = 12); value head dim is floor(dModel / numHeads). */
  numHeads: number;
  /** Query/key feature dimension per linear-attention head (F = 16). */
  featureDim: number;
  /** Heads of softmax attention (MHA default 1: the sweep does not forward num_heads, spec §3.2). */
  attnHeads: number;
}

/** A trainable model. */
export interface ModelConfig extends ArchConfig {
  mixer: MixerName;
}

export const MODEL_DEFAULTS = { vocabSize: 8192, numHeads: 12, featureDim: 16, attnHeads: 1 } as const;

export type ArchConfigInput = Pick<ArchConfig, "mixer" | "dModel" | "seqLen"> & Partial<ArchConfig>;
export type ModelConfigInput = Pick<ModelConfig, "mixer" | "dModel" | "seqLen"> & Partial<ModelConfig>;

/** A user-facing configuration error: the message names the field, the value and what is allowed. */
export class ModelConfigError extends Error {
  override name = "ModelConfigError";
  /** The field to change (the message names it too). */
  constructor(message: string, readonly field?: keyof ArchConfig) {
    super(message);
  }
}

export function isMixerName(name: string): name is MixerName {
  return (MIXERS as readonly string[]).includes(name);
}

export function isCountOnlyArch(name: string): name is CountOnlyArch {
  return (COUNT_ONLY_ARCHS as readonly string[]).includes(name);
}

/** Layer 1 is Based/ReBased linear attention (12 heads, value head dim floor(d/12)). */
export function isLinearAttention(mixer: ArchName): boolean {
  return mixer === "based" || mixer.startsWith("rebased");
}

export function isSoftmaxAttention(mixer: ArchName): boolean {
  return mixer === "attention" || mixer === "conv_attention";
}

/** Value head dimension of Based/ReBased: floor(d / H) (5 for d = 64). */
export function valueHeadDim(cfg: Pick<ArchConfig, "dModel" | "numHeads">): number {
  return Math.floor(cfg.dModel / cfg.numHeads);
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
export function validateModelConfig(cfg: ArchConfig): asserts cfg is ModelConfig {
  if (isCountOnlyArch(cfg.mixer)) {
    throw new ModelConfigError(
      `mixer "${cfg.mixer}" can only be counted (paper Table 4), not trained yet; trainable mixers: ${
        MIXERS.join(", ")
      }`,
    );
  }
  validateArchConfig(cfg);
}

/** Throws ModelConfigError naming the first invalid field. */
export function validateArchConfig(cfg: ArchConfig): void {
  const mixer: unknown = cfg.mixer;
  if (typeof mixer !== "string" || !(ARCHS as readonly string[]).includes(mixer)) {
    throw new ModelConfigError(
      `mixer: ${JSON.stringify(mixer)} is not a known mixer; valid mixers: ${MIXERS.join(", ")}` +
        ` (count-only: ${COUNT_ONLY_ARCHS.join(", ")})`,
    );
  }
  for (const field of ["dModel", "seqLen", "vocabSize", "numHeads", "featureDim", "attnHeads"] as const) {
    const value: unknown = cfg[field];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
      throw new ModelConfigError(`${field}: ${JSON.stringify(value)} must be a positive integer`, field);
    }
  }
  const { dModel, numHeads, attnHeads } = cfg;
  if (isLinearAttention(cfg.mixer) && dModel < numHeads) {
    throw new ModelConfigError(
      `dModel: ${dModel} is too small for ${cfg.mixer}: the value head dim floor(dModel/numHeads) = ` +
        `floor(${dModel}/${numHeads}) must be at least 1, so dModel must be >= ${numHeads}`,
      "dModel",
    );
  }
  if (isSoftmaxAttention(cfg.mixer) && dModel % attnHeads !== 0) {
    throw new ModelConfigError(
      `attnHeads: ${attnHeads} must divide dModel = ${dModel} for ${cfg.mixer} (head dim = dModel/attnHeads)`,
      "attnHeads",
    );
  }
  if ((cfg.mixer === "rwkv" || cfg.mixer === "conv_rwkv") && dModel < 2) {
    // RWKV's time_decay init divides by (d - 1).
    throw new ModelConfigError(`dModel: ${dModel} must be >= 2 for ${cfg.mixer}`, "dModel");
  }
  // Every element count must stay an exact integer in a float64 and fit one WebGPU-sized Float32Array.
  const field = cfg.seqLen > cfg.vocabSize ? "seqLen" : "vocabSize";
  const largest = cfg[field] * dModel;
  if (largest > 2 ** 31 - 1) {
    throw new ModelConfigError(
      `${field}: ${cfg[field]} x dModel ${dModel} = ${largest} elements is too large for one tensor ` +
        `(limit ${2 ** 31 - 1}: ${field} <= ${Math.floor((2 ** 31 - 1) / dModel)} at this dModel)`,
      field,
    );
  }
}
