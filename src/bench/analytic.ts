/**
 * Analytic cost model of one training step of the MQAR model (src/model/graph.ts), so a benchmark can show expected
 * next to measured figures. Pure: no GPU.
 *
 * FLOPs ("model FLOPs": what the maths needs, not what a kernel happens to do):
 *   - every Linear layer: 2·rows·in·out forward; backward dW and dX, 2·rows·in·out each (every Linear of the graph
 *     computes its input gradient);
 *   - the LM head (tied to the word embeddings) on the P = B·N labelled rows only: 2·P·d·V forward, dh and dEmb backward;
 *   - BaseConv's depthwise 3-tap causal convolution: 2·3·rows·d forward, du and dweight backward;
 *   - softmax attention: causal pairs (i ≥ j) only, L(L+1)/2 per example and head: QKᵀ and P·V (2·dh each per pair)
 *     forward; dV, dP, dQ, dK backward (2·dh each per pair);
 *   - Based/ReBased linear attention in the form the model runs (`linearAttention`):
 *     "parallel" (exact O(L²) form): per causal pair and head, q·k (2f) and A·V (2dv) forward; dA, dV (2dv each) and
 *     dQ, dK (2f each) backward;
 *     "chunked" (O(L), spec §5.3, chunks of C = 16): the parallel form on the causal pairs inside each chunk, plus per
 *     token and head, with D packed features (Based 153, ReBased 136 at f = 16) and dv + 1 state columns (the ones
 *     column is the normaliser): the state read φ(q)·S and update S += φ(k)ᵀ[v 1] (2·D·(dv+1) each) forward; dq, dk
 *     and the dS update (2·D·(dv+1) each) and dv (2·D·dv) backward.
 * Not counted: LayerNorm, residual adds, dropout, softmax/feature-map exponentials and the normaliser sums, the
 * cross-entropy rows, AdamW, embedding lookups (all O(rows·width) memory-bound work), and recomputation inside the
 * backward kernels (attention scores are recomputed from q, k rather than stored).
 *
 * Bytes: every storage buffer of the params, grads, optimizer and activations categories that the graph, the mixers,
 * the LM head and AdamW allocate (src/model/graph.ts, src/mixers/*, src/ops/attention.ts, src/ops/cross_entropy.ts),
 * each padded as the allocator pads it (`paddedBytes`). These match the allocator's peak per category exactly (tests
 * check it); the workspace category (uniforms, reduction partials, split-K scratch) depends on kernel choices and on the
 * adapter and is only measured.
 */
import { lmHeadChunkRows } from "../ops/cross_entropy.ts";
import { paddedBytes } from "../gpu/allocator.ts";
import type { ModelConfig } from "../model/config.ts";
import { paramSpec } from "../model/param_spec.ts";
import { architecture } from "../mixers/registry.ts";
import type { AdapterTraits, AnalyticLayerContext, FlopTerm } from "../mixers/descriptor.ts";

export type { FlopKind, FlopTerm } from "../mixers/descriptor.ts";
export { causalPairs } from "../mixers/mha.ts";
export { chunkedCausalPairs, LINEAR_ATTENTION_CHUNK } from "../mixers/linear_attention.ts";

export interface AnalyticShape {
  /** Examples per micro-batch (B). */
  batch: number;
  /** Labelled positions per example (MQAR: N), the rows the LM head sees. */
  labelsPerExample: number;
  /**
   * The adapter whose variant rules pick each op's form (the graph's own choice: the linear-attention form, the
   * attention variant, the LM-head chunk). Without one: the exact parallel linear attention and no device limits.
   */
  adapter?: AdapterTraits;
  /** Forces the Based/ReBased attention form; default: the adapter's selectLinearAttentionVariant (or "parallel"). */
  linearAttention?: LinearAttentionForm;
}

/** "parallel": the exact O(L²) variants (rows, tiled, smem); "chunked": the O(L) chunk form. */
export type LinearAttentionForm = "parallel" | "chunked";

export interface AnalyticFlops {
  terms: FlopTerm[];
  /** Tokens per micro-batch (B·L): the "per token" denominator. */
  tokens: number;
  forward: number;
  backward: number;
  /** forward + backward: one training micro-batch. */
  train: number;
  perToken: { forward: number; backward: number; train: number };
}

function checkShape(cfg: ModelConfig, shape: AnalyticShape): void {
  for (const [name, v] of [["batch", shape.batch], ["labelsPerExample", shape.labelsPerExample]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`analytic: ${name} must be a positive integer, got ${v}`);
  }
  if (shape.labelsPerExample > cfg.seqLen) {
    throw new Error(`analytic: ${shape.labelsPerExample} labels per example exceed seqLen ${cfg.seqLen}`);
  }
}

/** The per-layer context the descriptors' cost functions read. */
function layerContext(
  cfg: ModelConfig,
  layer: number,
  batch: number,
  training: boolean,
  adapter: AdapterTraits | undefined,
  form: LinearAttentionForm | undefined,
): AnalyticLayerContext {
  return {
    cfg,
    batch,
    rows: batch * cfg.seqLen,
    label: `layers.${layer}.mixer`,
    training,
    adapter: adapter ?? { info: { software: true, backend: "vulkan" }, limits: {} },
    linearAttentionForm: form ?? (adapter ? undefined : "parallel"),
  };
}

