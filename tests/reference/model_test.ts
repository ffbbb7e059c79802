import { generateBatch, type MqarConfig } from "../../src/data/mqar.ts";
import { Rng } from "../../src/data/rng.ts";
import { makeModelConfig, type MixerName, MIXERS, type ModelConfig } from "../../src/model/config.ts";
import { initParams } from "../../src/model/init.ts";
import { paramSpec, POSITION_EMBEDDINGS, WORD_EMBEDDINGS } from "../../src/model/param_spec.ts";
import {
  type DropoutSeeds,
  modelBackward,
  type ModelBatch,
  modelForward,
  type ModelForwardOptions,
} from "../../src/reference/model.ts";
import { assert, assertEquals, assertNotEquals } from "../_helpers/assert.ts";

// Tiny shapes: d = 24 gives the linear-attention value head dim floor(24/12) = 2; N = 2 pairs fill L = 8 (4N = L).
const D = 24, L = 8, V = 64, B = 2;
const MQAR: MqarConfig = {
  vocabSize: V,
  seqLen: L,
  numKvPairs: 2,
  powerA: 0.01,
  randomNonQueries: false,
  dataSeed: 42,
  trainExamples: 16,
  testExamples: 4,
};
const SEEDS: DropoutSeeds = { embedding: 1234, attention: [77, 991] };
const EVAL: ModelForwardOptions = { training: false };
const TRAIN: ModelForwardOptions = { training: true, dropoutSeeds: SEEDS };

function config(mixer: MixerName): ModelConfig {
  return makeModelConfig({ mixer, dModel: D, seqLen: L, vocabSize: V });
}

function batch(indices: number[] = [0, 1]): ModelBatch {
  const { inputs, labelPositions, labelTargets } = generateBatch(MQAR, "train", indices);
  return { inputs, labelPositions, labelTargets };
}

/**
 * Init values plus N(0, 0.3) noise on every entry (LN γ around 1, β, biases away from 0): at the raw init most
 * gradients are ~1e-4 and several paths (β, biases) are exactly symmetric, which would make the checks weak.
 */
function noisyParams(cfg: ModelConfig, seed: number): Map<string, Float64Array> {
  const rng = new Rng(seed, 5);
  const out = new Map<string, Float64Array>();
  for (const [name, value] of initParams(cfg, seed)) {
    out.set(
      name,
      Float64Array.from(value, (v) => v + 0.3 * rng.normal()),
    );
  }
  return out;
}

/** eps = 1e-6 central differences in float64: truncation ~eps²·f''' and rounding ~1e-16·|loss|/eps ≈ 1e-9. */
const FD_EPS = 1e-6, FD_RTOL = 1e-5, FD_ATOL = 1e-8;
const SAMPLES_PER_TENSOR = 12;

/** Sample indices: random entries, plus (word embeddings) entries in rows of tokens that occur in the batch. */
function sampleIndices(name: string, size: number, b: ModelBatch, rng: Rng): number[] {
  const picks = new Set<number>();
  while (picks.size < Math.min(size, SAMPLES_PER_TENSOR)) picks.add(rng.int(0, size - 1));
  if (name === WORD_EMBEDDINGS) {
    for (const token of [b.inputs[0], b.inputs[1], b.labelTargets[0], 0]) picks.add(token * D + rng.int(0, D - 1));
  }
  return [...picks];
}

/** Checks the analytic gradient of every parameter tensor at sampled entries; returns the worst relative error. */
function checkAllGradients(mixer: MixerName, options: ModelForwardOptions, seed: number): number {
  const cfg = config(mixer), params = noisyParams(cfg, seed), b = batch();
  const result = modelForward(cfg, params, b, options);
  assert(Number.isFinite(result.loss), `${mixer}: loss ${result.loss}`);
  const grads = modelBackward(result.cache);
  const specNames = paramSpec(cfg).map((e) => e.name);
  assertEquals([...grads.keys()].sort(), [...specNames].sort());
  const rng = new Rng(seed, 11);
  let worst = 0;
  for (const name of specNames) {
    const x = params.get(name)!, analytic = grads.get(name)!;
    assertEquals(analytic.length, x.length, `${name}: gradient size`);
    // Every tensor must receive a real gradient, otherwise the comparison below would be vacuous.
    const maxAbs = analytic.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert(maxAbs > 1e-6, `${mixer}: ${name} has a (near) zero gradient, max ${maxAbs}`);
    for (const i of sampleIndices(name, x.length, b, rng)) {
      const orig = x[i];
      x[i] = orig + FD_EPS;
      const up = modelForward(cfg, params, b, options).loss;
      x[i] = orig - FD_EPS;
      const down = modelForward(cfg, params, b, options).loss;
      x[i] = orig;
      const fd = (up - down) / (2 * FD_EPS);
      const err = Math.abs(fd - analytic[i]);
      assert(
        err <= FD_ATOL + FD_RTOL * Math.abs(fd),
        `${mixer} (training ${options.training}): d loss/d ${name}[${i}]: finite difference ${fd}, analytic ${
          analytic[i]
        } (err ${err})`,
      );
      worst = Math.max(worst, err / (FD_ATOL + FD_RTOL * Math.abs(fd)));
    }
  }
  return worst;
}

