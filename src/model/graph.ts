/**
 * The static graph of the 2-layer MQAR language model (spec §2.3) for one micro-batch size: every buffer and bind group
 * is created once; a training micro-batch is `forward` + `backward` encoded into one command buffer, with no readback.
 *
 *   x = WordEmb[ids] + PosEmb[t];  r = Drop0.1(x)
 *   per block i: h = Mixer_i(LN1_i(r)); r = r + h; h = LN2_i(r); r = r + h   (the Identity state mixer adds LN2(r))
 *   out = LN_f(r);  loss = CE(out[labelled] · WordEmbᵀ)
 */
import type { Tensor } from "../gpu/allocator.ts";
import { type Gpu, writeTensor } from "../gpu/device.ts";
import type { MqarBatch } from "../data/mqar.ts";
import { type Dispatch, submit } from "../ops/_dispatch.ts";
import { createLmHeadXent, type LmHeadXentOp } from "../ops/cross_entropy.ts";
import { createDropoutBackward, createDropoutForward, type DropoutForward } from "../ops/dropout.ts";
import { createAdd, createCopy } from "../ops/elementwise.ts";
import {
  buildEmbeddingIndex,
  createEmbeddingBackward,
  createEmbeddingForward,
  type EmbeddingIndexLayout,
  embeddingIndexLayout,
} from "../ops/embedding.ts";
import { createLayerNormBackward, createLayerNormForward } from "../ops/layernorm.ts";
import { mixSeed } from "../data/rng.ts";
import { architecture } from "../mixers/registry.ts";
import { gpuBuilder } from "../mixers/gpu_registry.ts";
import { selectMatmulVariant } from "../ops/matmul.ts";
import type { MixerGraph } from "../mixers/types.ts";
import type { ModelConfig } from "./config.ts";
import type { ParamSlot, ParamStore } from "./parameters.ts";
import { createRmsNorm, createRmsNormBackward } from "../ops/mamba.ts";
import { mixerPrefix, POSITION_EMBEDDINGS, WORD_EMBEDDINGS } from "./param_spec.ts";

export const EMBED_DROPOUT = 0.1;
const LN_EPS = 1e-5;

export interface GraphOptions {
  /** Build the backward pass and apply dropout. */
  training: boolean;
  /** Examples per micro-batch. */
  batch: number;
  /** Labelled positions per example (MQAR: N). */
  labelsPerExample: number;
  /** Shares activation buffers between graphs that never run at the same time (train and eval). */
  arena?: Map<string, Tensor>;
  /**
   * Forces an op's variant in every layer that has the op, by op name (e.g. { delta_rule: "chunked" }); default: the
   * adapter's select rules. For tests and side-by-side benchmarks.
   */
  variants?: Readonly<Record<string, string>>;
}

export interface ModelGraph {
  readonly cfg: ModelConfig;
  readonly batch: number;
  readonly rows: number;
  readonly training: boolean;
  readonly forward: readonly Dispatch[];
  readonly backward: readonly Dispatch[];
  readonly xent: LmHeadXentOp;
  /** The variant each op runs ("matmul", "layers.1.mixer.attn", ...): what the adapter's select rules chose. */
  readonly variants: Readonly<Record<string, string>>;
  /** Uploads ids, labels and the embedding-gradient index of a micro-batch (queue writes, no readback). */
  upload(batch: MqarBatch): void;
  /** Fresh dropout masks for the next micro-batch. */
  setSeed(seed: number): void;
  /** Encodes forward (+ backward when training) into one command buffer and submits it. */
  run(): void;
}

