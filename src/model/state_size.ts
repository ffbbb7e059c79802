/**
 * Recurrent state per layer in floats for one sequence at length L (the axis zoology's recall plots use): each layer's
 * descriptor says it (softmax attention: its KV cache at L; sliding window: of w + 1 tokens; linear attention, RWKV,
 * Mamba: their fixed-size states; BaseConv and Hyena: what their convolutions keep).
 */
import { architecture } from "../mixers/registry.ts";
import type { ArchConfig } from "./arch_config.ts";

export interface StateSize {
  /** Floats per layer (layer 0, layer 1); null where a layer does not say. */
  perLayer: (number | null)[];
  /** Their sum (null if any layer does not say). */
  total: number | null;
}

export function stateSize(cfg: ArchConfig): StateSize {
  const perLayer = architecture(cfg.mixer).layers.map((l) => l.stateFloats?.(cfg) ?? null);
  const total = perLayer.every((n) => n !== null) ? perLayer.reduce((a: number, n) => a + n!, 0) : null;
  return { perLayer, total };
}
