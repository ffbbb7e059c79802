/** Analytic FLOPs and bytes against hand-computed small cases (no GPU). */
import { makeModelConfig } from "../../src/model/config.ts";
import { analyticBuffers, analyticFlops, causalPairs, chunkedCausalPairs } from "../../src/bench/analytic.ts";
import { planBatch } from "../../src/bench/throughput.ts";
import { assert, assertEquals, assertThrows } from "../_helpers/assert.ts";

const tiny = (mixer: Parameters<typeof makeModelConfig>[0]["mixer"], dModel = 4) =>
  makeModelConfig({ mixer, dModel, seqLen: 4, vocabSize: 16 });

Deno.test("causal pairs: L(L+1)/2", () => {
  assertEquals([1, 2, 4, 5].map(causalPairs), [1, 3, 10, 15]);
});

Deno.test("analytic FLOPs, conv_attention d=4 L=4 B=1 N=1 V=16: every term by hand", () => {
  const f = analyticFlops(tiny("conv_attention"), { batch: 1, labelsPerExample: 1 });
  const forward = Object.fromEntries(f.terms.map((t) => [t.name, t.forward]));
  assertEquals(forward, {
    "layers.0.mixer.projection": 2 * 4 * 4 * 4, // 128: rows·in·out·2
    "layers.0.mixer.conv": 2 * 3 * 4 * 4, // 96: 3 taps per channel and row
    "layers.1.mixer.Wqkv": 2 * 4 * 4 * 12, // 384
    "layers.1.mixer.attn": 2 * (2 * 4 * 10), // 160: QKᵀ and PV over 10 causal pairs, 2·d each
    "layers.1.mixer.out_proj": 128,
    "lm_head": 2 * 1 * 4 * 16, // 128: one labelled row
  });
  assertEquals(f.forward, 1024);
  assertEquals(f.backward, 2048);
  assertEquals(f.train, 3072);
  assertEquals(f.tokens, 4);
  assertEquals(f.perToken, { forward: 256, backward: 512, train: 768 });
});

Deno.test("analytic FLOPs, based d=24 (12 heads, f=16, dv=2) L=4: linear attention O(L²) term by hand", () => {
  const f = analyticFlops(tiny("based", 24), { batch: 1, labelsPerExample: 1 });
  const forward = Object.fromEntries(f.terms.map((t) => [t.name, t.forward]));
  assertEquals(forward["layers.1.mixer.proj_q"], 2 * 4 * 24 * 192);
  assertEquals(forward["layers.1.mixer.proj_v"], 2 * 4 * 24 * 24);
  // 12 heads × 10 pairs × (2·16 for q·k + 2·2 for A·V)
  assertEquals(forward["layers.1.mixer.attn"], 120 * 36);
  assertEquals(forward["layers.1.mixer.proj_o"], 2 * 4 * 24 * 24);
  assertEquals(f.forward, 4608 + 576 + 36864 + 36864 + 4608 + 4320 + 4608 + 768);
  const attn = f.terms.find((t) => t.name === "layers.1.mixer.attn")!;
  assertEquals(attn.backward, 120 * 72); // dA, dV (2dv each), dQ, dK (2f each)
  // ReBased has the same matmul FLOPs (its LayerNorms are not counted).
  assertEquals(analyticFlops(tiny("rebased", 24), { batch: 1, labelsPerExample: 1 }).forward, f.forward);
});

Deno.test("chunked causal pairs: only pairs inside a chunk", () => {
  assertEquals(chunkedCausalPairs(32, 16), 2 * 136);
  assertEquals(chunkedCausalPairs(20, 16), 136 + 10);
  assertEquals(chunkedCausalPairs(4, 16), causalPairs(4));
});

