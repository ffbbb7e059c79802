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
 * Mixers: each layer's float64 forward/backward is its descriptor's `reference` (src/mixers/registry.ts).
 *
 * Dropout (training only; with training = false nothing is dropped):
 * - embedding dropout: `dropoutRef(x, 0.1, seeds.embedding, seeds.embeddingStream ?? 0)` of ./dropout.ts over the
 *   flat [B·L, d] tensor, element index = (b·L + t)·d + c; kept elements are scaled by fround(1/0.9).
 * - attention dropout (each MHA layer i): ./attention.ts's mask with seed `seeds.attention[i]`, hashed from
 *   (seed, b, h, i_query, j_key); kept probabilities are scaled by 1/(1 − 0.1) (float64, as attention.ts does).
 * The GPU model must pass exactly these seeds (and stream) to its dropout and attention ops to reproduce the masks.
 */
import { lmHeadXentBackwardRef, lmHeadXentForwardRef } from "./cross_entropy.ts";
import { rmsNormBackwardRef, rmsNormForwardRef } from "./mamba.ts";
import { dropoutBackwardRef, dropoutRef } from "./dropout.ts";
import { embeddingBackwardRef, embeddingForwardRef } from "./embedding.ts";
import { layerNormBackwardRef, layerNormForwardRef, type LayerNormRefOptions } from "./layernorm.ts";
import { type ModelConfig, validateModelConfig } from "../model/config.ts";
import { mixerPrefix, numel, paramSpec, POSITION_EMBEDDINGS, WORD_EMBEDDINGS } from "../model/param_spec.ts";
import { architecture } from "../mixers/registry.ts";
import { ATTENTION_DROPOUT } from "../mixers/mha.ts";
import type { RefLayerGrads, RefLayerResult } from "../mixers/descriptor.ts";

export { ATTENTION_DROPOUT } from "../mixers/mha.ts";

/** Embedding dropout of layer 0 (spec §2.1). */
export const EMBED_DROPOUT = 0.1;
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
  /** Per block, its backward: d(stream after the block) → d(stream before it) and parameter gradients. */
  layers: Backward[];
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

type LayerGrads = RefLayerGrads;
type Backward = (dy: Float64Array) => LayerGrads;
type MixerForward = RefLayerResult;

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

/** RMSNorm (weight only, eps 1e-5) of the Mamba block. */
function rmsNormLayer(x: Float64Array, weightName: string, p: ParamReader, rows: number, width: number): MixerForward {
  const weight = p.get(weightName), shape = { rows, width, eps: LAYER_NORM_EPS };
  const { y } = rmsNormForwardRef(x, weight, shape);
  return {
    y,
    backward: (dy) => {
      const g = rmsNormBackwardRef(x, weight, dy, shape);
      return { du: g.dx, grads: new Map([[weightName, g.dweight]]) };
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
  const arch = architecture(cfg.mixer);
  const p = new ParamReader(params, cfg);
  const B = checkBatch(cfg, batch);
  const d = cfg.dModel, L = cfg.seqLen, V = cfg.vocabSize, rows = B * L;
  const seeds = options.dropoutSeeds;
  if (options.training && !seeds) throw new Error("model reference: training needs dropoutSeeds");

  const activations: Record<string, Float64Array> = {};
  const layers: ModelCache["layers"] = [];
  const x = embeddingForwardRef(batch.inputs, p.get(WORD_EMBEDDINGS), p.get(POSITION_EMBEDDINGS), L, d, V);
  activations["embeddings"] = x;
  // Mamba blocks have no embedding dropout (spec §2.3).
  const embedP = arch.block === "mamba" ? 0 : options.embedDropout ?? EMBED_DROPOUT;
  const embedDropout = options.training && embedP > 0
    ? { p: embedP, seed: seeds!.embedding, stream: seeds!.embeddingStream ?? 0 }
    : null;
  let r = embedDropout ? dropoutRef(x, embedDropout.p, embedDropout.seed, embedDropout.stream) : x;

  for (let layer = 0; layer < N_LAYERS; layer++) {
    const block = `backbone.layers.${layer}.`;
    activations[`layers.${layer}.input`] = r;
    const prefix = mixerPrefix(cfg, layer);
    const attnP = options.attentionDropout ?? ATTENTION_DROPOUT;
    const dropout = options.training && attnP > 0 ? { p: attnP, seed: seeds!.attention[layer] } : undefined;
    const runMixer = (u: Float64Array) => {
      const mixer = arch.layers[layer].reference({
        cfg,
        batch: B,
        layer,
        name: (relative) => prefix + relative,
        param: (relative) => p.get(prefix + relative),
        training: options.training,
        get dropout() {
          if (dropout && !Number.isInteger(dropout.seed)) {
            throw new Error(`model reference: dropoutSeeds.attention[${layer}] is missing`);
          }
          return dropout;
        },
      }, u);
      activations[`layers.${layer}.mixer`] = mixer.y;
      for (const [name, value] of Object.entries(mixer.activations ?? {})) {
        activations[`layers.${layer}.mixer.${name}`] = value;
      }
      return mixer;
    };
    if (arch.block === "mamba") {
      // MambaBlock (spec §2.3): r ← r + Mixer(RMSNorm(r)); no LN2.
      const n = rmsNormLayer(r, `${block}norm.weight`, p, rows, d);
      activations[`layers.${layer}.norm`] = n.y;
      const mixer = runMixer(n.y);
      r = add(r, mixer.y);
      layers.push((dOut) => {
        const m = mixer.backward(dOut);
        const nb = n.backward(m.du);
        return { du: add(dOut, nb.du), grads: new Map([...m.grads, ...nb.grads]) };
      });
      continue;
    }
    // TransformerBlock, pre-norm, Identity state mixer: r ← r + Mixer(LN1(r)); r ← r + LN2(r).
    const n1 = layerNormLayer(r, `${block}norm1.weight`, `${block}norm1.bias`, p, rows, d);
    activations[`layers.${layer}.norm1`] = n1.y;
    const mixer = runMixer(n1.y);
    r = add(r, mixer.y);
    activations[`layers.${layer}.residual`] = r;
    const n2 = layerNormLayer(r, `${block}norm2.weight`, `${block}norm2.bias`, p, rows, d);
    activations[`layers.${layer}.norm2`] = n2.y;
    r = add(r, n2.y);
    layers.push((dOut) => {
      // The stream after this block is residual + LN2(residual): both paths reach residual.
      const b2 = n2.backward(dOut);
      const dResidual = add(dOut, b2.du);
      // residual = input + Mixer(LN1(input)).
      const m = mixer.backward(dResidual);
      const b1 = n1.backward(m.du);
      return { du: add(dResidual, b1.du), grads: new Map([...b2.grads, ...m.grads, ...b1.grads]) };
    });
  }
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
  let dr = lnF.du;
  for (let layer = N_LAYERS - 1; layer >= 0; layer--) {
    const g = layers[layer](dr);
    accumulate(g.grads);
    dr = g.du;
  }
  const dx = embedDropout ? dropoutBackwardRef(dr, embedDropout.p, embedDropout.seed, embedDropout.stream) : dr;
  const emb = embeddingBackwardRef(batch.inputs, dx, L, d, V);
  addInto(grads.get(WORD_EMBEDDINGS)!, emb.dWord);
  addInto(grads.get(POSITION_EMBEDDINGS)!, emb.dPos);
  return grads;
}
