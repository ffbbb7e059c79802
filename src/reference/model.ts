/**
 * float64 reference of the whole 2-layer MQAR language model (spec §2.3), forward and backward, for every mixer.
 * It composes the per-op references of this folder and is what the GPU model is checked against.
 *
 * Dataflow (TransformerBlock, pre-norm, Identity state mixer; the names in brackets are the `activations` keys):
 *   x   = WordEmb[ids] + PosEmb[t]                                       [embeddings]
 *   r   = Drop_0(x)                    (embedding dropout, p = 0.1)      [layers.0.input]
 *   for i in 0, 1:
 *     (i = 1: r = r + h, Drop_1 has p = 0)                               [layers.1.input]
 *     h = Mixer_i(LN1_i(r))                                              [layers.i.norm1], [layers.i.mixer]
 *     r = r + h                                                          [layers.i.residual]
 *     h = LN2_i(r)                     (Identity state mixer: NOT a no-op, h is added to r next)   [layers.i.norm2]
 *   r   = r + h                                                          [final_residual]
 *   out = LN_f(r)                                                        [ln_f]
 *   logits = out[labelPositions] · WordEmbᵀ   (tied head), loss = mean cross-entropy over labelled positions.
 *
 * Mixers: layer 0 is MHA for `attention`, BaseConv otherwise; layer 1 is MHA (attention, conv_attention), Based, or
 * ReBased with the q/k transform of its variant (spec §3.4 ablation table).
 *
 * Dropout (training only; with training = false nothing is dropped):
 * - embedding dropout: `dropoutRef(x, 0.1, seeds.embedding, seeds.embeddingStream ?? 0)` of ./dropout.ts over the
 *   flat [B·L, d] tensor, element index = (b·L + t)·d + c; kept elements are scaled by fround(1/0.9).
 * - attention dropout (each MHA layer i): ./attention.ts's mask with seed `seeds.attention[i]`, hashed from
 *   (seed, b, h, i_query, j_key); kept probabilities are scaled by 1/(1 − 0.1) (float64, as attention.ts does).
 * The GPU model must pass exactly these seeds (and stream) to its dropout and attention ops to reproduce the masks.
 */
import { attentionBackwardRef, type AttentionDropout, attentionForwardRef, type AttentionShape } from "./attention.ts";
import { lmHeadXentBackwardRef, lmHeadXentForwardRef } from "./cross_entropy.ts";
import { dropoutBackwardRef, dropoutRef } from "./dropout.ts";
import { embeddingBackwardRef, embeddingForwardRef } from "./embedding.ts";
import { layerNormBackwardRef, layerNormForwardRef, type LayerNormRefOptions } from "./layernorm.ts";
import {
  linearAttentionBackwardRef,
  linearAttentionForwardRef,
  type LinearAttentionKernel,
  type LinearAttentionShape,
} from "./linear_attention.ts";
import { linearBackward, linearForward } from "./matmul.ts";
import { baseConvBackwardRef, baseConvForwardRef, type BaseConvParams, type ShortConvShape } from "./short_conv.ts";
import { type MixerName, type ModelConfig, validateModelConfig, valueHeadDim } from "../model/config.ts";
import { numel, paramSpec, POSITION_EMBEDDINGS, WORD_EMBEDDINGS } from "../model/param_spec.ts";

/** Embedding dropout of layer 0 (spec §2.1). */
export const EMBED_DROPOUT = 0.1;
/** Dropout on MHA's attention probabilities (spec §3.2). */
export const ATTENTION_DROPOUT = 0.1;
/** eps of norm1, norm2, ln_f and ReBased's LayerNorm / Normalizer. */
export const LAYER_NORM_EPS = 1e-5;
const N_LAYERS = 2;

export type ParamTensor = Float64Array | Float32Array;
export type ModelParams = ReadonlyMap<string, ParamTensor>;

export interface ModelBatch {
  /** [B·L] token ids, example b at b·L .. (b+1)·L. */
  inputs: Uint32Array;
  /** Flat positions b·L + t that carry a label. */
  labelPositions: Uint32Array;
  /** Target token of each labelled position. */
  labelTargets: Uint32Array;
}

/** Seeds of the counter-based dropout masks (see the module comment for how each is used). */
export interface DropoutSeeds {
  /** Seed of the embedding dropout (./dropout.ts dropoutHash seed). */
  embedding: number;
  /** Stream word of the embedding dropout hash; default 0. */
  embeddingStream?: number;
  /** Attention-dropout seed of each layer (index = layer); only read for layers that are MHA. */
  attention: readonly number[];
}