export function analyticFlops(cfg: ModelConfig, shape: AnalyticShape): AnalyticFlops {
  checkShape(cfg, shape);
  const B = shape.batch, L = cfg.seqLen, d = cfg.dModel, V = cfg.vocabSize;
  const rows = B * L;
  const P = B * shape.labelsPerExample;
  const terms: FlopTerm[] = architecture(cfg.mixer).layers.flatMap((layer, i) =>
    layer.flops(layerContext(cfg, i, B, true, shape.adapter, shape.linearAttention))
  );
  const head = 2 * P * d * V;
  terms.push({ name: "lm_head", kind: "lm_head", forward: head, backward: 2 * head });
  const forward = terms.reduce((s, t) => s + t.forward, 0);
  const backward = terms.reduce((s, t) => s + t.backward, 0);
  return {
    terms,
    tokens: rows,
    forward,
    backward,
    train: forward + backward,
    perToken: { forward: forward / rows, backward: backward / rows, train: (forward + backward) / rows },
  };
}

export type BufferCategory = "params" | "grads" | "optimizer" | "activations";

export interface AnalyticBuffer {
  name: string;
  category: BufferCategory;
  /** 4-byte elements. */
  elements: number;
  /** Allocated bytes (padded like the allocator). */
  bytes: number;
}

export interface AnalyticBytes {
  buffers: AnalyticBuffer[];
  byCategory: Record<BufferCategory, number>;
  /** Sum over the four categories (workspace excluded). */
  total: number;
  /** The single largest buffer: what has to fit maxBufferSize / maxStorageBufferBindingSize. */
  largest: AnalyticBuffer;
}

export interface AnalyticBytesOptions extends AnalyticShape {
  /** A training graph (backward buffers) with AdamW moments; false: a forward-only graph with an inference store. */
  training: boolean;
  /**
   * Without `adapter`: device limits, which pick the attention variant (selectAttentionVariant) and the LM head chunk
   * (lmHeadChunkRows), and whether it is a CPU rasteriser (smaller LM-head chunks); default true.
   */
  limits?: Readonly<Record<string, number>>;
  software?: boolean;
}

/** Every storage buffer of the four deterministic categories for one graph (see the module comment). */
export function analyticBuffers(cfg: ModelConfig, options: AnalyticBytesOptions): AnalyticBytes {
  checkShape(cfg, options);
  const { training } = options;
  const B = options.batch, L = cfg.seqLen, d = cfg.dModel, V = cfg.vocabSize;
  const rows = B * L;
  const P = B * options.labelsPerExample;
  const buffers: AnalyticBuffer[] = [];
  const add = (name: string, category: BufferCategory, elements: number) =>
    buffers.push({ name, category, elements, bytes: paddedBytes(elements) });
  // ParamStore: param + grad always; AdamW moments in a training store.
  for (const spec of paramSpec(cfg)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    add(spec.name, "params", n);
    add(`${spec.name}.grad`, "grads", n);
    if (training) {
      add(`${spec.name}.adam_m`, "optimizer", n);
      add(`${spec.name}.adam_v`, "optimizer", n);
    }
  }
  const act = (name: string, elements: number) => add(name, "activations", elements);
  const mamba = architecture(cfg.mixer).block === "mamba";
  // The residual stream after each update: twice per transformer block, once per Mamba block.
  for (let i = 0; i < (mamba ? 3 : 5); i++) act(`r${i}`, rows * d);
  for (let i = 0; i < 2; i++) {
    if (mamba) {
      act(`layers.${i}.norm.out`, rows * d);
      act(`layers.${i}.norm.rstd`, rows);
      continue;
    }
    for (const n of ["norm1", "norm2"]) {
      act(`layers.${i}.${n}.out`, rows * d);
      act(`layers.${i}.${n}.mean`, rows);
      act(`layers.${i}.${n}.rstd`, rows);
    }
  }
  act("ln_f.out", rows * d);
  act("ln_f.mean", rows);
  act("ln_f.rstd", rows);
  act("mixer_out", rows * d);
  if (training) { for (const n of ["grad.a", "grad.b", "grad.mixer_in"]) act(n, rows * d); }

  const adapter: AdapterTraits = options.adapter ??
    { info: { software: options.software ?? true, backend: "vulkan" }, limits: options.limits ?? {} };
  architecture(cfg.mixer).layers.forEach((layer, i) =>
    layer.activations(layerContext(cfg, i, B, training, adapter, options.linearAttention), act)
  );
  // The LM head's buffers exist in forward-only graphs too (dhg is simply unused there).
  const R = lmHeadChunkRows(adapter.limits, P, V, adapter.info.software);
  act("lm_head.hg", R * d);
  act("lm_head.logits", R * V);
  act("lm_head.dhg", P * d);
  if (R < P) act("lm_head.dhgChunk", R * d);
  for (const n of ["rowLoss", "rowLse", "rowCorrect"]) act(`lm_head.${n}`, P);

  const byCategory: Record<BufferCategory, number> = { params: 0, grads: 0, optimizer: 0, activations: 0 };
  for (const b of buffers) byCategory[b.category] += b.bytes;
  const largest = buffers.reduce((m, b) => (b.bytes > m.bytes ? b : m));
  const total = byCategory.params + byCategory.grads + byCategory.optimizer + byCategory.activations;
  return { buffers, byCategory, total, largest };
}

/** Bytes per token of a byte count at B·L tokens per micro-batch. */
export function perToken(bytes: number, cfg: Pick<ModelConfig, "seqLen">, batch: number): number {
  return bytes / (batch * cfg.seqLen);
}
