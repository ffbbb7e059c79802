/**
 * Parameter names, shapes and initialisers of every architecture, in PyTorch state_dict order of the reference code
 * (spec §4.1), so checkpoints use the reference names. Linear weights are [out, in]; the LM head is tied to the word
 * embeddings and is not a separate parameter.
 */
import {
  type ArchConfig,
  type ArchName,
  isCountOnlyArch,
  type ModelConfig,
  validateArchConfig,
  validateModelConfig,
  valueHeadDim,
} from "./config.ts";

export type InitDescriptor =
  | { kind: "normal"; mean: number; std: number }
  | { kind: "uniform"; low: number; high: number }
  | { kind: "zeros" }
  | { kind: "ones" };

/** Name, shape and the module it belongs to (a row of the parameter breakdown). */
export interface ParamShape {
  name: string;
  shape: number[];
  /** Breakdown row, e.g. "layers.1.mixer (ReBased)". */
  module: string;
}

export interface ParamSpecEntry extends ParamShape {
  init: InitDescriptor;
}

export const WORD_EMBEDDINGS = "backbone.embeddings.word_embeddings.weight";
export const POSITION_EMBEDDINGS = "backbone.embeddings.position_embeddings.weight";
/** The tied LM head (logits = out @ WordEmb^T): never stored separately. */
export const LM_HEAD = "lm_head.weight";
export const TIE_METADATA: Readonly<Record<string, string>> = { tied: `${LM_HEAD}=${WORD_EMBEDDINGS}` };

const N_LAYERS = 2;
const INIT_STD = 0.02;
/** GPT-2 style rescale for names containing "out_proj.weight": 0.02 / sqrt(2 * n_layers) (spec §2.4). */
const OUT_PROJ_STD = INIT_STD / Math.sqrt(2 * N_LAYERS);
const SHORT_CONV_KERNEL = 3;

const ZEROS: InitDescriptor = { kind: "zeros" };
const ONES: InitDescriptor = { kind: "ones" };

/** PyTorch default for Conv1d weight and bias: kaiming_uniform(a=sqrt(5)) = U(±1/sqrt(fan_in)). */
function conv1dDefault(fanIn: number): InitDescriptor {
  const bound = 1 / Math.sqrt(fanIn);
  return { kind: "uniform", low: -bound, high: bound };
}

/** nn.Linear / nn.Embedding weight after _init_weights: N(0, 0.02), or N(0, 0.01) for *out_proj.weight. */
function weightInit(name: string): InitDescriptor {
  const std = name.includes("out_proj.weight") || name.includes("fc2.weight") ? OUT_PROJ_STD : INIT_STD;
  return { kind: "normal", mean: 0, std };
}

/** Layer-1 module label in the breakdown. */
export const MIXER_LABELS: Readonly<Record<ArchName, string>> = {
  attention: "MHA",
  conv_attention: "MHA",
  based: "Based",
  rebased: "ReBased",
  rebased_x2: "ReBased-x2",
  rebased_gamma: "ReBased-gamma",
  rebased_gamma_beta: "ReBased-gamma-beta",
  rebased_norm: "ReBased-norm",
  rwkv: "RWKVTimeMixer",
  conv_rwkv: "RWKVTimeMixer",
  mamba: "Mamba",
};

/** Count-only architectures (RWKV, Mamba) have layer-dependent or special inits that we do not describe. */
type MaybeInit = InitDescriptor | null;
type BuiltEntry = ParamShape & { init: MaybeInit };

/** Collects the entries of one module under a common name prefix. */
class ModuleBuilder {
  constructor(readonly out: BuiltEntry[], readonly prefix: string, readonly module: string) {}

  linear(name: string, outFeatures: number, inFeatures: number, bias: boolean): void {
    this.add(`${name}.weight`, [outFeatures, inFeatures], weightInit(`${this.prefix}${name}.weight`));
    if (bias) this.add(`${name}.bias`, [outFeatures], ZEROS);
  }

  layerNorm(name: string, dim: number): void {
    this.add(`${name}.weight`, [dim], ONES);
    this.add(`${name}.bias`, [dim], ZEROS);
  }

  add(name: string, shape: number[], init: MaybeInit): void {
    this.out.push({ name: `${this.prefix}${name}`, shape, module: this.module, init });
  }
}

/** Layer-0 BaseConv (spec §3.1): gating projection d -> d with bias, depthwise causal conv k=3 with bias. */
function baseConv(m: ModuleBuilder, d: number): void {
  m.linear("projection", d, d, true);
  const conv = conv1dDefault(SHORT_CONV_KERNEL); // depthwise: fan_in = (in/groups) * k = 3
  m.add("conv.conv.weight", [d, 1, SHORT_CONV_KERNEL], conv);
  m.add("conv.conv.bias", [d], conv);
}

/** MHA (spec §3.2): fused Wqkv d -> 3d and out_proj d -> d, both with bias. */
function mha(m: ModuleBuilder, d: number): void {
  m.linear("Wqkv", 3 * d, d, true);
  m.linear("out_proj", d, d, true);
}