export interface ModelForwardOptions {
  training: boolean;
  /** Required when training (the reference never invents seeds). */
  dropoutSeeds?: DropoutSeeds;
  /** Overrides of the spec's dropout probabilities (tests); both default to 0.1. */
  embedDropout?: number;
  attentionDropout?: number;
}

/**
 * What the backward pass needs; `activations` also serve to compare a GPU model layer by layer. The cache refers to the
 * caller's parameter arrays: do not modify them between modelForward and modelBackward.
 */
export interface ModelCache {
  cfg: ModelConfig;
  params: ModelParams;
  batch: ModelBatch;
  batchSize: number;
  /** Named [B·L, d] activations (keys listed in the module comment). */
  activations: Record<string, Float64Array>;
  /** Per layer, the backward of its mixer, norm1 and norm2: d(output) → d(input) and parameter gradients. */
  layers: { mixer: Backward; norm1: Backward; norm2: Backward }[];
  lnF: Backward;
  embedDropout: { p: number; seed: number; stream: number } | null;
}

export interface ModelForwardResult {
  /** Mean cross-entropy over the labelled positions. */
  loss: number;
  /** Logits at the labelled positions, [P, V]. */
  logits: Float64Array;
  /** Labelled positions whose argmax (ties → lowest index) equals the target. */
  correct: number;
  cache: ModelCache;
}

interface LayerGrads {
  du: Float64Array;
  /** Gradient by full parameter name. */
  grads: Map<string, Float64Array>;
}

type Backward = (dy: Float64Array) => LayerGrads;

interface MixerForward {
  y: Float64Array;
  backward: Backward;
}

/** Which mixer sits in `layer` (spec §2.2). */
export function layerMixerKind(mixer: MixerName, layer: number): "mha" | "base_conv" | "linear_attention" {
  if (mixer === "attention") return "mha";
  if (layer === 0) return "base_conv";
  return mixer === "conv_attention" ? "mha" : "linear_attention";
}

/** The q/k transform of a Based/ReBased variant as LayerNorm-family options (null: no transform). */
export function qkTransform(mixer: MixerName): LayerNormRefOptions | null {
  switch (mixer) {
    case "rebased": // nn.LayerNorm(192)
      return { normalize: true, gamma: true, beta: true, eps: LAYER_NORM_EPS };
    case "rebased_gamma": // Scaler(bias=False)
      return { normalize: false, gamma: true, beta: false };
    case "rebased_gamma_beta": // Scaler(bias=True)
      return { normalize: false, gamma: true, beta: true };
    case "rebased_norm": // Normalizer: (x − μ)/(sqrt(var + eps) + eps), no affine
      return { normalize: true, gamma: false, beta: false, eps: LAYER_NORM_EPS, epsOutside: true };
    default: // based, rebased_x2
      return null;
  }
}

/** Names of the γ/β parameters of a q/k transform (rebased uses LayerNorm's weight/bias, the Scaler gamma/beta). */
function qkTransformParamNames(mixer: MixerName, prefix: string): { gamma?: string; beta?: string } {
  switch (mixer) {
    case "rebased":
      return { gamma: `${prefix}.weight`, beta: `${prefix}.bias` };
    case "rebased_gamma":
      return { gamma: `${prefix}.gamma` };
    case "rebased_gamma_beta":
      return { gamma: `${prefix}.gamma`, beta: `${prefix}.beta` };
    default:
      return {};
  }
}

export function linearAttentionKernelOf(mixer: MixerName): LinearAttentionKernel {
  return mixer === "based" ? "based" : "rebased";
}

/** Reads parameters by name, checking presence and size against paramSpec. */
class ParamReader {
  readonly #sizes = new Map<string, number>();
  constructor(readonly params: ModelParams, cfg: ModelConfig) {
    for (const entry of paramSpec(cfg)) {
      const size = numel(entry.shape);
      this.#sizes.set(entry.name, size);
      const value = params.get(entry.name);
      if (!value) throw new Error(`model reference: parameter ${entry.name} is missing`);
      if (value.length !== size) {
        throw new Error(`model reference: ${entry.name} has ${value.length} values, expected ${size}`);
      }
    }
  }

