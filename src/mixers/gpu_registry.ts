/**
 * GPU builders by layer kind (LayerDescriptor.kind): the GPU half of each mixer, kept apart from the pure descriptors
 * so the reference, the reports and the cost model never import GPU code. tests/mixers/registry_test.ts checks that
 * every layer of every trainable architecture has one.
 */
import { buildBaseConv } from "./base_conv_gpu.ts";
import { buildMha } from "./mha_gpu.ts";
import { buildLinearAttention } from "./linear_attention_gpu.ts";
import { buildRwkvTimeMix } from "./rwkv_gpu.ts";
import { buildMamba } from "./mamba_gpu.ts";
import { buildHyena } from "./hyena_gpu.ts";
import { buildDeltaNet } from "./delta_net_gpu.ts";
import { buildMamba2 } from "./mamba2_gpu.ts";
import type { LayerDescriptor } from "./descriptor.ts";
import type { MixerBuilder } from "./types.ts";

export const GPU_BUILDERS: Readonly<Record<string, MixerBuilder>> = {
  base_conv: buildBaseConv,
  mha: buildMha,
  linear_attention: buildLinearAttention,
  rwkv_time_mix: buildRwkvTimeMix,
  mamba: buildMamba,
  hyena: buildHyena,
  delta_net: buildDeltaNet,
  mamba2: buildMamba2,
};

export function gpuBuilder(layer: LayerDescriptor): MixerBuilder {
  const build = GPU_BUILDERS[layer.kind];
  if (!build) throw new Error(`no GPU builder for layer kind "${layer.kind}" (${layer.label}): see gpu_registry.ts`);
  return build;
}
