/**
 * What a mixer is, defined once: every layer mixer (BaseConv, MHA, Based/ReBased, RWKV, ...) is a LayerDescriptor and
 * every architecture (the names users type) an ArchDescriptor of two layers. The registry (registry.ts) lists them;
 * parameter specs and counts, the float64 reference model, the analytic cost model, labels, help texts and config
 * validation are all derived from these descriptors. This half is pure (no GPU imports): the reference, the reports
 * and the analytic model use it on machines without an adapter. Each layer's GPU builder sits beside it in
 * `<mixer>_gpu.ts`, registered by the same `kind` in gpu_registry.ts.
 */
import type { ArchConfig } from "../model/arch_config.ts";

export type InitDescriptor =
  | { kind: "normal"; mean: number; std: number }
  | { kind: "uniform"; low: number; high: number }
  | { kind: "zeros" }
  | { kind: "ones" }
  /** Given values (constructor formulas such as RWKV's time_decay); the length must match the shape. */
  | { kind: "values"; values: readonly number[] }
  /** log U(low, high) (Gated DeltaNet's A_log = log U(0, 16)). */
  | { kind: "logUniform"; low: number; high: number }
  /** Mamba's dt bias: softplus⁻¹(dt) with dt = exp(U(ln low, ln high)), at least `floor`. */
  | { kind: "inverseSoftplusLogUniform"; low: number; high: number; floor: number };

/** Name, shape and the module it belongs to (a row of the parameter breakdown). */
export interface ParamShape {
  name: string;
  shape: number[];
  /** Breakdown row, e.g. "layers.1.mixer (ReBased)". */
  module: string;
}

/** null: the architecture can be counted but has no initialiser (count-only mixers). */
export interface ParamEntry extends ParamShape {
  init: InitDescriptor | null;
}

const INIT_STD = 0.02;

export const ZEROS: InitDescriptor = { kind: "zeros" };
export const ONES: InitDescriptor = { kind: "ones" };

/** PyTorch default for Conv1d weight and bias: kaiming_uniform(a=sqrt(5)) = U(±1/sqrt(fan_in)). */
export function conv1dDefault(fanIn: number): InitDescriptor {
  const bound = 1 / Math.sqrt(fanIn);
  return { kind: "uniform", low: -bound, high: bound };
}

/**
 * nn.Linear / nn.Embedding weight after the reference's _init_weights (spec §2.4): N(0, 0.02), or N(0, 0.02/sqrt(2·n))
 * for names containing out_proj.weight or fc2.weight (n = 2 layers).
 */
export function weightInit(name: string, nLayers = 2): InitDescriptor {
  const rescaled = name.includes("out_proj.weight") || name.includes("fc2.weight");
  return { kind: "normal", mean: 0, std: rescaled ? INIT_STD / Math.sqrt(2 * nLayers) : INIT_STD };
}

/** Collects the parameters of one module under a common name prefix, in registration (state_dict) order. */
export class ParamBuilder {
  constructor(readonly out: ParamEntry[], readonly prefix: string, readonly module: string) {}

  linear(name: string, outFeatures: number, inFeatures: number, bias: boolean): void {
    this.add(`${name}.weight`, [outFeatures, inFeatures], weightInit(`${this.prefix}${name}.weight`));
    if (bias) this.add(`${name}.bias`, [outFeatures], ZEROS);
  }

  layerNorm(name: string, dim: number): void {
    this.add(`${name}.weight`, [dim], ONES);
    this.add(`${name}.bias`, [dim], ZEROS);
  }

  add(name: string, shape: number[], init: InitDescriptor | null): void {
    this.out.push({ name: `${this.prefix}${name}`, shape, module: this.module, init });
  }
}

/** The adapter facts variant rules depend on (a Gpu satisfies it; tests and the analytic model pass plain objects). */
export interface AdapterTraits {
  info: { software: boolean; backend: string };
  limits: Readonly<Record<string, number>>;
}

// ---- float64 reference of one layer ------------------------------------------------------------------------------

export interface RefLayerContext {
  cfg: ArchConfig;
  /** Examples in the batch; rows = batch · seqLen. */
  batch: number;
  layer: number;
  /** Full name of a parameter of this layer, e.g. "proj_q.weight" → "backbone.layers.1.sequence_mixer.mixer.proj_q.weight". */
  name(relative: string): string;
  /** A parameter of this layer by its relative name. */
  param(relative: string): Float64Array | Float32Array;
  training: boolean;
  /** Dropout inside the mixer (MHA's attention dropout), when training and p > 0. */
  dropout?: { p: number; seed: number };
}

export interface RefLayerGrads {
  du: Float64Array;
  /** Gradient by full parameter name. */
  grads: Map<string, Float64Array>;
}

export interface RefLayerResult {
  y: Float64Array;
  backward(dy: Float64Array): RefLayerGrads;
  /** Named intermediate activations [rows, width], under the GPU builder's buffer names (those attentionMap reads). */
  activations?: Record<string, Float64Array>;
}

// ---- analytic cost model -------------------------------------------------------------------------------------------

export type FlopKind = "linear" | "lm_head" | "conv" | "attention" | "linear_attention" | "recurrence" | "elementwise";

