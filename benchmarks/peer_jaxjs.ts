/**
 * Side-by-side peer for mqar-bench's training throughput: the same 2-layer MQAR model (spec §2.3, §3) and AdamW step
 * written with jax-js (tracing autodiff + jit, its own generated WebGPU kernels), timed in the same process, on the same
 * adapter, with the same initial parameters and batches as our hand-written WGSL training step. Prints ours/peer.
 *
 *   deno run -A benchmarks/peer_jaxjs.ts --mixer rebased --d-model 64 --seq-len 256 --batch 8 --steps 5
 *       [--vocab-size 8192] [--warmup 2] [--sync-every-step] [--repeats 3] [--json]
 *
 * Timing rule (both sides): warm-up steps and one wait outside the clock, then `steps` steps with no readback inside
 * the timed loop and one wait at the end (`--sync-every-step`: a wait after every step, which is how jax-js asks to be
 * driven: without it, its pending work and buffers pile up until the wait, so its peak memory grows with `steps`).
 * Memory: WebGPU has no memory query and jax-js keeps its own buffer pool, so every non-mappable GPUBuffer created on
 * each device is counted (createBuffer/destroy are wrapped): the same measure for both sides; ours also reports its
 * allocator ledger. Tokens per CPU-second of the process are printed too: on a CPU rasteriser shared with other
 * processes they are much steadier than wall-clock rates.
 *
 * The peer is written the way a jax-js user would (quadratic parallel form for linear attention, ln_f on the labelled
 * rows only, jit over loss + grad + AdamW). Three jax-js 0.1.25 problems on Deno/wgpu are worked around, see
 * `patchJaxShaders`, `peerLoss` and `initJaxWebGpu`. Checked against the float64 reference by
 * tests/bench/peer_jaxjs_test.ts. This is a benchmark, not a dependency of the CLI.
 */
import * as jax from "@jax-js/jax";
import { acquireGpu, type Gpu } from "../src/gpu/device.ts";
import {
  defaultMqarConfig,
  defaultNumKvPairs,
  generateBatch,
  type MqarBatch,
  type MqarConfig,
} from "../src/data/mqar.ts";
import { mixSeed } from "../src/data/rng.ts";
import { createTrainStep } from "../src/train/step.ts";
import { makeModelConfig, type ModelConfig, valueHeadDim } from "../src/model/config.ts";
import { initParams } from "../src/model/init.ts";
import { ParamStore } from "../src/model/parameters.ts";
import { paramSpec, POSITION_EMBEDDINGS, WORD_EMBEDDINGS } from "../src/model/param_spec.ts";
import { ADAMW_DEFAULTS } from "../src/reference/adamw.ts";
import { processCpuSeconds } from "./_setup.ts";

const np = jax.numpy;
type Arr = jax.numpy.Array;
type Params = Record<string, Arr>;

export type PeerMixer = "conv_attention" | "based" | "rebased" | "attention";
export const PEER_MIXERS: readonly PeerMixer[] = ["conv_attention", "based", "rebased", "attention"];

export interface PeerOptions {
  mixer: PeerMixer;
  dModel: number;
  seqLen: number;
  /** Examples per step (one micro-batch, no accumulation). */
  batch: number;
  /** Timed steps. */
  steps: number;
  vocabSize: number;
  /** Untimed steps first (compilation, pipeline creation); default 2. */
  warmupSteps?: number;
  /** Labelled positions per example; default the sweep's N (16 at L = 128, else L/4). */
  numKvPairs?: number;
  lr?: number;
  seed?: number;
  /** Wait for the GPU after every timed step instead of once at the end (default false). */
  syncEveryStep?: boolean;
}

export interface PeerResult {
  trainTokensPerS: number;
  /** Peak bytes of GPU buffers live on this side's device during the run (null when not measurable). */
  peakBytes: number | null;
  notes: string[];
  /** Training tokens per CPU-second of the whole process (null off Linux): robust to other load on the cores. */
  tokensPerCpuS?: number | null;
  seconds?: number;
}

const LN_EPS = 1e-5;
const LINEAR_ATTENTION_EPS = 1e-12;
const CAUSAL_MASK_VALUE = -10000;
const EMBED_DROPOUT = 0.1;
const ATTENTION_DROPOUT = 0.1;

// ---------------------------------------------------------------------------------------------------------------
// GPU buffer accounting, shared by both sides: peak live bytes of storage/uniform buffers per device.

interface DeviceLedger {
  live: number;
  peak: number;
}
const ledgers = new WeakMap<GPUDevice, DeviceLedger>();
let ledgerInstalled = false;