Deno.test("analytic FLOPs, chunked linear attention: hand-computed term, constant per token in L", () => {
  const cfg = (mixer: "based" | "rebased", L: number) =>
    makeModelConfig({ mixer, dModel: 24, seqLen: L, vocabSize: 64 });
  const term = (mixer: "based" | "rebased", L: number, form: "parallel" | "chunked") =>
    analyticFlops(cfg(mixer, L), { batch: 1, labelsPerExample: 1, linearAttention: form }).terms
      .find((t) => t.name === "layers.1.mixer.attn")!;
  // based, L = 32: 12 heads × 2 chunks × 136 pairs × (2·16 + 2·2), plus per token and head the state read and update,
  // 2·153·(2+1) each, over 12·32 token-heads.
  const based = term("based", 32, "chunked");
  assertEquals(based.forward, 12 * 272 * 36 + 12 * 32 * 2 * 918);
  assertEquals(based.backward, 12 * 272 * 72 + 12 * 32 * (3 * 918 + 2 * 153 * 2));
  // ReBased packs 136 features (no constant and linear terms).
  assertEquals(term("rebased", 32, "chunked").forward, 12 * 272 * 36 + 12 * 32 * 2 * (2 * 136 * 3));
  // Per token: the chunked form is flat in L, the parallel form grows linearly.
  const perToken = (L: number, form: "parallel" | "chunked") => term("rebased", L, form).forward / L;
  assertEquals(perToken(2048, "chunked"), perToken(256, "chunked"));
  assert(perToken(2048, "parallel") > 7 * perToken(256, "parallel"));
  // The default is the parallel form.
  const whole = (form?: "parallel" | "chunked") =>
    analyticFlops(cfg("based", 32), { batch: 1, labelsPerExample: 1, linearAttention: form }).forward;
  assertEquals(whole(), whole("parallel"));
  assertEquals(whole("chunked") - whole(), based.forward - term("based", 32, "parallel").forward);
});

Deno.test("analytic FLOPs scale: batch linearly, attention quadratically in L, LM head with labelled rows only", () => {
  const cfg = (L: number) => makeModelConfig({ mixer: "attention", dModel: 8, seqLen: L, vocabSize: 64 });
  const a = analyticFlops(cfg(8), { batch: 1, labelsPerExample: 2 });
  const b = analyticFlops(cfg(8), { batch: 3, labelsPerExample: 2 });
  assertEquals(b.forward, 3 * a.forward);
  assertEquals(b.perToken, a.perToken);
  const attn = (L: number) =>
    analyticFlops(cfg(L), { batch: 1, labelsPerExample: 1 }).terms.filter((t) => t.kind === "attention")
      .reduce((s, t) => s + t.forward, 0);
  assertEquals(attn(16), 2 * 2 * (2 * 8 * causalPairs(16))); // two MHA layers
  const head = (n: number) =>
    analyticFlops(cfg(8), { batch: 1, labelsPerExample: n }).terms.find((t) => t.kind === "lm_head")!.forward;
  assertEquals(head(2), 2 * 2 * 8 * 64);
  assertEquals(head(1) * 2, head(2));
  assertThrows(() => analyticFlops(cfg(8), { batch: 0, labelsPerExample: 1 }), /batch/);
  assertThrows(() => analyticFlops(cfg(8), { batch: 1, labelsPerExample: 9 }), /exceed seqLen/);
});

Deno.test("analytic bytes, attention d=4 L=4 B=1 N=1 V=16: activations by hand (16-byte padding)", () => {
  const cfg = tiny("attention");
  // r0..r4 5·64; 4 block norms (out 64, mean 16, rstd 16); ln_f 96; mixer_out 64;
  // per MHA layer: qkv 192, attn_out 64, probs [1,1,4,4] 64; LM head: hg 16, logits 64, dhg 16, 3 row vectors 16.
  const inference = 320 + 4 * 96 + 96 + 64 + 2 * (192 + 64 + 64) + (16 + 64 + 16 + 48);
  assertEquals(inference, 1648);
  const infer = analyticBuffers(cfg, { batch: 1, labelsPerExample: 1, training: false });
  assertEquals(infer.byCategory.activations, inference);
  assertEquals(infer.byCategory.optimizer, 0);
  // Training adds grad.a/b/mixer_in and per MHA layer d_attn_out 64, dqkv 192, rowD 16.
  const train = analyticBuffers(cfg, { batch: 1, labelsPerExample: 1, training: true });
  assertEquals(train.byCategory.activations, inference + 3 * 64 + 2 * (64 + 192 + 16));
  // Parameters: params = grads, AdamW moments twice that; each tensor padded on its own.
  assertEquals(train.byCategory.grads, train.byCategory.params);
  assertEquals(train.byCategory.optimizer, 2 * train.byCategory.params);
  assertEquals(
    train.total,
    train.byCategory.params + train.byCategory.grads + train.byCategory.optimizer + train.byCategory.activations,
  );
  assert(train.buffers.every((b) => b.bytes >= 16 && b.bytes % 16 === 0 && b.bytes >= 4 * b.elements));
});