export interface FlopTerm {
  /** e.g. "layers.1.mixer.Wqkv". */
  name: string;
  kind: FlopKind;
  forward: number;
  backward: number;
  /** The form counted where an op has several (linear attention: "parallel" or "chunked"). */
  form?: string;
}

export interface AnalyticLayerContext {
  cfg: ArchConfig;
  /** Examples per micro-batch (B). */
  batch: number;
  /** B · L. */
  rows: number;
  /** "layers.1.mixer": prefix of term and buffer names. */
  label: string;
  training: boolean;
  /** The adapter the variant rules are asked about (the graph's choices); absent: a software adapter, no limits. */
  adapter: AdapterTraits;
  /** Forces the linear-attention form (tests of the cost model); default: the op's select rule. */
  linearAttentionForm?: "parallel" | "chunked";
}

/** 2·rows·in·out forward; dW and dX backward (every Linear of the graph computes its input gradient). */
export function linearFlops(name: string, rows: number, inFeatures: number, outFeatures: number): FlopTerm {
  const f = 2 * rows * inFeatures * outFeatures;
  return { name, kind: "linear", forward: f, backward: 2 * f };
}

// ---- descriptors ---------------------------------------------------------------------------------------------------

export interface LayerDescriptor<Options = unknown> {
  /** GPU builder key (gpu_registry.ts); layers of one kind share a builder and differ by `options`. */
  kind: string;
  /** Breakdown label, e.g. "BaseConv", "MHA", "ReBased", "RWKVTimeMixer". */
  label: string;
  /** Kind-specific data the reference, the analytic model and the GPU builder share (e.g. a kernel and a transform). */
  options: Options;
  /** Parameters in the reference's registration order; `m` prefixes names with the layer's module path. */
  params(m: ParamBuilder, cfg: ArchConfig, layer: number): void;
  /** Shape constraints: throws ModelConfigError naming the field (e.g. a d the head layout cannot split). */
  validate?(cfg: ArchConfig): void;
  /** float64 forward of u [rows, d] → y [rows, d], with its backward. */
  reference(ctx: RefLayerContext, u: Float64Array): RefLayerResult;
  /** Model FLOPs of one micro-batch, forward and backward. */
  flops(ctx: AnalyticLayerContext): FlopTerm[];
  /** Every activation buffer the GPU builder allocates (name, 4-byte elements), training buffers only when training. */
  activations(ctx: AnalyticLayerContext, act: (name: string, elements: number) => void): void;
  /** Recurrent state per layer in floats for one sequence at length L (softmax attention: its KV cache). */
  stateFloats?(cfg: ArchConfig): number;
  /**
   * Values that fix this layer to "copy the previous token" (the paper's §5.5 analysis setup: layer 0's short conv
   * fixed and frozen), by relative parameter name; absent for layers that have no such form.
   */
  previousTokenParams?(cfg: ArchConfig): Record<string, Float32Array>;
  /**
   * The layer's attention matrix (the paper's §5.5), for layers that have one: which activations it is computed from
   * (GPU buffer names, also RefLayerResult.activations), and per head the row-normalised causal L×L matrix of example
   * `b` (row i: the weights query i gives keys j ≤ i; what multiplies V in the forward pass).
   */
  attentionMap?: {
    activations(cfg: ArchConfig): string[];
    heads(cfg: ArchConfig): number;
    matrix(cfg: ArchConfig, act: (name: string) => ArrayLike<number>, b: number): Float64Array[];
  };
  /**
   * Entries of the reference's state_dict that are not separate parameters (relative names): copies of a shared
   * parameter (`alias`: written and read as that parameter) and fixed buffers (`values`), so checkpoints load into
   * PyTorch with strict=True and PyTorch's files load here.
   */
  stateDictExtras?(cfg: ArchConfig): StateDictExtra[];
  /**
   * Parameters (relative names) whose mean and std the trainer records after every epoch (ReBased's ln_q/ln_k γ and β:
   * the paper's Appendix C, Figure 10).
   */
  trackedParams?(cfg: ArchConfig): string[];
}

export type StateDictExtra =
  | { name: string; shape: number[]; alias: string }
  | { name: string; shape: number[]; values: Float32Array };

/** A model users name: two layers in a block layout (spec §2.2, §2.3). */
export interface ArchDescriptor<Name extends string = string, Trainable extends boolean = boolean> {
  name: Name;
  /** Column name of the paper's Table 4 / Figure 1 (e.g. "ConvAttention"). */
  label: string;
  /** Longer name for reports where it differs (the paper's Table 1 names of the ReBased ablations). */
  paperLabel?: string;
  /** One line for help texts. */
  summary: string;
  /** "transformer": pre-norm TransformerBlock with LN1/LN2 (Identity state mixer); "mamba": the Mamba block. */
  block: "transformer" | "mamba";
  layers: readonly [LayerDescriptor, LayerDescriptor];
  /** False for architectures that can be counted (Table 4) but not trained yet. */
  trainable: Trainable;
  /** The closed form of spec §4, written independently of `params` (tests check that they agree). */
  paramFormula(cfg: ArchConfig): number;
}

/** Declares an architecture, keeping its name and trainability as literal types for the registry. */
export function defineArch<Name extends string, Trainable extends boolean>(
  arch: ArchDescriptor<Name, Trainable>,
): ArchDescriptor<Name, Trainable> {
  return arch;
}