/** Based / ReBased (spec §3.3, §3.4): bias-free projections, then ln_q/ln_k as the variant asks (registration order). */
function linearAttention(m: ModuleBuilder, cfg: ArchConfig): void {
  const d = cfg.dModel, qkDim = cfg.featureDim * cfg.numHeads, vDim = cfg.numHeads * valueHeadDim(cfg);
  m.linear("proj_q", qkDim, d, false);
  m.linear("proj_k", qkDim, d, false);
  m.linear("proj_v", vDim, d, false);
  m.linear("proj_o", d, vDim, false);
  for (const which of ["ln_q", "ln_k"]) {
    switch (cfg.mixer) {
      case "rebased": // nn.LayerNorm(F*H)
        m.layerNorm(which, qkDim);
        break;
      case "rebased_gamma": // Scaler(bias=False): only gamma is used (spec §3.4, +384 params)
        m.add(`${which}.gamma`, [qkDim], ONES);
        break;
      case "rebased_gamma_beta": // Scaler(bias=True)
        m.add(`${which}.gamma`, [qkDim], ONES);
        m.add(`${which}.beta`, [qkDim], ZEROS);
        break;
      default: // based, rebased_x2 (no transform), rebased_norm (parameter-free Normalizer)
        break;
    }
  }
}

/** RWKV v4 time-mixer (spec §3.6). Count-only: the time_* inits are layer-dependent formulas, not descriptors. */
function rwkvTimeMixer(m: ModuleBuilder, d: number): void {
  for (const name of ["time_decay", "time_first"]) m.add(name, [d], null);
  for (const name of ["time_mix_k", "time_mix_v", "time_mix_r"]) m.add(name, [1, 1, d], null);
  for (const name of ["key", "value", "receptance", "output"]) m.linear(name, d, d, false);
}

/** Mamba mixer (spec §3.5; d_inner = 2d, d_state 16, d_conv 4, dt_rank ceil(d/16)). Count-only. */
function mambaMixer(m: ModuleBuilder, d: number): void {
  const inner = 2 * d, state = 16, convK = 4, dtRank = Math.ceil(d / 16);
  m.linear("in_proj", 2 * inner, d, false);
  m.add("conv1d.weight", [inner, 1, convK], conv1dDefault(convK));
  m.add("conv1d.bias", [inner], conv1dDefault(convK));
  m.linear("x_proj", dtRank + 2 * state, inner, false);
  m.linear("dt_proj", inner, dtRank, true);
  m.add("A_log", [inner, state], null); // log(1..16) per row
  m.add("D", [inner], ONES);
  m.linear("out_proj", d, inner, false);
}

function layerMixer(m: ModuleBuilder, cfg: ArchConfig, layer: number): void {
  const d = cfg.dModel;
  switch (cfg.mixer) {
    case "attention":
      return mha(m, d);
    case "rwkv":
      return rwkvTimeMixer(m, d);
    case "mamba":
      return mambaMixer(m, d);
    default:
      if (layer === 0) return baseConv(m, d);
      if (cfg.mixer === "conv_attention") return mha(m, d);
      if (cfg.mixer === "conv_rwkv") return rwkvTimeMixer(m, d);
      return linearAttention(m, cfg);
  }
}

function layerMixerLabel(mixer: ArchName, layer: number): string {
  if (layer === 0 && mixer !== "attention" && mixer !== "rwkv" && mixer !== "mamba") return "BaseConv";
  return MIXER_LABELS[mixer];
}

function buildEntries(cfg: ArchConfig): BuiltEntry[] {
  const d = cfg.dModel, out: BuiltEntry[] = [];
  const embeddings = (name: string, rows: number, module: string) =>
    new ModuleBuilder(out, "", module).add(name, [rows, d], weightInit(name));
  embeddings(WORD_EMBEDDINGS, cfg.vocabSize, "embeddings.word");
  embeddings(POSITION_EMBEDDINGS, cfg.seqLen, "embeddings.position");
  for (let layer = 0; layer < N_LAYERS; layer++) {
    const block = `backbone.layers.${layer}.`;
    if (cfg.mixer === "mamba") {
      // MambaBlock: mixer directly under the block, then an RMSNorm (weight only).
      layerMixer(new ModuleBuilder(out, `${block}mixer.`, `layers.${layer}.mixer (Mamba)`), cfg, layer);
      new ModuleBuilder(out, block, `layers.${layer}.norm (RMSNorm)`).add("norm.weight", [d], ONES);
      continue;
    }
    // TransformerBlock registers sequence_mixer (a Hybrid wrapping `mixer`) before norm1 and norm2.
    const label = `layers.${layer}.mixer (${layerMixerLabel(cfg.mixer, layer)})`;
    layerMixer(new ModuleBuilder(out, `${block}sequence_mixer.mixer.`, label), cfg, layer);
    new ModuleBuilder(out, block, `layers.${layer}.norm1`).layerNorm("norm1", d);
    new ModuleBuilder(out, block, `layers.${layer}.norm2`).layerNorm("norm2", d);
  }
  new ModuleBuilder(out, "backbone.", "ln_f").layerNorm("ln_f", d);
  return out;
}

/** Ordered trainable parameters of a model, with initialisers (spec §2.4). */
export function paramSpec(cfg: ModelConfig): ParamSpecEntry[] {
  validateModelConfig(cfg);
  return buildEntries(cfg).map(({ name, shape, module, init }) => {
    if (init === null) throw new Error(`paramSpec: no initialiser for ${name} of ${cfg.mixer}`);
    return { name, shape, module, init };
  });
}

/** Names, shapes and modules of any architecture, including the count-only RWKV/Mamba ones. */
export function paramShapes(cfg: ArchConfig): ParamShape[] {
  validateArchConfig(cfg);
  return buildEntries(cfg).map(({ name, shape, module }) => ({ name, shape, module }));
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** True when the architecture has a trainable parameter spec (inits included). */
export function hasParamSpec(mixer: ArchName): boolean {
  return !isCountOnlyArch(mixer);
}