for (const mixer of MIXERS) {
  Deno.test(`model reference ${mixer}: finite differences of every parameter's gradient (eval)`, () => {
    checkAllGradients(mixer, EVAL, 3);
  });
}

for (const mixer of ["attention", "conv_attention", "based"] as const) {
  Deno.test(`model reference ${mixer}: finite differences with fixed dropout masks (training)`, () => {
    checkAllGradients(mixer, TRAIN, 4);
  });
}

Deno.test("model reference: loss at init is ≈ ln V for every mixer, accuracy is counted", () => {
  for (const mixer of MIXERS) {
    const cfg = config(mixer);
    const r = modelForward(cfg, initParams(cfg, 0), batch(), EVAL);
    // Logits at init are ~N(0, 0.02²·d): the loss of 4 labelled positions is ln V ± about 0.05 (one init seed gave
    // mamba2 −0.095), so the check averages 8 init seeds.
    let mean = 0;
    for (let seed = 0; seed < 8; seed++) mean += modelForward(cfg, initParams(cfg, seed), batch(), EVAL).loss / 8;
    assert(Math.abs(mean - Math.log(V)) < 0.05, `${mixer}: mean loss at init ${mean} vs ln V ${Math.log(V)}`);
    assertEquals(r.logits.length, B * MQAR.numKvPairs * V);
    assert(Number.isInteger(r.correct) && r.correct >= 0 && r.correct <= B * MQAR.numKvPairs);
  }
});

Deno.test("model reference: correct count is argmax == target at the labelled positions", () => {
  const cfg = config("based"), b = batch();
  const params = noisyParams(cfg, 8);
  const r0 = modelForward(cfg, params, b, EVAL);
  let expected = 0;
  for (let p = 0; p < b.labelTargets.length; p++) {
    let best = 0;
    for (let v = 1; v < V; v++) if (r0.logits[p * V + v] > r0.logits[p * V + best]) best = v;
    if (best === b.labelTargets[p]) expected++;
  }
  assertEquals(r0.correct, expected);
  // Setting ln_f to output exactly the target's embedding direction makes every prediction correct: with γ = 0 and
  // β = WordEmb[t] (single label target repeated), logits = WordEmb·WordEmb[t], maximal at t when its norm dominates.
  const single: ModelBatch = { ...b, labelTargets: b.labelTargets.map(() => b.labelTargets[0]) };
  const word = params.get(WORD_EMBEDDINGS)!, t = b.labelTargets[0];
  for (let c = 0; c < D; c++) word[t * D + c] *= 10;
  params.get("backbone.ln_f.weight")!.fill(0);
  params.set("backbone.ln_f.bias", word.slice(t * D, (t + 1) * D));
  assertEquals(modelForward(cfg, params, single, EVAL).correct, single.labelTargets.length);
});

