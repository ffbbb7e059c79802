/** Based (spec §3.3): Taylor kernel 1 + s + s²/2 on raw q, k; 12 heads, f = 16, eps 1e-12. */
import { buildLinearAttentionLayer } from "./_linear_attention_layer.ts";
import type { MixerBuilder } from "./types.ts";

export const buildBased: MixerBuilder = (ctx) => buildLinearAttentionLayer(ctx, "based", null);