Deno.test("analytic bytes: attention keeps L×L probabilities at short L, flash (per-row lse) at long L", () => {
  const short = makeModelConfig({ mixer: "conv_attention", dModel: 64, seqLen: 1024 });
  const a = analyticBuffers(short, { batch: 8, labelsPerExample: 256, training: true });
  const probs = a.buffers.find((x) => x.name === "layers.1.mixer.attn.probs");
  assertEquals(probs?.bytes, 8 * 1024 * 1024 * 4);
  const long = makeModelConfig({ mixer: "conv_attention", dModel: 64, seqLen: 4096 });
  const b = analyticBuffers(long, { batch: 8, labelsPerExample: 1024, training: true });
  assertEquals(b.buffers.some((x) => x.name.endsWith("attn.probs")), false);
  assertEquals(b.buffers.find((x) => x.name === "layers.1.mixer.attn.lse")?.bytes, 8 * 4096 * 4);
  // The LM head's logits go through in chunks of at most 16 MiB (512 rows of 8192), whatever the batch.
  const lin = makeModelConfig({ mixer: "based", dModel: 64, seqLen: 4096 });
  const c = analyticBuffers(lin, { batch: 8, labelsPerExample: 1024, training: true });
  assertEquals(c.buffers.find((x) => x.name === "lm_head.logits")?.bytes, 512 * 8192 * 4);
  assertEquals(c.buffers.find((x) => x.name === "lm_head.dhgChunk")?.bytes, 512 * 64 * 4);
  assertEquals(c.buffers.find((x) => x.name === "lm_head.dhg")?.bytes, 8 * 1024 * 64 * 4);
  // One chunk holds every row: no separate chunk buffer.
  const one = analyticBuffers(lin, { batch: 1, labelsPerExample: 16, training: true });
  assertEquals(one.buffers.find((x) => x.name === "lm_head.logits")?.bytes, 16 * 8192 * 4);
  assertEquals(one.buffers.some((x) => x.name === "lm_head.dhgChunk"), false);
});

Deno.test("planBatch halves the batch until the largest buffer fits, or skips with a note", () => {
  const cfg = makeModelConfig({ mixer: "based", dModel: 64, seqLen: 4096 });
  const limit = 32 * 2 ** 20;
  const plan = planBatch(cfg, 16, 1024, limit, null);
  // q features [B·L, H·f]: 16·4096·192·4 B = 48 MiB at batch 16, 24 MiB at 8 (the LM head is chunked to fit).
  assertEquals(plan.batch, 8);
  assert(plan.note!.includes("batch reduced from 16 to 8") && plan.note!.includes("layers.1.mixer.q"), plan.note!);
  assertEquals(planBatch(cfg, 8, 1024, limit, null), { batch: 8, note: null });
  const skip = planBatch(cfg, 8, 4096, 2 * 2 ** 20, null);
  assertEquals(skip.batch, null);
  assert(skip.note!.startsWith("skipped: even at batch 1"), skip.note!);
  const budget = planBatch(makeModelConfig({ mixer: "based", dModel: 64, seqLen: 256 }), 8, 64, limit, 20 * 2 ** 20);
  assert(budget.batch !== null && budget.batch < 8 && budget.note!.includes("--max-memory-mib"), budget.note!);
});