Deno.test("model reference: causal and per-example independent (eval and training)", () => {
  for (const mixer of ["attention", "conv_attention", "based", "rebased"] as const) {
    for (const options of [EVAL, TRAIN]) {
      const cfg = config(mixer), params = noisyParams(cfg, 6), b = batch();
      const base = modelForward(cfg, params, b, options);
      // Changing the last token of example 0 and every token of example 1 after position 0 must leave the labels of
      // example 0 before that point unchanged.
      const changed = b.inputs.slice();
      changed[L - 1] = (changed[L - 1] + 5) % V;
      const after = modelForward(cfg, params, { ...b, inputs: changed }, options);
      const last = b.labelPositions.findIndex((pos) => pos >= L - 1);
      const untouched = last === -1 ? b.labelPositions.length : last;
      assert(untouched > 0, "need a labelled position before the changed token");
      for (let i = 0; i < untouched * V; i++) {
        assert(base.logits[i] === after.logits[i], `${mixer}: logit ${i} changed by a later token`);
      }
      // Example 1's logits do not depend on example 0's tokens (no leakage across the batch).
      const other = b.inputs.slice();
      for (let t = 0; t < L; t++) other[t] = (other[t] + 3) % V;
      const swapped = modelForward(cfg, params, { ...b, inputs: other }, options);
      const firstOf1 = b.labelPositions.findIndex((pos) => pos >= L);
      for (let i = firstOf1 * V; i < base.logits.length; i++) {
        assert(base.logits[i] === swapped.logits[i], `${mixer}: example 0 leaked into example 1 (logit ${i})`);
      }
    }
  }
});

Deno.test("model reference: dropout is seeded, deterministic, and off in eval or at p = 0", () => {
  for (const mixer of ["attention", "conv_attention", "based"] as const) {
    const cfg = config(mixer), params = noisyParams(cfg, 9), b = batch();
    const evalLoss = modelForward(cfg, params, b, EVAL).loss;
    const a = modelForward(cfg, params, b, TRAIN).loss;
    assertEquals(modelForward(cfg, params, b, TRAIN).loss, a);
    assertNotEquals(a, evalLoss);
    const otherSeed = modelForward(cfg, params, b, {
      training: true,
      dropoutSeeds: { ...SEEDS, embedding: SEEDS.embedding + 1 },
    }).loss;
    assertNotEquals(otherSeed, a);
    const noDrop = modelForward(cfg, params, b, { ...TRAIN, embedDropout: 0, attentionDropout: 0 }).loss;
    assertEquals(noDrop, evalLoss);
    if (mixer !== "based") {
      // Attention dropout alone changes the loss, and its seed is read per layer.
      const attnOnly = { ...TRAIN, embedDropout: 0 };
      const l1 = modelForward(cfg, params, b, attnOnly).loss;
      assertNotEquals(l1, evalLoss);
      const l2 = modelForward(cfg, params, b, { ...attnOnly, dropoutSeeds: { ...SEEDS, attention: [77, 992] } }).loss;
      assertNotEquals(l2, l1);
    }
  }
  const cfg = config("based");
  let threw = false;
  try {
    modelForward(cfg, initParams(cfg, 0), batch(), { training: true });
  } catch {
    threw = true;
  }
  assert(threw, "training without seeds must throw");
});

Deno.test("model reference: Identity state mixer adds LN2(r) to the residual stream", () => {
  const cfg = config("conv_attention"), params = noisyParams(cfg, 10);
  const { activations: a } = modelForward(cfg, params, batch(), EVAL).cache;
  for (let i = 0; i < B * L * D; i++) {
    const next = a["layers.0.residual"][i] + a["layers.0.norm2"][i];
    assert(Math.abs(a["layers.1.input"][i] - next) < 1e-12, "layers.1.input = residual_0 + LN2_0(residual_0)");
    const fin = a["layers.1.residual"][i] + a["layers.1.norm2"][i];
    assert(Math.abs(a["final_residual"][i] - fin) < 1e-12, "final residual = residual_1 + LN2_1(residual_1)");
    const res0 = a["layers.0.input"][i] + a["layers.0.mixer"][i];
    assert(Math.abs(a["layers.0.residual"][i] - res0) < 1e-12, "residual_0 = r + Mixer_0(LN1_0(r))");
  }
  // LN2 outputs O(1) values, so the quirk is far from a no-op.
  const n2 = a["layers.1.norm2"].reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  assert(n2 > 0.1);
});