/** Wraps GPUDevice.createBuffer once per process; staging (mappable) buffers are readback plumbing and not counted. */
function installBufferLedger(): void {
  if (ledgerInstalled) return;
  ledgerInstalled = true;
  const proto = GPUDevice.prototype;
  const create = proto.createBuffer;
  proto.createBuffer = function (this: GPUDevice, desc: GPUBufferDescriptor): GPUBuffer {
    const buffer = create.call(this, desc);
    if (desc.usage & (GPUBufferUsage.MAP_READ | GPUBufferUsage.MAP_WRITE)) return buffer;
    let ledger = ledgers.get(this);
    if (!ledger) ledgers.set(this, ledger = { live: 0, peak: 0 });
    const l = ledger, size = desc.size;
    l.live += size;
    l.peak = Math.max(l.peak, l.live);
    const destroy = buffer.destroy;
    let destroyed = false;
    buffer.destroy = function (this: GPUBuffer) {
      if (!destroyed) {
        destroyed = true;
        l.live -= size;
      }
      return destroy.call(this);
    };
    return buffer;
  };
}

/** Starts a peak measurement on `device`; the returned function gives the peak growth over the starting live bytes. */
function measurePeak(device: GPUDevice): () => number {
  let ledger = ledgers.get(device);
  if (!ledger) ledgers.set(device, ledger = { live: 0, peak: 0 });
  const l = ledger, base = l.live;
  l.peak = l.live;
  return () => l.peak - base;
}

// ---------------------------------------------------------------------------------------------------------------
// jax-js set-up

let jaxReady: Promise<GPUDevice> | undefined;
let jaxAdapterDescription = "unknown adapter";
let jaxRuns = 0;
/** WebGPU errors raised on jax-js's device (jax-js itself only logs them, and results are then garbage). */
const jaxGpuErrors: string[] = [];

/**
 * jax-js 0.1.25's f32 scatter-add (the gradient of `take`, i.e. of the embedding and label gathers) passes a
 * `ptr<storage, atomic<u32>, read_write>` to a helper function. Chrome's compiler accepts that; naga (Deno's WebGPU)
 * rejects it ("a pointer of space Storage ... can't be passed into functions"). This inlines the helper's
 * compare-exchange loop at its one call site: same kernel, same semantics, valid for naga.
 */
const SCATTER_HELPER = `
fn atomic_add_f32(address: ptr<storage, atomic<u32>, read_write>, value: f32) {
  var old_bits = atomicLoad(address);
  loop {
    let new_bits = bitcast<u32>(bitcast<f32>(old_bits) + value);
    let result = atomicCompareExchangeWeak(address, old_bits, new_bits);
    if (result.exchanged) {
      break;
    }
    old_bits = result.old_value;
  }
}`;
const SCATTER_CALL = "atomic_add_f32(&output[output_index], updates[global]);";
const SCATTER_INLINED = `{
    let value = updates[global];
    var old_bits = atomicLoad(&output[output_index]);
    loop {
      let new_bits = bitcast<u32>(bitcast<f32>(old_bits) + value);
      let result = atomicCompareExchangeWeak(&output[output_index], old_bits, new_bits);
      if (result.exchanged) {
        break;
      }
      old_bits = result.old_value;
    }
  }`;

/** Shaders of jax-js's device that needed the naga workaround above (reported in the notes). */
export const jaxShaderRewrites = { scatterAdd: 0 };

function patchJaxShaders(device: GPUDevice): void {
  const create = device.createShaderModule.bind(device);
  device.createShaderModule = (desc: GPUShaderModuleDescriptor): GPUShaderModule => {
    if (desc.code.includes(SCATTER_HELPER) && desc.code.includes(SCATTER_CALL)) {
      jaxShaderRewrites.scatterAdd++;
      desc = { ...desc, code: desc.code.replace(SCATTER_HELPER, "").replace(SCATTER_CALL, SCATTER_INLINED) };
    }
    return create(desc);
  };
}

/** Starts jax-js's WebGPU backend (once per process) and makes it the default device. */
export function initJaxWebGpu(): Promise<GPUDevice> {
  installBufferLedger();
  if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", Deno.makeTempDirSync({ prefix: "mqar-xdg-" }));
  jaxReady ??= (async () => {
    const devices = await jax.init("webgpu");
    if (!devices.includes("webgpu")) throw new Error(`jax-js: no WebGPU backend (got ${devices.join(", ")})`);
    jax.defaultDevice("webgpu");
    const device = jax.getWebGPUDevice();
    // Read now: in Deno 2.9.6, GPUDevice.adapterInfo panics ("Adapter[Id(..)] does not exist") once the adapter
    // object jax-js requested has been garbage-collected.
    const info = device.adapterInfo;
    jaxAdapterDescription = info.description || info.device || "unknown adapter";
    patchJaxShaders(device);
    device.addEventListener("uncapturederror", (e) => jaxGpuErrors.push((e as GPUUncapturedErrorEvent).error.message));
    return device;
  })();
  return jaxReady;
}

// ---------------------------------------------------------------------------------------------------------------
// The model in jax-js. Every function follows jax-js's ownership rule: each Array argument is consumed exactly once
// (`.ref` adds a use), which is what lets jit/grad trace it.