  get(name: string): ParamTensor {
    if (!this.#sizes.has(name)) throw new Error(`model reference: ${name} is not a parameter of this model`);
    return this.params.get(name)!;
  }

  f64(name: string): Float64Array {
    return Float64Array.from(this.get(name));
  }
}

function layerNormLayer(
  x: Float64Array,
  gammaName: string,
  betaName: string,
  p: ParamReader,
  rows: number,
  width: number,
): MixerForward {
  const gamma = p.get(gammaName), beta = p.get(betaName);
  const opts: LayerNormRefOptions = { eps: LAYER_NORM_EPS };
  const { y } = layerNormForwardRef(x, gamma, beta, rows, width, opts);
  return {
    y,
    backward: (dy) => {
      const g = layerNormBackwardRef(x, gamma, dy, rows, width, opts);
      return { du: g.dx, grads: new Map([[gammaName, g.dgamma], [betaName, g.dbeta]]) };
    },
  };
}

function mhaLayer(
  u: Float64Array,
  prefix: string,
  p: ParamReader,
  cfg: ModelConfig,
  B: number,
  dropout: AttentionDropout | undefined,
): MixerForward {
  const d = cfg.dModel, L = cfg.seqLen, rows = B * L;
  const wqkv = p.get(`${prefix}Wqkv.weight`), bqkv = p.f64(`${prefix}Wqkv.bias`);
  const wo = p.get(`${prefix}out_proj.weight`), bo = p.f64(`${prefix}out_proj.bias`);
  const shape: AttentionShape = { B, L, d, H: cfg.attnHeads };
  const qkv = linearForward(u, wqkv, bqkv, rows, 3 * d, d);
  const { out: attn } = attentionForwardRef(qkv, shape, dropout);
  const y = linearForward(attn, wo, bo, rows, d, d);
  return {
    y,
    backward: (dy) => {
      const o = linearBackward(attn, wo, dy, rows, d, d);
      const dqkv = attentionBackwardRef(qkv, o.dx, shape, dropout);
      const i = linearBackward(u, wqkv, dqkv, rows, 3 * d, d);
      return {
        du: i.dx,
        grads: new Map([
          [`${prefix}Wqkv.weight`, i.dw],
          [`${prefix}Wqkv.bias`, i.db],
          [`${prefix}out_proj.weight`, o.dw],
          [`${prefix}out_proj.bias`, o.db],
        ]),
      };
    },
  };
}

function baseConvLayer(u: Float64Array, prefix: string, p: ParamReader, cfg: ModelConfig, B: number): MixerForward {
  const params: BaseConvParams = {
    projWeight: p.get(`${prefix}projection.weight`),
    projBias: p.get(`${prefix}projection.bias`),
    convWeight: p.get(`${prefix}conv.conv.weight`),
    convBias: p.get(`${prefix}conv.conv.bias`),
  };
  const shape: ShortConvShape = { batch: B, seqLen: cfg.seqLen, width: cfg.dModel };
  const { y } = baseConvForwardRef(u, params, shape);
  return {
    y,
    backward: (dy) => {
      const g = baseConvBackwardRef(u, params, dy, shape);
      return {
        du: g.du,
        grads: new Map([
          [`${prefix}projection.weight`, g.dprojWeight],
          [`${prefix}projection.bias`, g.dprojBias],
          [`${prefix}conv.conv.weight`, g.dconvWeight],
          [`${prefix}conv.conv.bias`, g.dconvBias],
        ]),
      };
    },
  };
}

/** Based / ReBased: q,k = proj(u) → variant transform over all H·f features → causal linear attention → proj_o. */
function linearAttentionLayer(
  u: Float64Array,
  prefix: string,
  p: ParamReader,
  cfg: ModelConfig,
  B: number,
): MixerForward {
  const d = cfg.dModel, rows = B * cfg.seqLen;
  const H = cfg.numHeads, f = cfg.featureDim, dv = valueHeadDim(cfg);
  const qkDim = H * f, vDim = H * dv;
  const wq = p.get(`${prefix}proj_q.weight`), wk = p.get(`${prefix}proj_k.weight`);
  const wv = p.get(`${prefix}proj_v.weight`), wo = p.get(`${prefix}proj_o.weight`);
  const qRaw = linearForward(u, wq, undefined, rows, qkDim, d);
  const kRaw = linearForward(u, wk, undefined, rows, qkDim, d);
  const v = linearForward(u, wv, undefined, rows, vDim, d);

  const transform = qkTransform(cfg.mixer);
  const applyTransform = (x: Float64Array, which: "ln_q" | "ln_k") => {
    if (!transform) return { y: x, backward: (dy: Float64Array) => ({ du: dy, grads: new Map() }) as LayerGrads };
    const names = qkTransformParamNames(cfg.mixer, `${prefix}${which}`);
    const gamma = names.gamma ? p.get(names.gamma) : undefined;
    const beta = names.beta ? p.get(names.beta) : undefined;
    const { y } = layerNormForwardRef(x, gamma, beta, rows, qkDim, transform);
    return {
      y,
      backward: (dy: Float64Array): LayerGrads => {
        const g = layerNormBackwardRef(x, gamma, dy, rows, qkDim, transform);
        const grads = new Map<string, Float64Array>();
        if (names.gamma) grads.set(names.gamma, g.dgamma);
        if (names.beta) grads.set(names.beta, g.dbeta);
        return { du: g.dx, grads };
      },
    };
  };
  const qT = applyTransform(qRaw, "ln_q"), kT = applyTransform(kRaw, "ln_k");
  const shape: LinearAttentionShape = {
    batch: B,
    seqLen: cfg.seqLen,
    heads: H,
    featureDim: f,
    valueDim: dv,
    kernel: linearAttentionKernelOf(cfg.mixer),
  };
  const { y: attn } = linearAttentionForwardRef(qT.y, kT.y, v, shape);
  const y = linearForward(attn, wo, undefined, rows, d, vDim);
  return {
    y,
    backward: (dy) => {
      const o = linearBackward(attn, wo, dy, rows, d, vDim);
      const a = linearAttentionBackwardRef(qT.y, kT.y, v, o.dx, shape);
      const qb = qT.backward(a.dq), kb = kT.backward(a.dk);
      const q = linearBackward(u, wq, qb.du, rows, qkDim, d);
      const k = linearBackward(u, wk, kb.du, rows, qkDim, d);
      const vb = linearBackward(u, wv, a.dv, rows, vDim, d);
      const du = q.dx;
      for (let i = 0; i < du.length; i++) du[i] += k.dx[i] + vb.dx[i];
      const grads = new Map<string, Float64Array>([
        [`${prefix}proj_q.weight`, q.dw],
        [`${prefix}proj_k.weight`, k.dw],
        [`${prefix}proj_v.weight`, vb.dw],
        [`${prefix}proj_o.weight`, o.dw],
        ...qb.grads,
        ...kb.grads,
      ]);
      return { du, grads };
    },
  };
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  return Float64Array.from(a, (v, i) => v + b[i]);
}

function addInto(target: Float64Array, source: Float64Array): void {
  for (let i = 0; i < target.length; i++) target[i] += source[i];
}

function checkBatch(cfg: ModelConfig, batch: ModelBatch): number {
  const L = cfg.seqLen, n = batch.inputs.length;
  if (n === 0 || n % L !== 0) {
    throw new Error(`model reference: ${n} input tokens is not a positive multiple of L = ${L}`);
  }
  if (batch.labelPositions.length !== batch.labelTargets.length) {
    throw new Error(
      `model reference: ${batch.labelPositions.length} label positions but ${batch.labelTargets.length} targets`,
    );
  }
  for (const pos of batch.labelPositions) {
    if (pos >= n) throw new Error(`model reference: label position ${pos} outside [0, ${n})`);
  }
  for (const target of batch.labelTargets) {
    if (target >= cfg.vocabSize) throw new Error(`model reference: target ${target} outside [0, ${cfg.vocabSize})`);
  }
  return n / L;
}

/** Forward pass: loss, logits at labelled positions, correct count, and the cache for `modelBackward`. */
export function modelForward(
  cfg: ModelConfig,
  params: ModelParams,
  batch: ModelBatch,
  options: ModelForwardOptions,
): ModelForwardResult {
  validateModelConfig(cfg);
  const p = new ParamReader(params, cfg);
  const B = checkBatch(cfg, batch);
  const d = cfg.dModel, L = cfg.seqLen, V = cfg.vocabSize, rows = B * L;
  const seeds = options.dropoutSeeds;
  if (options.training && !seeds) throw new Error("model reference: training needs dropoutSeeds");

  const activations: Record<string, Float64Array> = {};
  const layers: ModelCache["layers"] = [];
  const x = embeddingForwardRef(batch.inputs, p.get(WORD_EMBEDDINGS), p.get(POSITION_EMBEDDINGS), L, d, V);
  activations["embeddings"] = x;
  const embedP = options.embedDropout ?? EMBED_DROPOUT;
  const embedDropout = options.training && embedP > 0
    ? { p: embedP, seed: seeds!.embedding, stream: seeds!.embeddingStream ?? 0 }
    : null;
  let r = embedDropout ? dropoutRef(x, embedDropout.p, embedDropout.seed, embedDropout.stream) : x;
  let h: Float64Array | undefined;

  for (let layer = 0; layer < N_LAYERS; layer++) {
    const block = `backbone.layers.${layer}.`;
    if (h) r = add(r, h); // Drop_1 has p = 0
    activations[`layers.${layer}.input`] = r;
    const n1 = layerNormLayer(r, `${block}norm1.weight`, `${block}norm1.bias`, p, rows, d);
    activations[`layers.${layer}.norm1`] = n1.y;
    const prefix = `${block}sequence_mixer.mixer.`;
    let mixer: MixerForward;
    switch (layerMixerKind(cfg.mixer, layer)) {
      case "mha": {
        const attnP = options.attentionDropout ?? ATTENTION_DROPOUT;
        const dropout = options.training && attnP > 0 ? { p: attnP, seed: seeds!.attention[layer] } : undefined;
        if (dropout && !Number.isInteger(dropout.seed)) {
          throw new Error(`model reference: dropoutSeeds.attention[${layer}] is missing`);
        }
        mixer = mhaLayer(n1.y, prefix, p, cfg, B, dropout);
        break;
      }
      case "base_conv":
        mixer = baseConvLayer(n1.y, prefix, p, cfg, B);
        break;
      case "linear_attention":
        mixer = linearAttentionLayer(n1.y, prefix, p, cfg, B);
        break;
    }
    activations[`layers.${layer}.mixer`] = mixer.y;
    r = add(r, mixer.y);
    activations[`layers.${layer}.residual`] = r;
    const n2 = layerNormLayer(r, `${block}norm2.weight`, `${block}norm2.bias`, p, rows, d);
    h = n2.y;
    activations[`layers.${layer}.norm2`] = h;
    layers.push({ mixer: mixer.backward, norm1: n1.backward, norm2: n2.backward });
  }
  r = add(r, h!);
  activations["final_residual"] = r;
  const lnF = layerNormLayer(r, "backbone.ln_f.weight", "backbone.ln_f.bias", p, rows, d);
  activations["ln_f"] = lnF.y;
  const head = lmHeadXentForwardRef(lnF.y, p.get(WORD_EMBEDDINGS), batch.labelPositions, batch.labelTargets, {
    rows,
    d,
    V,
  });
  return {
    loss: head.loss,
    logits: head.logits,
    correct: head.correctCount,
    cache: { cfg, params, batch, batchSize: B, activations, layers, lnF: lnF.backward, embedDropout },
  };
}

/**
 * Gradients of the mean loss for every parameter (paramSpec names, float64). The word embeddings receive both the tied
 * LM head's and the embedding gather's contributions.
 */
export function modelBackward(cache: ModelCache): Map<string, Float64Array> {
  const { cfg, params, batch, batchSize: B, activations, layers, embedDropout } = cache;
  const d = cfg.dModel, L = cfg.seqLen, V = cfg.vocabSize, rows = B * L;
  const grads = new Map<string, Float64Array>();
  for (const entry of paramSpec(cfg)) grads.set(entry.name, new Float64Array(numel(entry.shape)));
  const accumulate = (g: Map<string, Float64Array>) => {
    for (const [name, value] of g) addInto(grads.get(name)!, value);
  };
  const P = batch.labelPositions.length;
  const head = lmHeadXentBackwardRef(
    activations["ln_f"],
    params.get(WORD_EMBEDDINGS)!,
    batch.labelPositions,
    batch.labelTargets,
    { rows, d, V },
    P > 0 ? 1 / P : 0,
  );
  addInto(grads.get(WORD_EMBEDDINGS)!, head.dEmb);
  const lnF = cache.lnF(head.dh);
  accumulate(lnF.grads);
  // d(final_residual) = dr; final_residual = residual_1 + LN2_1(residual_1).
  let dr = lnF.du;
  for (let layer = N_LAYERS - 1; layer >= 0; layer--) {
    const { mixer, norm1, norm2 } = layers[layer];
    // The stream after this block is residual + LN2(residual): both paths reach residual.
    const n2 = norm2(dr);
    accumulate(n2.grads);
    const dResidual = add(dr, n2.du);
    // residual = input + Mixer(LN1(input)).
    const m = mixer(dResidual);
    accumulate(m.grads);
    const n1 = norm1(m.du);
    accumulate(n1.grads);
    dr = add(dResidual, n1.du);
  }
  const dx = embedDropout ? dropoutBackwardRef(dr, embedDropout.p, embedDropout.seed, embedDropout.stream) : dr;
  const emb = embeddingBackwardRef(batch.inputs, dx, L, d, V);
  addInto(grads.get(WORD_EMBEDDINGS)!, emb.dWord);
  addInto(grads.get(POSITION_EMBEDDINGS)!, emb.dPos);
  return grads;
}
