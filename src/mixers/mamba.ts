/**
 * Mamba (spec §3.5; d_inner = 2d, d_state 16, d_conv 4, dt_rank ⌈d/16⌉) in the Mamba block (fused add + RMSNorm, no
 * LN2, no embedding dropout). Count-only for now (the paper's Table 4): its parameters and their count are exact, the
 * selective scan is not implemented yet.
 */
import { conv1dDefault, defineArch, type LayerDescriptor, ONES } from "./descriptor.ts";

const D_STATE = 16, D_CONV = 4;

function notTrainable(): never {
  throw new Error("mamba: count-only (no reference, cost model or GPU kernels yet)");
}

export const mambaLayer: LayerDescriptor<null> = {
  kind: "mamba",
  label: "Mamba",
  options: null,
  params(m, cfg) {
    const d = cfg.dModel, inner = 2 * d, dtRank = Math.ceil(d / 16);
    m.linear("in_proj", 2 * inner, d, false);
    m.add("conv1d.weight", [inner, 1, D_CONV], conv1dDefault(D_CONV));
    m.add("conv1d.bias", [inner], conv1dDefault(D_CONV));
    m.linear("x_proj", dtRank + 2 * D_STATE, inner, false);
    m.linear("dt_proj", inner, dtRank, true);
    m.add("A_log", [inner, D_STATE], null); // log(1..16) per row: not described until the mixer trains
    m.add("D", [inner], ONES);
    m.linear("out_proj", d, inner, false);
  },
  reference: notTrainable,
  flops: notTrainable,
  activations: notTrainable,
  stateFloats: (cfg) => 2 * cfg.dModel * (D_STATE + D_CONV - 1),
};

export const mamba = defineArch({
  name: "mamba",
  label: "Mamba",
  summary: "two Mamba blocks",
  block: "mamba",
  layers: [mambaLayer, mambaLayer],
  trainable: false,
  // Vd + Ld + 4d (2 RMSNorms + ln_f) + 2·(6d² + 4d⌈d/16⌉ + 110d).
  paramFormula: ({ dModel: d, vocabSize: V, seqLen: L }) =>
    V * d + L * d + 12 * d * d + 8 * d * Math.ceil(d / 16) + 224 * d,
});