/** Linear weights in the peer are [in, out] (PyTorch stores [out, in]); conv taps are [3, d] (tap 0 = oldest token). */
function isTransposedInPeer(name: string, shape: readonly number[]): boolean {
  if (name.endsWith("conv.conv.weight")) return true;
  return shape.length === 2 && name !== WORD_EMBEDDINGS && name !== POSITION_EMBEDDINGS;
}

/** Our [rows, cols] (conv: [d, 1, 3] read as [d, 3]) as the peer's layout. */
function peerLayout(
  name: string,
  shape: readonly number[],
  value: Float32Array,
): { shape: number[]; data: Float32Array<ArrayBuffer> } {
  if (!isTransposedInPeer(name, shape)) return { shape: [...shape], data: Float32Array.from(value) };
  const rows = shape[0], cols = value.length / rows;
  return { shape: [cols, rows], data: transposeHost(value, rows, cols) };
}

function transposeHost(x: Float32Array, rows: number, cols: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = x[i * cols + j];
  return out;
}

/** Uploads our initial parameters (paramSpec names and shapes) in the peer's layout. */
export function peerParamsFromInit(cfg: ModelConfig, values: ReadonlyMap<string, Float32Array>): Params {
  const out: Params = {};
  for (const { name, shape } of paramSpec(cfg)) {
    const value = values.get(name);
    if (!value) throw new Error(`peer: missing value for ${name}`);
    const t = peerLayout(name, shape, value);
    out[name] = np.array(t.data).reshape(t.shape);
  }
  return out;
}

function layerNorm(x: Arr, gamma: Arr, beta: Arr): Arr {
  const mean = x.ref.mean(-1, { keepdims: true });
  const centred = x.sub(mean);
  const variance = np.square(centred.ref).mean(-1, { keepdims: true });
  return centred.div(np.sqrt(variance.add(LN_EPS))).mul(gamma).add(beta);
}

/** Shifts [B, L, d] by `k` steps along L with zero history (the causal conv's taps). */
function shiftTime(u: Arr, k: number, L: number): Arr {
  return np.pad(u, [[0, 0], [k, 0], [0, 0]]).slice([], [0, L], []);
}

/** Inverted dropout; keeps with probability 1 − p. */
function dropout(x: Arr, p: number, key: Arr): Arr {
  const keep = jax.random.bernoulli(key, 1 - p, x.shape).astype(np.float32);
  return x.mul(keep).mul(1 / (1 - p));
}

interface ForwardContext {
  cfg: ModelConfig;
  B: number;
}

function baseConv(u: Arr, p: Params, prefix: string, L: number): Arr {
  const w = p[`${prefix}conv.conv.weight`]; // [3, d]
  const conv = shiftTime(u.ref, 2, L).mul(w.ref.slice(0))
    .add(shiftTime(u.ref, 1, L).mul(w.ref.slice(1)))
    .add(u.ref.mul(w.slice(2)))
    .add(p[`${prefix}conv.conv.bias`]);
  const proj = np.matmul(u.ref, p[`${prefix}projection.weight`]).add(p[`${prefix}projection.bias`]);
  return conv.mul(proj).add(u);
}

/** [B, L, H·e] → [B, H, L, e] */
const splitHeads = (x: Arr, B: number, L: number, H: number, e: number): Arr =>
  x.reshape([B, L, H, e]).transpose([0, 2, 1, 3]);
/** [B, H, L, e] → [B, L, H·e] */
const mergeHeads = (x: Arr, B: number, L: number, H: number, e: number): Arr =>
  x.transpose([0, 2, 1, 3]).reshape([B, L, H * e]);

function mha(u: Arr, p: Params, prefix: string, ctx: ForwardContext, dropKey: Arr | null): Arr {
  const { B, cfg } = ctx, L = cfg.seqLen, d = cfg.dModel, H = cfg.attnHeads, dh = d / H;
  const qkv = np.matmul(u, p[`${prefix}Wqkv.weight`]).add(p[`${prefix}Wqkv.bias`]);
  const q = splitHeads(qkv.ref.slice([], [], [0, d]), B, L, H, dh);
  const k = splitHeads(qkv.ref.slice([], [], [d, 2 * d]), B, L, H, dh);
  const v = splitHeads(qkv.slice([], [], [2 * d, 3 * d]), B, L, H, dh);
  const mask = np.triu(np.full([L, L], CAUSAL_MASK_VALUE), 1);
  const scores = np.matmul(q, k.transpose([0, 1, 3, 2])).mul(1 / Math.sqrt(dh)).add(mask);
  let probs = jax.nn.softmax(scores, -1);
  if (dropKey) probs = dropout(probs, ATTENTION_DROPOUT, dropKey);
  const o = mergeHeads(np.matmul(probs, v), B, L, H, dh);
  return np.matmul(o, p[`${prefix}out_proj.weight`]).add(p[`${prefix}out_proj.bias`]);
}

