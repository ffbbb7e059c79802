/**
 * Every architecture, one line each (spec §2.2). Everything else is derived from this list: the trainable mixer names,
 * help texts, labels in parameter tables and reports, parameter specs and counts, the float64 reference model, the
 * analytic cost model and config validation. A new mixer: its descriptor file (descriptor.ts explains the parts), its
 * GPU builder (gpu_registry.ts), its ops/kernels/reference files, its tests, and one line here.
 */
import { attention, convAttention, slidingWindow } from "./mha.ts";
import { based, rebased, rebasedGamma, rebasedGammaBeta, rebasedNorm, rebasedX2 } from "./linear_attention.ts";
import { convRwkv, rwkv } from "./rwkv.ts";
import { mamba } from "./mamba.ts";
import { hyena } from "./hyena.ts";
import { deltaNet, gatedDeltaNet } from "./delta_net.ts";
import { mamba2 } from "./mamba2.ts";
import type { ArchDescriptor } from "./descriptor.ts";

export const ARCHITECTURES = [
  attention,
  convAttention,
  based,
  rebased,
  rebasedX2,
  rebasedGamma,
  rebasedGammaBeta,
  rebasedNorm,
  rwkv,
  convRwkv,
  mamba,
  hyena,
  slidingWindow,
  deltaNet,
  gatedDeltaNet,
  mamba2,
] as const;

type Registered = typeof ARCHITECTURES[number];
export type ArchName = Registered["name"];
/** Names of the architectures that train. */
export type MixerName = Extract<Registered, { trainable: true }>["name"];

const BY_NAME: ReadonlyMap<string, ArchDescriptor> = new Map(ARCHITECTURES.map((a) => [a.name, a]));

/** The descriptor of `name`, or undefined for an unknown name (callers report it with the valid names). */
export function findArchitecture(name: string): ArchDescriptor | undefined {
  return BY_NAME.get(name);
}

/** The descriptor of a name already validated (src/model/config.ts); throws for an unknown one. */
export function architecture(name: string): ArchDescriptor {
  const arch = BY_NAME.get(name);
  if (!arch) throw new Error(`unknown architecture ${JSON.stringify(name)}; known: ${[...BY_NAME.keys()].join(", ")}`);
  return arch;
}
