/** Deterministic parameter initialisation from the spec's descriptors (spec §2.4), one RNG stream per parameter. */
import { Rng } from "../data/rng.ts";
import type { ModelConfig } from "./config.ts";
import { type InitDescriptor, numel, paramSpec } from "./param_spec.ts";

/** Separates init streams from the data streams that share the Rng (the data code uses other first words). */
export const INIT_STREAM = 0x1a17_0001;

/**
 * 32-bit FNV-1a of a parameter name. Streams are keyed by name rather than position so that, for one seed, the
 * parameters two mixers share (embeddings, BaseConv, norms, proj_q/k/v/o) start identical: runs that differ only in the
 * mixer then differ only where the mixers do.
 */
export function paramStreamId(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Fills `out` from `init`, drawing from `rng` (untouched for constant inits). */
export function fillInit(out: Float32Array, init: InitDescriptor, rng: Rng): void {
  switch (init.kind) {
    case "zeros":
      out.fill(0);
      return;
    case "ones":
      out.fill(1);
      return;
    case "normal":
      for (let i = 0; i < out.length; i++) out[i] = init.mean + init.std * rng.normal();
      return;
    case "uniform": {
      const span = init.high - init.low;
      for (let i = 0; i < out.length; i++) out[i] = init.low + span * rng.uniform();
      return;
    }
    case "logUniform": {
      // 1 − u ∈ (0, 1]: a low of 0 never gives log 0.
      const span = init.high - init.low;
      for (let i = 0; i < out.length; i++) out[i] = Math.log(init.low + span * (1 - rng.uniform()));
      return;
    }
    case "inverseSoftplusLogUniform": {
      const [lo, hi] = [Math.log(init.low), Math.log(init.high)];
      for (let i = 0; i < out.length; i++) {
        const dt = Math.max(init.floor, Math.exp(lo + (hi - lo) * rng.uniform()));
        out[i] = dt + Math.log(-Math.expm1(-dt)); // softplus⁻¹(dt) = log(exp(dt) − 1)
      }
      return;
    }
    case "values":
      if (init.values.length !== out.length) {
        throw new Error(`fillInit: ${init.values.length} values for ${out.length} elements`);
      }
      out.set(init.values);
      return;
  }
}

/** Initial parameters by state_dict name, in paramSpec order. The same (cfg, seed) always gives the same bits. */
export function initParams(cfg: ModelConfig, seed: number): Map<string, Float32Array> {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new Error(`initParams: seed ${seed} must be a non-negative integer`);
  }
  const params = new Map<string, Float32Array>();
  for (const entry of paramSpec(cfg)) {
    const data = new Float32Array(numel(entry.shape));
    fillInit(data, entry.init, new Rng(seed, INIT_STREAM, paramStreamId(entry.name)));
    params.set(entry.name, data);
  }
  return params;
}