function linearAttention(u: Arr, p: Params, prefix: string, ctx: ForwardContext): Arr {
  const { B, cfg } = ctx, L = cfg.seqLen, H = cfg.numHeads, f = cfg.featureDim, dv = valueHeadDim(cfg);
  let q = np.matmul(u.ref, p[`${prefix}proj_q.weight`]);
  let k = np.matmul(u.ref, p[`${prefix}proj_k.weight`]);
  const v = splitHeads(np.matmul(u, p[`${prefix}proj_v.weight`]), B, L, H, dv);
  if (cfg.mixer === "rebased") {
    // nn.LayerNorm over all H·f features jointly, before the head split (spec §3.4).
    q = layerNorm(q, p[`${prefix}ln_q.weight`], p[`${prefix}ln_q.bias`]);
    k = layerNorm(k, p[`${prefix}ln_k.weight`], p[`${prefix}ln_k.bias`]);
  }
  const s = np.matmul(splitHeads(q, B, L, H, f), splitHeads(k, B, L, H, f).transpose([0, 1, 3, 2]))
    .mul(1 / Math.sqrt(f));
  // Quadratic (parallel) form: a_ij = φ(q_i)·φ(k_j) for j ≤ i, normalised by the row sum.
  const kernel = cfg.mixer === "based" ? s.ref.add(np.square(s).mul(0.5)).add(1) : np.square(s);
  const a = kernel.mul(np.tril(np.ones([L, L])));
  const y = np.matmul(a.ref, v).div(a.sum(-1, { keepdims: true }).add(LINEAR_ATTENTION_EPS));
  return np.matmul(mergeHeads(y, B, L, H, dv), p[`${prefix}proj_o.weight`]);
}

/**
 * Mean cross-entropy over the labelled positions (spec §2.3, §2.5). `ids` [B, L], `positions` (flat b·L + t) and
 * `targets` [P], all int32;
 * `keys` holds 3 dropout keys (embedding, attention in layers 0 and 1) or is null for no dropout.
 */
export function peerLoss(
  cfg: ModelConfig,
  B: number,
  p: Params,
  ids: Arr,
  positions: Arr,
  targets: Arr,
  keys: Arr | null,
): Arr {
  const ctx: ForwardContext = { cfg, B };
  const L = cfg.seqLen, d = cfg.dModel;
  const word = p[WORD_EMBEDDINGS];
  const layerKey = (i: number): Arr | null => (keys ? keys.ref.slice(i) : null);
  // ids arrive as [B, L]: jax-js's jit needs the gather's index (and, in backward, the scatter's updates) to be a
  // materialised buffer, not a reshape view of one.
  let r = np.take(word.ref, ids, 0).add(p[POSITION_EMBEDDINGS]);
  const embedKey = layerKey(0);
  if (embedKey) r = dropout(r, EMBED_DROPOUT, embedKey);
  for (let i = 0; i < 2; i++) {
    const block = `backbone.layers.${i}.`, prefix = `${block}sequence_mixer.mixer.`;
    const u = layerNorm(r.ref, p[`${block}norm1.weight`], p[`${block}norm1.bias`]);
    let h: Arr;
    if (cfg.mixer === "attention" || (i === 1 && cfg.mixer === "conv_attention")) {
      h = mha(u, p, prefix, ctx, layerKey(1 + i));
    } else if (i === 0) {
      h = baseConv(u, p, prefix, L);
    } else {
      h = linearAttention(u, p, prefix, ctx);
    }
    r = r.add(h);
    // Identity state mixer: LN2(r) is added to the residual (spec §2.3).
    r = r.ref.add(layerNorm(r, p[`${block}norm2.weight`], p[`${block}norm2.bias`]));
  }
  keys?.dispose();
  // ln_f is row-wise, so it runs on the labelled rows only. (Besides saving work, this keeps the backward scatter's
  // updates a computed buffer; after a reshape, jax-js 0.1.25's jit rejects them: "routine primitive scatter input
  // is not imm".)
  const labelled = np.take(r.reshape([B * L, d]), positions, 0);
  const hidden = layerNorm(labelled, p["backbone.ln_f.weight"], p["backbone.ln_f.bias"]);
  // CE = logsumexp(logits) − logit[target], the target logit as hidden · WordEmb[target]. (nn.oneHot(targets, V) is
  // not an option: jax-js builds it from an eye(V) of V² floats, 256 MiB at V = 8192, over lavapipe's 128 MiB binding
  // limit.)
  const P = targets.shape[0];
  const targetLogit = hidden.ref.mul(np.take(word.ref, targets, 0)).sum(-1);
  const logits = np.matmul(hidden, word.transpose());
  return jax.nn.logsumexp(logits, -1).sub(targetLogit).sum().mul(1 / P);
}

export interface PeerBatch {
  ids: Arr;
  positions: Arr;
  targets: Arr;
}

