import { assertEquals } from "../_helpers/assert.ts";
import { makeArchConfig, MIXERS } from "../../src/model/config.ts";
import { stateSize } from "../../src/model/state_size.ts";

Deno.test("state size: KV cache of softmax attention at L, of w + 1 tokens with a window; every mixer says it", () => {
  const d = 64, L = 2048;
  const conv = 2 * d; // BaseConv's short conv (k = 3) keeps the last 2 inputs
  assertEquals(stateSize(makeArchConfig({ mixer: "conv_attention", dModel: d, seqLen: L })).total, conv + 2 * d * L);
  assertEquals(stateSize(makeArchConfig({ mixer: "attention", dModel: d, seqLen: L })).perLayer, [
    2 * d * L,
    2 * d * L,
  ]);
  assertEquals(
    stateSize(makeArchConfig({ mixer: "sliding_window", dModel: d, seqLen: L, window: 64 })).perLayer,
    [conv, 2 * d * 65],
  );
  // A window past L is the whole cache.
  assertEquals(
    stateSize(makeArchConfig({ mixer: "sliding_window", dModel: d, seqLen: 128, window: 256 })).perLayer,
    [conv, 2 * d * 128],
  );
  for (const mixer of MIXERS) {
    const s = stateSize(makeArchConfig({ mixer, dModel: d, seqLen: L }));
    assertEquals(s.perLayer.every((n) => typeof n === "number" && n > 0), true, mixer);
  }
  // Recurrent mixers keep a state that does not grow with L.
  for (const mixer of ["based", "rebased", "rwkv", "mamba", "deltanet", "gated_deltanet", "mamba2"] as const) {
    const at = (seqLen: number) => stateSize(makeArchConfig({ mixer, dModel: d, seqLen })).total;
    assertEquals(at(256), at(2048), mixer);
  }
});
