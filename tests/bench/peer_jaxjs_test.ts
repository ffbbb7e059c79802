/**
 * The jax-js peer (benchmarks/peer_jaxjs.ts) must compute the same model as ours, checked at a tiny shape against the
 * float64 reference (src/reference/model.ts), dropout off:
 * - its loss equals `modelForward`, at init and at random parameters where every module matters (at init the logits
 *   are ~0 and the loss is ~ln V whatever the mixer does);
 * - its autodiff gradients equal `modelBackward`;
 * - the benchmark's jitted training step, run three times, equals reference gradients + reference AdamW.
 * Observed float32-vs-float64 agreement: loss ~1e-7 relative, gradients ~1e-6 of each tensor's largest entry,
 * parameters after 3 steps ~4e-5·lr; the tolerances below leave ~15-25x headroom, tight enough to catch e.g. a 10%
 * error in Based's s²/2 coefficient (loss off by ~1.5e-5 relative).
 */
import { generateBatch, type MqarBatch, type MqarConfig } from "../../src/data/mqar.ts";
import { Rng } from "../../src/data/rng.ts";
import { makeModelConfig, type ModelConfig } from "../../src/model/config.ts";
import { initParams } from "../../src/model/init.ts";
import { ADAMW_DEFAULTS, adamwStepRef } from "../../src/reference/adamw.ts";
import { modelBackward, modelForward } from "../../src/reference/model.ts";
import {
  PEER_MIXERS,
  peerGradients,
  peerLossValue,
  type PeerMixer,
  peerTrainSteps,
} from "../../benchmarks/peer_jaxjs.ts";
import { assert, assertAlmostEquals } from "../_helpers/assert.ts";
import { gpuTest } from "../_helpers/gpu.ts";

const LOSS_RTOL = 2e-6;
const GRAD_TOL = 2e-5; // × the tensor's largest |gradient|
const PARAM_TOL = 1e-3; // × lr, after 3 AdamW steps

/** d = 24 gives 12 heads of value dim 2 for Based/ReBased; V = 64 keeps the LM head small; N = 4 pairs in L = 16. */
const MQAR: MqarConfig = {
  vocabSize: 64,
  seqLen: 16,
  numKvPairs: 4,
  powerA: 0.01,
  randomNonQueries: false,
  dataSeed: 42,
  trainExamples: 100,
  testExamples: 10,
};

const tinyConfig = (mixer: PeerMixer): ModelConfig => makeModelConfig({ mixer, dModel: 24, seqLen: 16, vocabSize: 64 });
const batchOf = (first: number): MqarBatch => generateBatch(MQAR, "train", [first, first + 1]);

/** Every parameter redrawn so that no module is negligible: γ ≈ 1 ± 0.3, everything else N(0, 0.3). */
function randomParams(cfg: ModelConfig, seed: number): Map<string, Float32Array> {
  const rng = new Rng(seed, 77);
  const out = new Map<string, Float32Array>();
  for (const [name, v] of initParams(cfg, seed)) {
    const isGamma = /norm[12]\.weight$|ln_f\.weight$|ln_[qk]\.weight$/.test(name);
    out.set(name, Float32Array.from(v, () => (isGamma ? 1 : 0) + 0.3 * rng.normal()));
  }
  return out;
}

for (const mixer of PEER_MIXERS) {
  Deno.test({
    name: `jax-js peer: loss and gradients equal the float64 reference (${mixer})`,
    ...gpuTest,
    fn: async () => {
      const cfg = tinyConfig(mixer), batch = batchOf(3);
      for (const [what, params] of [["init", initParams(cfg, 5)], ["random", randomParams(cfg, 5)]] as const) {
        const ref = modelForward(cfg, params, batch, { training: false }).loss;
        const peer = await peerLossValue(cfg, params, batch);
        assertAlmostEquals(peer, ref, LOSS_RTOL * ref, `${mixer} ${what}: peer loss ${peer}, reference ${ref}`);
      }
      const params = randomParams(cfg, 9);
      const ref = modelBackward(modelForward(cfg, params, batch, { training: false }).cache);
      const peer = await peerGradients(cfg, params, batch);
      for (const [name, g] of ref) {
        const p = peer.get(name);
        assert(p && p.length === g.length, `${mixer}: gradient ${name} missing or mis-sized`);
        const scale = Math.max(1e-3, ...Array.from(g, Math.abs));
        for (let i = 0; i < g.length; i++) {
          assertAlmostEquals(p[i], g[i], GRAD_TOL * scale, `${mixer} d ${name}[${i}]: peer ${p[i]}, ref ${g[i]}`);
        }
      }
    },
  });
}

for (const mixer of ["rebased", "attention"] as const) {
  Deno.test({
    name: `jax-js peer: 3 jitted training steps equal reference gradients + AdamW (${mixer})`,
    ...gpuTest,
    fn: async () => {
      const lr = 1e-2, cfg = tinyConfig(mixer);
      const batches = [batchOf(0), batchOf(2), batchOf(4)];
      const start = randomParams(cfg, 11);
      const peer = await peerTrainSteps(cfg, start, batches, lr);

      const params = new Map([...start].map(([k, x]) => [k, Float64Array.from(x)]));
      const m = new Map([...start].map(([k, x]) => [k, new Float64Array(x.length)]));
      const v = new Map([...start].map(([k, x]) => [k, new Float64Array(x.length)]));
      const minAbsGrad = new Map([...start].map(([k, x]) => [k, new Float64Array(x.length).fill(Infinity)]));
      for (let s = 0; s < batches.length; s++) {
        const fwd = modelForward(cfg, params, batches[s], { training: false });
        assertAlmostEquals(peer.losses[s], fwd.loss, LOSS_RTOL * fwd.loss, `${mixer}: loss before step ${s + 1}`);
        const grads = modelBackward(fwd.cache);
        for (const [k, g] of grads) {
          const mg = minAbsGrad.get(k)!;
          for (let i = 0; i < g.length; i++) mg[i] = Math.min(mg[i], Math.abs(g[i]));
        }
        const tensors = [...params.keys()].map((k) => ({ param: params.get(k)!, grad: grads.get(k)!, ...mv(k) }));
        adamwStepRef(tensors, s + 1, { lr, ...ADAMW_DEFAULTS });
      }
      function mv(k: string) {
        return { m: m.get(k)!, v: v.get(k)! };
      }

      let compared = 0;
      for (const [name, ref] of params) {
        const got = peer.params.get(name)!, mg = minAbsGrad.get(name)!;
        for (let i = 0; i < ref.length; i++) {
          // Adam's first steps move a weight by ~lr·sign(g): where some step's |g| is at float32 noise level the sign
          // (and so the whole step) may legitimately differ, so those entries are skipped.
          if (mg[i] < 1e-5) continue;
          compared++;
          assertAlmostEquals(got[i], ref[i], PARAM_TOL * lr, `${mixer} ${name}[${i}] after 3 steps`);
        }
      }
      assert(compared > 2000, `${mixer}: only ${compared} entries compared`);
    },
  });
}