export function peerBatch(b: MqarBatch, seqLen: number): PeerBatch {
  return {
    ids: np.array(Int32Array.from(b.inputs), { dtype: np.int32 }).reshape([b.inputs.length / seqLen, seqLen]),
    positions: np.array(Int32Array.from(b.labelPositions), { dtype: np.int32 }),
    targets: np.array(Int32Array.from(b.labelTargets), { dtype: np.int32 }),
  };
}

/** Loss of the peer model at the given parameters, without dropout (for the correctness check). */
export async function peerLossValue(
  cfg: ModelConfig,
  values: ReadonlyMap<string, Float32Array>,
  batch: MqarBatch,
): Promise<number> {
  await initJaxWebGpu();
  const B = batch.inputs.length / cfg.seqLen;
  const p = peerParamsFromInit(cfg, values);
  const b = peerBatch(batch, cfg.seqLen);
  const loss = peerLoss(cfg, B, p, b.ids, b.positions, b.targets, null);
  return Number(await loss.jsAsync());
}

/** Gradients of the peer's loss (dropout off) by jax-js autodiff, in our layout and names (for the correctness check). */
export async function peerGradients(
  cfg: ModelConfig,
  values: ReadonlyMap<string, Float32Array>,
  batch: MqarBatch,
): Promise<Map<string, Float32Array>> {
  await initJaxWebGpu();
  const B = batch.inputs.length / cfg.seqLen;
  const b = peerBatch(batch, cfg.seqLen);
  const grads = jax.grad((p: Params) => peerLoss(cfg, B, p, b.ids, b.positions, b.targets, null))(
    peerParamsFromInit(cfg, values),
  );
  return await toOurLayout(cfg, grads);
}

/** Reads a peer parameter tree (or gradient tree) back in our names and layout; consumes the arrays. */
async function toOurLayout(cfg: ModelConfig, tree: Params): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const { name, shape } of paramSpec(cfg)) {
    const x = new Float32Array(await tree[name].data() as Float32Array);
    const rows = shape[0], cols = x.length / rows;
    // The peer holds [cols, rows]; transposing back restores our layout.
    out.set(name, isTransposedInPeer(name, shape) ? transposeHost(x, cols, rows) : x);
  }
  return out;
}

/**
 * Runs the benchmark's jitted training step (dropout off) on `batches` in turn, from `values`: the losses before each
 * update and the parameters after the last, in our layout (for the correctness check of the whole step).
 */
export async function peerTrainSteps(
  cfg: ModelConfig,
  values: ReadonlyMap<string, Float32Array>,
  batches: readonly MqarBatch[],
  lr: number,
): Promise<{ losses: number[]; params: Map<string, Float32Array> }> {
  await initJaxWebGpu();
  const B = batches[0].inputs.length / cfg.seqLen;
  const step = makeTrainStep(cfg, B, false);
  let p = peerParamsFromInit(cfg, values);
  let m: Params = jax.tree.map((x: Arr) => np.zerosLike(x), jax.tree.ref(p));
  let v: Params = jax.tree.map((x: Arr) => np.zerosLike(x), jax.tree.ref(p));
  const losses: number[] = [];
  for (let s = 0; s < batches.length; s++) {
    const b = peerBatch(batches[s], cfg.seqLen);
    const hyper = np.array(adamHyper(s + 1, lr, ADAMW_DEFAULTS.weightDecay));
    const out = step(p, m, v, b.ids, b.positions, b.targets, jax.random.key(s), hyper);
    ({ params: p, m, v } = out);
    losses.push(Number(await out.loss.jsAsync()));
  }
  jax.tree.dispose(m);
  jax.tree.dispose(v);
  step.dispose();
  return { losses, params: await toOurLayout(cfg, p) };
}

/**
 * One jitted training step: loss and gradients by jax-js autodiff, then PyTorch AdamW (decoupled weight decay first)
 * on every parameter. `hyper` = [1 − lr·wd, lr/(1 − β1^t), 1/sqrt(1 − β2^t)] so the step count is data, not a retrace.
 */
function makeTrainStep(cfg: ModelConfig, B: number, withDropout: boolean) {
  const { beta1, beta2, eps } = ADAMW_DEFAULTS;
  return jax.jit((p: Params, m: Params, v: Params, ids: Arr, positions: Arr, targets: Arr, key: Arr, hyper: Arr) => {
    // One key per dropout site (embedding, attention in layers 0 and 1), split on the device.
    const keys = withDropout ? jax.random.split(key, 3) : (key.dispose(), null);
    const lossFn = (params: Params) => peerLoss(cfg, B, params, ids, positions, targets, keys);
    const [loss, grads] = jax.valueAndGrad(lossFn)(jax.tree.ref(p));
    const decay = hyper.ref.slice(0), stepSize = hyper.ref.slice(1), vScale = hyper.slice(2);
    const np2: Params = {}, nm: Params = {}, nv: Params = {};
    for (const name of Object.keys(p)) {
      const g = grads[name];
      const m1 = m[name].mul(beta1).add(g.ref.mul(1 - beta1));
      const v1 = v[name].mul(beta2).add(np.square(g).mul(1 - beta2));
      const update = m1.ref.mul(stepSize.ref).div(np.sqrt(v1.ref).mul(vScale.ref).add(eps));
      np2[name] = p[name].mul(decay.ref).sub(update);
      nm[name] = m1;
      nv[name] = v1;
    }
    decay.dispose();
    stepSize.dispose();
    vScale.dispose();
    return { params: np2, m: nm, v: nv, loss };
  });
}