export function buildModelGraph(gpu: Gpu, cfg: ModelConfig, params: ParamStore, options: GraphOptions): ModelGraph {
  const { training, batch } = options;
  const L = cfg.seqLen, d = cfg.dModel, V = cfg.vocabSize;
  const rows = batch * L;
  const P = batch * options.labelsPerExample;
  const alloc = gpu.allocator;
  const arena = options.arena ?? new Map<string, Tensor>();
  const activation = (name: string, shape: number[]): Tensor => {
    const n = shape.reduce((a, b) => a * b, 1);
    const existing = arena.get(name);
    if (existing && existing.length >= n) return existing;
    if (existing) throw new Error(`activation ${name}: arena buffer too small (${existing.length} < ${n})`);
    const t = alloc.tensor(name, shape, "activations");
    arena.set(name, t);
    return t;
  };
  const wide = (name: string) => activation(name, [rows, d]);
  const word = params.get(WORD_EMBEDDINGS), pos = params.get(POSITION_EMBEDDINGS);
  const ids = alloc.tensor("batch.ids", [rows], "workspace");
  const positions = alloc.tensor("batch.label_positions", [P], "workspace");
  const targets = alloc.tensor("batch.label_targets", [P], "workspace");
  const layout: EmbeddingIndexLayout | null = training ? embeddingIndexLayout(rows, V) : null;
  const embIndex = layout ? alloc.tensor("batch.embedding_index", [layout.words], "workspace") : null;
  const indexHost = layout ? new Uint32Array(layout.words) : null;

  const forward: Dispatch[] = [];
  const backward: Dispatch[] = [];
  const arch = architecture(cfg.mixer);
  const mamba = arch.block === "mamba";
  // Forward buffers: the residual stream after each update (transformer blocks update it twice per layer, Mamba blocks
  // once), and the norms' outputs with their row statistics.
  const r = Array.from({ length: mamba ? 3 : 5 }, (_, i) => wide(`r${i}`));
  forward.push(createEmbeddingForward(gpu, "embed", {
    ids,
    wordEmb: word.param,
    posEmb: pos.param,
    out: r[0],
    batch,
    seqLen: L,
    dim: d,
    vocab: V,
  }));
  let embedDropout: DropoutForward | null = null;
  // Mamba blocks have no embedding dropout (spec §2.3).
  if (training && !mamba) {
    embedDropout = createDropoutForward(gpu, "embed.dropout", { x: r[0], y: r[0], p: EMBED_DROPOUT, stream: 0 });
    forward.push(embedDropout);
  }

  interface Norm {
    x: Tensor;
    y: Tensor;
    mean: Tensor;
    rstd: Tensor;
    gamma: ReturnType<ParamStore["get"]>;
    beta: ReturnType<ParamStore["get"]>;
    label: string;
  }
  const norm = (label: string, prefix: string, x: Tensor, y: Tensor): Norm => {
    const n: Norm = {
      x,
      y,
      mean: activation(`${label}.mean`, [rows]),
      rstd: activation(`${label}.rstd`, [rows]),
      gamma: params.get(`${prefix}.weight`),
      beta: params.get(`${prefix}.bias`),
      label,
    };
    forward.push(createLayerNormForward(gpu, label, {
      x,
      y,
      gammaParam: n.gamma.param,
      betaParam: n.beta.param,
      mean: n.mean,
      rstd: n.rstd,
      rows,
      width: d,
      eps: LN_EPS,
    }));
    return n;
  };
  /** dx (+)= LayerNorm backward of dy; accumulates the affine parameters' gradients. */
  const normBackward = (n: Norm, dy: Tensor, dx: Tensor, accumulateDx: boolean): Dispatch =>
    createLayerNormBackward(gpu, `${n.label}.bwd`, {
      x: n.x,
      dy,
      dx,
      accumulateDx,
      gammaParam: n.gamma.param,
      mean: n.mean,
      rstd: n.rstd,
      dgamma: n.gamma.grad,
      dbeta: n.beta.grad,
      rows,
      width: d,
      eps: LN_EPS,
    });

  // Gradient buffers shared by both blocks (backward runs one block at a time).
  const gA = training ? wide("grad.a") : r[0];
  const gB = training ? wide("grad.b") : r[0];
  const dMixerIn = training ? wide("grad.mixer_in") : r[0];
  const mixerOut = wide("mixer_out");
  const variants: Record<string, string> = { matmul: selectMatmulVariant(gpu) };
  const buildMixer = (i: number, input: Tensor): MixerGraph => {
    const paramPrefix = mixerPrefix(cfg, i);
    const layer = arch.layers[i];
    const mixer = gpuBuilder(layer)({
      gpu,
      cfg,
      layer,
      layerIndex: i,
      batch,
      rows,
      label: `layers.${i}.mixer`,
      param: (name) => params.get(paramPrefix + name),
      input,
      output: mixerOut,
      dOutput: gB,
      dInput: dMixerIn,
      training,
      activation: (name, shape) => activation(`layers.${i}.mixer.${name}`, shape),
      variants: options.variants,
    });
    for (const [op, variant] of Object.entries(mixer.variants ?? {})) variants[`layers.${i}.mixer.${op}`] = variant;
    return mixer;
  };
  const blocks: { norm1: Norm; norm2: Norm; mixer: MixerGraph }[] = [];
  const mambaBlocks: { rms: { x: Tensor; y: Tensor; rstd: Tensor; weight: ParamSlot }; mixer: MixerGraph }[] = [];
  for (let i = 0; i < 2; i++) {
    const prefix = `backbone.layers.${i}`;
    if (mamba) {
      // MambaBlock: r_{i+1} = r_i + Mixer(RMSNorm(r_i)).
      const rms = {
        x: r[i],
        y: wide(`layers.${i}.norm.out`),
        rstd: activation(`layers.${i}.norm.rstd`, [rows]),
        weight: params.get(`${prefix}.norm.weight`),
      };
      forward.push(createRmsNorm(gpu, `layers.${i}.norm`, {
        rows,
        width: d,
        eps: LN_EPS,
        x: rms.x,
        weight: rms.weight.param,
        y: rms.y,
        rstd: rms.rstd,
      }));
      const mixer = buildMixer(i, rms.y);
      forward.push(...mixer.forward);
      forward.push(createAdd(gpu, `layers.${i}.residual`, { a: r[i], b: mixerOut, out: r[i + 1] }));
      mambaBlocks.push({ rms, mixer });
      continue;
    }
    const rIn = r[2 * i], rMid = r[2 * i + 1], rOut = r[2 * i + 2];
    const norm1 = norm(`layers.${i}.norm1`, `${prefix}.norm1`, rIn, wide(`layers.${i}.norm1.out`));
    const mixer = buildMixer(i, norm1.y);
    forward.push(...mixer.forward);
    forward.push(createAdd(gpu, `layers.${i}.residual1`, { a: rIn, b: mixerOut, out: rMid }));
    const norm2 = norm(`layers.${i}.norm2`, `${prefix}.norm2`, rMid, wide(`layers.${i}.norm2.out`));
    forward.push(createAdd(gpu, `layers.${i}.residual2`, { a: rMid, b: norm2.y, out: rOut }));
    blocks.push({ norm1, norm2, mixer });
  }
  const out = wide("ln_f.out");
  const lnF = norm("ln_f", "backbone.ln_f", r[r.length - 1], out);
  const xent = createLmHeadXent(gpu, "lm_head", {
    hidden: out,
    emb: word.param,
    positions,
    targets,
    rows,
    d,
    V,
    P,
    dHidden: training ? gA : undefined,
    dEmb: training ? word.grad : undefined,
  });
  forward.push(...xent.forward);

  if (training) {
    backward.push(...xent.backward); // gA = d out
    backward.push(normBackward(lnF, gA, gB, false)); // gB = d of the last residual
    for (let i = 1; i >= 0 && mamba; i--) {
      const { rms, mixer } = mambaBlocks[i];
      // r_{i+1} = r_i + Mixer(RMSNorm(r_i)): d r_i = d r_{i+1} + RMSNorm'(Mixer'(d r_{i+1})).
      backward.push(...mixer.backward); // reads gB, writes dMixerIn
      backward.push(createRmsNormBackward(gpu, `layers.${i}.norm.bwd`, {
        rows,
        width: d,
        eps: LN_EPS,
        x: rms.x,
        weight: rms.weight.param,
        rstd: rms.rstd,
        dy: dMixerIn,
        dx: gB,
        dweight: rms.weight.grad,
        accumulate: true,
      }));
    }
    for (let i = 1; i >= 0 && !mamba; i--) {
      const { norm1, norm2, mixer } = blocks[i];
      // r_out = r_mid + LN2(r_mid): d r_mid = d r_out + LN2'(d r_out)
      backward.push(createCopy(gpu, `layers.${i}.residual2.bwd`, { src: gB, dst: gA }));
      backward.push(normBackward(norm2, gB, gA, true)); // gA = d r_mid
      // r_mid = r_in + Mixer(LN1(r_in)): d r_in = d r_mid + LN1'(Mixer'(d r_mid))
      backward.push(createCopy(gpu, `layers.${i}.residual1.bwd`, { src: gA, dst: gB })); // gB = d mixer out
      backward.push(...mixer.backward); // reads gB, writes dMixerIn
      backward.push(normBackward(norm1, dMixerIn, gB, true)); // gB = d r_in
    }
    if (embedDropout) {
      backward.push(createDropoutBackward(gpu, "embed.dropout.bwd", { forward: embedDropout, dy: gB, dx: gB }));
    }
    backward.push(createEmbeddingBackward(gpu, "embed.bwd", {
      dOut: gB,
      index: embIndex!,
      dWordEmb: word.grad,
      dPosEmb: pos.grad,
      batch,
      seqLen: L,
      dim: d,
      vocab: V,
    }));
  }

  const graph: ModelGraph = {
    cfg,
    batch,
    rows,
    training,
    forward,
    backward,
    xent,
    variants,
    upload(b) {
      if (b.inputs.length !== rows) {
        throw new Error(`graph expects ${rows} tokens per micro-batch, got ${b.inputs.length}`);
      }
      if (b.labelPositions.length !== P) {
        throw new Error(`graph expects ${P} labelled positions per micro-batch, got ${b.labelPositions.length}`);
      }
      writeTensor(gpu, ids, b.inputs);
      writeTensor(gpu, positions, b.labelPositions);
      writeTensor(gpu, targets, b.labelTargets);
      if (layout && embIndex && indexHost) writeTensor(gpu, embIndex, buildEmbeddingIndex(b.inputs, layout, indexHost));
    },
    setSeed(seed) {
      embedDropout?.setSeed(mixSeed(seed, 0));
      blocks.forEach((blk, i) => blk.mixer.setSeed?.(mixSeed(seed, i + 1)));
    },
    run() {
      submit(gpu, training ? [...forward, ...backward] : forward);
    },
  };
  return graph;
}