Deno.test("model reference: ReBased variants agree exactly where their transforms coincide", () => {
  const b = batch();
  const prefix = "backbone.layers.1.sequence_mixer.mixer.";
  // Shared parameters (embeddings, BaseConv, norms, projections) from one noisy set.
  const shared = noisyParams(config("rebased_gamma_beta"), 12);
  const rng = new Rng(12, 3);
  const gammaQ = Float64Array.from({ length: 192 }, () => 1 + 0.3 * rng.normal());
  const gammaK = Float64Array.from({ length: 192 }, () => 1 + 0.3 * rng.normal());
  const betaQ = Float64Array.from({ length: 192 }, () => 0.3 * rng.normal());
  const betaK = Float64Array.from({ length: 192 }, () => 0.3 * rng.normal());
  const withTransform = (mixer: MixerName, named: Record<string, Float64Array>) => {
    const cfg = config(mixer);
    const params = new Map<string, Float64Array>();
    for (const entry of paramSpec(cfg)) {
      params.set(entry.name, named[entry.name] ?? shared.get(entry.name)!);
    }
    return modelForward(cfg, params, b, EVAL);
  };
  const ones = new Float64Array(192).fill(1), zeros = new Float64Array(192);
  const same = (x: { logits: Float64Array }, y: { logits: Float64Array }) =>
    x.logits.every((v, i) => v === y.logits[i]);
  // (γx+β)² with β = 0 is (γx)².
  const gb0 = withTransform("rebased_gamma_beta", {
    [`${prefix}ln_q.gamma`]: gammaQ,
    [`${prefix}ln_k.gamma`]: gammaK,
    [`${prefix}ln_q.beta`]: zeros,
    [`${prefix}ln_k.beta`]: zeros,
  });
  const g = withTransform("rebased_gamma", { [`${prefix}ln_q.gamma`]: gammaQ, [`${prefix}ln_k.gamma`]: gammaK });
  assert(same(gb0, g), "rebased_gamma_beta(γ, 0) == rebased_gamma(γ)");
  // γ = 1, β = 0 is the untransformed x².
  const id = withTransform("rebased_gamma_beta", {
    [`${prefix}ln_q.gamma`]: ones,
    [`${prefix}ln_k.gamma`]: ones,
    [`${prefix}ln_q.beta`]: zeros,
    [`${prefix}ln_k.beta`]: zeros,
  });
  assert(same(id, withTransform("rebased_x2", {})), "rebased_gamma_beta(1, 0) == rebased_x2");
  // ReBased = LayerNorm then the same affine: identical γ/β (stored as weight/bias) give a DIFFERENT model than the
  // Scaler, since only ReBased normalises; with γ = 1, β = 0 it matches Normalizer up to its eps outside the sqrt.
  const rebased = withTransform("rebased", {
    [`${prefix}ln_q.weight`]: gammaQ,
    [`${prefix}ln_k.weight`]: gammaK,
    [`${prefix}ln_q.bias`]: betaQ,
    [`${prefix}ln_k.bias`]: betaK,
  });
  const scaler = withTransform("rebased_gamma_beta", {
    [`${prefix}ln_q.gamma`]: gammaQ,
    [`${prefix}ln_k.gamma`]: gammaK,
    [`${prefix}ln_q.beta`]: betaQ,
    [`${prefix}ln_k.beta`]: betaK,
  });
  assert(!same(rebased, scaler), "ReBased normalises, the Scaler does not");
  const lnIdentity = withTransform("rebased", {
    [`${prefix}ln_q.weight`]: ones,
    [`${prefix}ln_k.weight`]: ones,
    [`${prefix}ln_q.bias`]: zeros,
    [`${prefix}ln_k.bias`]: zeros,
  });
  const norm = withTransform("rebased_norm", {});
  const maxDiff = lnIdentity.logits.reduce((m, v, i) => Math.max(m, Math.abs(v - norm.logits[i])), 0);
  assert(maxDiff > 0 && maxDiff < 1e-3, `rebased(1, 0) vs rebased_norm: max logit difference ${maxDiff}`);
});

Deno.test("model reference: rejects missing or mis-sized parameters and bad batches", () => {
  const cfg = config("attention");
  const params = initParams(cfg, 0);
  const b = batch();
  const throws = (fn: () => unknown) => {
    try {
      fn();
    } catch {
      return true;
    }
    return false;
  };
  const missing = new Map(params);
  missing.delete(POSITION_EMBEDDINGS);
  assert(throws(() => modelForward(cfg, missing, b, EVAL)));
  const wrong = new Map(params);
  wrong.set(POSITION_EMBEDDINGS, new Float32Array(3));
  assert(throws(() => modelForward(cfg, wrong, b, EVAL)));
  assert(throws(() => modelForward(cfg, params, { ...b, inputs: b.inputs.slice(1) }, EVAL)));
  assert(throws(() => modelForward(cfg, params, { ...b, labelTargets: b.labelTargets.map(() => V) }, EVAL)));
});