function adamHyper(step: number, lr: number, weightDecay: number): Float32Array<ArrayBuffer> {
  const { beta1, beta2 } = ADAMW_DEFAULTS;
  return new Float32Array([1 - lr * weightDecay, lr / (1 - beta1 ** step), 1 / Math.sqrt(1 - beta2 ** step)]);
}

// ---------------------------------------------------------------------------------------------------------------
// Shared set-up: config, parameters and the batches both sides train on.

interface Prepared {
  cfg: ModelConfig;
  mqar: MqarConfig;
  init: Map<string, Float32Array>;
  batches: MqarBatch[];
  warmup: number;
  lr: number;
  seed: number;
}

function prepare(opts: PeerOptions): Prepared {
  const cfg = makeModelConfig({
    mixer: opts.mixer,
    dModel: opts.dModel,
    seqLen: opts.seqLen,
    vocabSize: opts.vocabSize,
  });
  const mqar: MqarConfig = {
    ...defaultMqarConfig(opts.seqLen),
    vocabSize: opts.vocabSize,
    numKvPairs: opts.numKvPairs ?? defaultNumKvPairs(opts.seqLen),
  };
  const warmup = opts.warmupSteps ?? 2;
  const seed = opts.seed ?? 42;
  // Distinct batches, generated before any timing (data generation is CPU work outside both training steps).
  const batches: MqarBatch[] = [];
  for (let s = 0; s < warmup + opts.steps; s++) {
    const indices = Uint32Array.from({ length: opts.batch }, (_, i) => s * opts.batch + i);
    batches.push(generateBatch(mqar, "train", indices));
  }
  return { cfg, mqar, init: initParams(cfg, seed), batches, warmup, lr: opts.lr ?? 1e-3, seed };
}

// ---------------------------------------------------------------------------------------------------------------
// The two timed runs. Both: build everything, `warmup` steps + one wait (untimed), then `steps` timed steps and one
// wait at the end (or, with syncEveryStep, a wait after each step: jax-js's documented way to bound its queue).

/** jax-js peer: `steps` timed training steps after warm-up. */
export async function runJaxJsPeer(opts: PeerOptions): Promise<PeerResult> {
  return await runPeerPrepared(prepare(opts), opts);
}

async function runPeerPrepared(prep: Prepared, opts: PeerOptions): Promise<PeerResult> {
  const device = await initJaxWebGpu();
  const { cfg, batches, warmup, lr } = prep;
  const errorsBefore = jaxGpuErrors.length;
  // jax-js keeps freed buffers in a process-wide pool that later runs draw from without creating buffers, so only the
  // first run of a process sees its whole footprint.
  const firstRun = jaxRuns++ === 0;
  const peak = measurePeak(device);
  let params = peerParamsFromInit(cfg, prep.init);
  let m: Params = jax.tree.map((x: Arr) => np.zerosLike(x), jax.tree.ref(params));
  let v: Params = jax.tree.map((x: Arr) => np.zerosLike(x), jax.tree.ref(params));
  const trainStep = makeTrainStep(cfg, opts.batch, true);
  const last: { loss: Arr | null } = { loss: null };
  const runStep = (s: number) => {
    const b = peerBatch(batches[s], cfg.seqLen);
    const key = jax.random.key(mixSeed(prep.seed, s) & 0x7fffffff);
    const hyper = np.array(adamHyper(s + 1, lr, ADAMW_DEFAULTS.weightDecay));
    const out = trainStep(params, m, v, b.ids, b.positions, b.targets, key, hyper);
    ({ params, m, v } = out);
    last.loss?.dispose();
    last.loss = out.loss;
  };
  const loss = async () => (last.loss ? Number(await last.loss.ref.jsAsync()) : NaN);
  const tWarm = performance.now();
  for (let s = 0; s < warmup; s++) runStep(s);
  await jax.blockUntilReady(params);
  const warmupS = (performance.now() - tWarm) / 1000;
  const warmLoss = await loss();

  const cpu0 = processCpuSeconds();
  const t0 = performance.now();
  for (let s = warmup; s < warmup + opts.steps; s++) {
    runStep(s);
    if (opts.syncEveryStep) await jax.blockUntilReady(params);
  }
  await jax.blockUntilReady(params); // jax-js may still be dispatching lazily queued work here: that is timed too
  const seconds = (performance.now() - t0) / 1000;
  const cpu1 = processCpuSeconds();
  const finalLoss = await loss();
  const peakBytes = firstRun ? peak() : null;
  jax.tree.dispose(params);
  jax.tree.dispose(m);
  jax.tree.dispose(v);
  last.loss?.dispose();
  trainStep.dispose();
  await device.queue.onSubmittedWorkDone();
  const errors = jaxGpuErrors.slice(errorsBefore);
  if (errors.length > 0) throw new Error(`jax-js peer hit ${errors.length} WebGPU error(s); first: ${errors[0]}`);
  if (!Number.isFinite(finalLoss) || finalLoss <= 0) throw new Error(`jax-js peer: implausible loss ${finalLoss}`);
  const tokens = opts.steps * opts.batch * cfg.seqLen;
  const notes = [
    `warm-up ${warmup} steps (trace + compile) ${warmupS.toFixed(1)} s`,
    `train loss ${warmLoss.toFixed(4)} after step ${warmup}, ${finalLoss.toFixed(4)} after step ${warmup + opts.steps}`,
  ];
  if (jaxShaderRewrites.scatterAdd > 0) notes.push("scatter-add shader inlined for naga");
  if (!firstRun) notes.push("peak memory measured only on a process's first run (jax-js's buffer pool persists)");
  return {
    trainTokensPerS: tokens / seconds,
    peakBytes,
    notes,
    tokensPerCpuS: cpu0 !== undefined && cpu1 !== undefined ? tokens / (cpu1 - cpu0) : null,
    seconds,
  };
}

