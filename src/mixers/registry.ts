/**
 * Model name → the mixers of its two layers (spec §2.2). A new mixer is one file in this folder plus one line here.
 * Every model but `attention` has BaseConv in layer 0.
 */
import type { MixerName } from "../model/config.ts";
import { buildBaseConv } from "./base_conv.ts";
import { buildBased } from "./based.ts";
import { buildMha } from "./mha.ts";
import { rebasedBuilder } from "./rebased.ts";
import type { MixerBuilder } from "./types.ts";

export const MODEL_LAYERS: Readonly<Record<MixerName, readonly [MixerBuilder, MixerBuilder]>> = {
  attention: [buildMha, buildMha],
  conv_attention: [buildBaseConv, buildMha],
  based: [buildBaseConv, buildBased],
  rebased: [buildBaseConv, rebasedBuilder("rebased")],
  rebased_x2: [buildBaseConv, rebasedBuilder("rebased_x2")],
  rebased_gamma: [buildBaseConv, rebasedBuilder("rebased_gamma")],
  rebased_gamma_beta: [buildBaseConv, rebasedBuilder("rebased_gamma_beta")],
  rebased_norm: [buildBaseConv, rebasedBuilder("rebased_norm")],
};

export function layerBuilders(mixer: MixerName): readonly [MixerBuilder, MixerBuilder] {
  return MODEL_LAYERS[mixer];
}
