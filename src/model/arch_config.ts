/**
 * The sizes that fix every parameter shape of a model, and the error a bad one raises. Kept free of the mixer registry
 * so mixer descriptors can use it without an import cycle (src/model/config.ts adds the registry-backed validation).
 */

/** Sizes of any architecture, trainable or count-only. `mixer` is an architecture name of src/mixers/registry.ts. */
export interface ArchConfig {
  mixer: string;
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
  /**
   * RWKV only: round the wkv output (and the gradients its backward returns) to bfloat16, as the reference code does
   * (its RWKV_FLOAT_MODE=bf16). Default false: float32 throughout, like every other mixer.
   */
  wkvBf16?: boolean;
  /**
   * Mamba only: "reference" (default; the reference code's _init_weights overwrites dt_proj's init: N(0, 0.02) weight,
   * zero bias) or "original" (Mamba's own: U(±dt_rank^-0.5) weight, bias softplus⁻¹ of a log-uniform dt in [1e-3, 0.1]).
   */
  mambaInit?: "reference" | "original";
  /**
   * sliding_window only: query i attends to keys i − window ≤ j ≤ i (zoology's SlidingAttn `block_size`, default
   * DEFAULT_WINDOW = 256, its default).
   */
  window?: number;
}

/** zoology's SlidingAttn default block_size (zoology/mixers/slide_attn.py). */
export const DEFAULT_WINDOW = 256;

export const MODEL_DEFAULTS = { vocabSize: 8192, numHeads: 12, featureDim: 16, attnHeads: 1 } as const;

/** The window a sliding-window layer uses: the config's, else the default. */
export function windowOf(cfg: Pick<ArchConfig, "window">): number {
  return cfg.window ?? DEFAULT_WINDOW;
}

/** A user-facing configuration error: the message names the field, the value and what is allowed. */
export class ModelConfigError extends Error {
  override name = "ModelConfigError";
  /** The field to change (the message names it too). */
  constructor(message: string, readonly field?: keyof ArchConfig) {
    super(message);
  }
}

/** Value head dimension of Based/ReBased: floor(d / H) (5 for d = 64). */
export function valueHeadDim(cfg: Pick<ArchConfig, "dModel" | "numHeads">): number {
  return Math.floor(cfg.dModel / cfg.numHeads);
}

/** The 2 layers of every model (spec §2.1): layer 0 and layer 1 get their own mixer. */
export const N_LAYERS = 2;