export interface OursResult extends PeerResult {
  /** Our allocator's ledger peak (what `mqar train` reports). */
  ledgerPeakBytes: number;
  adapter: Gpu["info"];
}

let oursGpu: Promise<Gpu> | undefined;

/** Our WGSL training step on the same batches and initial parameters. */
export async function runOurs(opts: PeerOptions): Promise<OursResult> {
  return await runOursPrepared(prepare(opts), opts);
}

async function runOursPrepared(prep: Prepared, opts: PeerOptions): Promise<OursResult> {
  installBufferLedger();
  oursGpu ??= acquireGpu();
  const gpu = await oursGpu;
  const { cfg, batches, warmup, lr } = prep;
  const release = gpu.allocator.scope();
  const peak = measurePeak(gpu.device);
  gpu.allocator.ledger.resetPeak();
  const ledgerBase = gpu.allocator.current().total;
  try {
    const params = new ParamStore(gpu, cfg);
    params.upload(prep.init);
    // The trainer's own step (src/train/step.ts): one micro-batch per step, loss = mean over its labelled positions.
    const trainStep = createTrainStep(gpu, cfg, params, {
      microBatch: opts.batch,
      labelsPerExample: prep.mqar.numKvPairs,
      weightDecay: ADAMW_DEFAULTS.weightDecay,
    });
    const graph = trainStep.graph;
    const runStep = (s: number) => trainStep.run(s + 1, lr, () => batches[s], prep.seed);
    const tWarm = performance.now();
    for (let s = 0; s < warmup; s++) runStep(s);
    await gpu.device.queue.onSubmittedWorkDone();
    const warmupS = (performance.now() - tWarm) / 1000;
    graph.xent.resetAccumulators();

    const cpu0 = processCpuSeconds();
    const t0 = performance.now();
    for (let s = warmup; s < warmup + opts.steps; s++) {
      runStep(s);
      if (opts.syncEveryStep) await gpu.device.queue.onSubmittedWorkDone();
    }
    await gpu.device.queue.onSubmittedWorkDone();
    const seconds = (performance.now() - t0) / 1000;
    const cpu1 = processCpuSeconds();
    const stats = await graph.xent.readStats();
    const meanLoss = stats.accLossSum / stats.accCount;
    if (!Number.isFinite(meanLoss) || meanLoss <= 0) throw new Error(`ours: implausible loss ${meanLoss}`);
    const tokens = opts.steps * opts.batch * cfg.seqLen;
    return {
      trainTokensPerS: tokens / seconds,
      peakBytes: peak(),
      ledgerPeakBytes: gpu.allocator.peak().total - ledgerBase,
      notes: [
        `warm-up ${warmup} steps ${warmupS.toFixed(1)} s`,
        `mean train loss over the timed steps ${meanLoss.toFixed(4)}`,
      ],
      tokensPerCpuS: cpu0 !== undefined && cpu1 !== undefined ? tokens / (cpu1 - cpu0) : null,
      seconds,
      adapter: gpu.info,
    };
  } finally {
    release();
  }
}

export interface Comparison {
  options: PeerOptions;
  ours: OursResult;
  peer: PeerResult;
  /** ours / peer: > 1 means we train faster. */
  tokensPerSRatio: number;
  /** ours / peer in tokens per CPU-second of the process (both run on the CPU rasteriser's threads). */
  tokensPerCpuSRatio: number | null;
  /** ours / peer peak GPU bytes: < 1 means we use less memory. */
  peakBytesRatio: number | null;
  peerAdapter: string;
}

/** Runs ours, then the peer, on the same batches and initial parameters, under the same synchronisation rule. */
export async function comparePeer(opts: PeerOptions): Promise<Comparison> {
  const prep = prepare(opts);
  const ours = await runOursPrepared(prep, opts);
  const peer = await runPeerPrepared(prep, opts);
  return {
    options: opts,
    ours,
    peer,
    tokensPerSRatio: ours.trainTokensPerS / peer.trainTokensPerS,
    tokensPerCpuSRatio: ours.tokensPerCpuS && peer.tokensPerCpuS ? ours.tokensPerCpuS / peer.tokensPerCpuS : null,
    peakBytesRatio: ours.peakBytes !== null && peer.peakBytes ? ours.peakBytes / peer.peakBytes : null,
    peerAdapter: jaxAdapterDescription,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// CLI

function argValue(args: readonly string[], name: string): string | undefined {
  const i = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return undefined;
  const a = args[i];
  return a.includes("=") ? a.slice(a.indexOf("=") + 1) : args[i + 1];
}

export function parsePeerArgs(args: readonly string[]): PeerOptions {
  const int = (name: string, fallback: number): number => {
    const raw = argValue(args, name);
    const n = raw === undefined ? fallback : Number(raw);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name}: ${raw} must be a non-negative integer`);
    return n;
  };
  const mixer = (argValue(args, "mixer") ?? "rebased") as PeerMixer;
  if (!PEER_MIXERS.includes(mixer)) throw new Error(`--mixer: ${mixer} is not one of ${PEER_MIXERS.join(", ")}`);
  return {
    mixer,
    dModel: int("d-model", 64),
    seqLen: int("seq-len", 256),
    batch: int("batch", 8),
    steps: Math.max(1, int("steps", 5)),
    vocabSize: int("vocab-size", 8192),
    warmupSteps: int("warmup", 2),
    syncEveryStep: args.includes("--sync-every-step"),
  };
}

const mib = (b: number | null) => (b === null ? "n/a" : `${(b / 2 ** 20).toFixed(1)} MiB`);

function printComparison(c: Comparison): void {
  const o = c.options;
  console.log(
    `${o.mixer} d=${o.dModel} L=${o.seqLen} B=${o.batch} V=${o.vocabSize}: ${o.steps} timed steps, ` +
      (o.syncEveryStep ? "a wait after every step" : "no wait inside the timed loop, one at the end"),
  );
  const row = (name: string, r: PeerResult, extra = "") =>
    console.log(
      `  ${name.padEnd(6)} ${r.trainTokensPerS.toFixed(0).padStart(7)} tok/s` +
        (r.tokensPerCpuS ? ` ${r.tokensPerCpuS.toFixed(0).padStart(7)} tok/CPU-s` : "") +
        `  peak ${mib(r.peakBytes)}${extra}  | ${r.notes.join("; ")}`,
    );
  row("ours", c.ours, ` (ledger ${mib(c.ours.ledgerPeakBytes)})`);
  row("jax-js", c.peer);
  console.log(
    `  ours/peer: tokens/s ${c.tokensPerSRatio.toFixed(2)}x` +
      (c.tokensPerCpuSRatio ? `, tokens per CPU-s ${c.tokensPerCpuSRatio.toFixed(2)}x` : "") +
      `, peak GPU memory ${c.peakBytesRatio === null ? "n/a" : `${c.peakBytesRatio.toFixed(3)}x`}`,
  );
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b), mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

if (import.meta.main) {
  const opts = parsePeerArgs(Deno.args);
  // Other processes share the CPU rasteriser's cores, so wall-clock rates are noisy: repeat and take medians (the
  // per-CPU-second ratio is the steadier number under contention).
  const repeats = Math.max(1, Number(argValue(Deno.args, "repeats") ?? 1));
  const runs: Comparison[] = [];
  for (let r = 0; r < repeats; r++) {
    const c = await comparePeer(opts);
    if (r === 0) {
      const a = c.ours.adapter;
      console.log(
        `adapter: ${a.description} (${a.backend}${a.software ? ", software" : ""}); jax-js: ${c.peerAdapter}`,
      );
    }
    printComparison(c);
    runs.push(c);
  }
  if (repeats > 1) {
    const cpuRatios = runs.map((c) => c.tokensPerCpuSRatio).filter((x): x is number => x !== null);
    console.log(
      `median of ${repeats}: ours/peer tokens/s ${median(runs.map((c) => c.tokensPerSRatio)).toFixed(2)}x` +
        (cpuRatios.length ? `, tokens per CPU-s ${median(cpuRatios).toFixed(2)}x` : "") +
        `; peak GPU memory (first run) ${
          runs[0].peakBytesRatio === null ? "n/a" : `${runs[0].peakBytesRatio.toFixed(3)}x`
        }`,
    );
  }
  if (Deno.args.includes("--json")) console.log(JSON.stringify(runs));
}
