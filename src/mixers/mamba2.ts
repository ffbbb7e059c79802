/**
 * Mamba-2 (zoology/mixers/mamba2.py, Mamba2 in its Mamba2Block, as zoology's models_repo.py add_mamba2 builds it; d_state
 * N = 16 of that sweep's {8, 16, 24}, the rest the file's defaults: expand 2 (Di = 2d), headdim P = 64 (H = Di/64
 * heads; one head of Di where 64 does not divide Di, which zoology refuses), one group, d_conv 4 with bias, no in/out bias, RMSNormGated with norm_before_gate False):
 *   (z | xBC | dt̃) = in_proj(u); (x | B | C) = SiLU(conv4(xBC) + bias); dt = softplus(dt̃ + dt_bias);
 *   y_h = SSD: S_t = exp(−exp(A_log[h])·dt_t)·S_{t−1} + dt_t·x_t·B_tᵀ, y_t = S_t·C_t (the delta-rule ops' additive
 *   update, B and C shared by the heads); y += D[h]·x; out = out_proj(RMSNorm(y ⊙ SiLU(z))·w).
 * The block is the Mamba block (fused residual add + RMSNorm, no LN2). Init as the file's: A_log = log U(1, 16),
 * dt_bias = softplus⁻¹ of a log-uniform dt in [1e-3, 0.1] (floor 1e-4), D = 1, conv PyTorch's default U(±1/2),
 * Linear weights by _init_weights (N(0, 0.02), out_proj rescaled). GPU builder: mamba2_gpu.ts.
 */
import type { ArchConfig } from "../model/arch_config.ts";
import { linearBackward, linearForward } from "../reference/matmul.ts";
import {
  causalConvSiluBackwardRef,
  causalConvSiluForwardRef,
  D_CONV,
  rmsNormBackwardRef,
  rmsNormForwardRef,
  siluGateBackwardRef,
  siluGateForwardRef,
} from "../reference/mamba.ts";
import {
  deltaRuleBackwardRef,
  deltaRuleForwardRef,
  dtGatesBackwardRef,
  dtGatesForwardRef,
} from "../reference/delta_rule.ts";
import { deltaPlan } from "../ops/delta_rule.ts";
import { conv1dDefault, defineArch, type FlopTerm, type LayerDescriptor, linearFlops, ONES } from "./descriptor.ts";

export const MAMBA2_D_STATE = 16;
export const MAMBA2_HEAD_DIM = 64;

/** The widths of one Mamba-2 mixer. */
export function mamba2Widths(cfg: Pick<ArchConfig, "dModel">) {
  const d = cfg.dModel, Di = 2 * d, N = MAMBA2_D_STATE;
  // zoology asserts d_inner % headdim == 0; below that (the small d of tests and ablations) one head of d_inner.
  const P = Di % MAMBA2_HEAD_DIM === 0 ? MAMBA2_HEAD_DIM : Di, H = Di / P;
  const conv = Di + 2 * N;
  return { d, Di, N, P, H, conv, inProj: Di + conv + H };
}

/** Activation buffers of the GPU builder: name → width. */
export function mamba2Buffers(cfg: Pick<ArchConfig, "dModel">, training: boolean): [string, number][] {
  const { Di, N, H, conv, inProj } = mamba2Widths(cfg);
  const forward: [string, number][] = [
    ["zx", inProj],
    ["xbc", conv],
    ["xs", Di],
    ["Bb", H * N],
    ["Cb", H * N],
    ["dt_in", H],
    ["gates", 2 * H],
    ["y", Di],
    ["y2", Di],
    ["yg", Di],
    ["rstd", 1],
    ["yn", Di],
  ];
  const backward: [string, number][] = [
    ["dyn", Di],
    ["dyg", Di],
    ["dy2", Di],
    ["dzx", inProj],
    ["dxs", Di],
    ["dBb", H * N],
    ["dCb", H * N],
    ["dgates", 2 * H],
    ["dxbc", conv],
    ["ddt", H],
  ];
  return training ? [...forward, ...backward] : forward;
}

/** Columns [offset, offset + width) of a [rows, stride] matrix. */
function columns(m: ArrayLike<number>, rows: number, stride: number, offset: number, width: number): Float64Array {
  const out = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) for (let c = 0; c < width; c++) out[r * width + c] = m[r * stride + offset + c];
  return out;
}

/** [rows, N] → [rows, H·N], the same N values for every head. */
function broadcastHeads(m: Float64Array, rows: number, N: number, H: number): Float64Array {
  const out = new Float64Array(rows * H * N);
  for (let r = 0; r < rows; r++) for (let h = 0; h < H; h++) out.set(m.subarray(r * N, (r + 1) * N), (r * H + h) * N);
  return out;
}

/** Per token and state entry: the additive update's multiply-adds, forward and backward. */
const SSD_FLOPS = { forward: 6, backward: 18 };

export const mamba2Layer: LayerDescriptor<null> = {
  kind: "mamba2",
  label: "Mamba2",
  options: null,
  params(m, cfg) {
    const { d, Di, H, conv, inProj } = mamba2Widths(cfg);
    m.linear("in_proj", inProj, d, false);
    m.add("conv1d.weight", [conv, 1, D_CONV], conv1dDefault(D_CONV));
    m.add("conv1d.bias", [conv], conv1dDefault(D_CONV));
    m.add("dt_bias", [H], { kind: "inverseSoftplusLogUniform", low: 1e-3, high: 0.1, floor: 1e-4 });
    m.add("A_log", [H], { kind: "logUniform", low: 1, high: 16 });
    m.add("D", [H], ONES);
    m.add("norm.weight", [Di], ONES);
    m.linear("out_proj", d, Di, false);
  },
  reference(ctx, u) {
    const { cfg, batch } = ctx;
    const { d, Di, N, P, H, conv: W, inProj } = mamba2Widths(cfg), rows = batch * cfg.seqLen;
    const p = (name: string) => ctx.param(name);
    const zx = linearForward(u, p("in_proj.weight"), undefined, rows, inProj, d);
    const z = columns(zx, rows, inProj, 0, Di), dtIn = columns(zx, rows, inProj, Di + W, H);
    const convIn = { x: columns(zx, rows, inProj, Di, W), weight: p("conv1d.weight"), bias: p("conv1d.bias") };
    const convShape = { batch, seqLen: cfg.seqLen, channels: W };
    const xbc = causalConvSiluForwardRef(convIn, convShape);
    const xs = columns(xbc, rows, W, 0, Di);
    const Bb = broadcastHeads(columns(xbc, rows, W, Di, N), rows, N, H);
    const Cb = broadcastHeads(columns(xbc, rows, W, Di + N, N), rows, N, H);
    const gates = dtGatesForwardRef(dtIn, p("A_log"), p("dt_bias"), H);
    const shape = { batch, seqLen: cfg.seqLen, heads: H, keyDim: N, valueDim: P };
    const ssdIn = { q: Cb, k: Bb, v: xs, beta: gates.beta, g: gates.g, update: "additive" as const };
    const y = deltaRuleForwardRef(ssdIn, shape, 1);
    const D = p("D");
    const y2 = y.map((v, i) => v + D[Math.floor(i / P) % H] * xs[i]);
    const yg = siluGateForwardRef(y2, z);
    const norm = { rows, width: Di };
    const yn = rmsNormForwardRef(yg, p("norm.weight"), norm).y;
    const out = linearForward(yn, p("out_proj.weight"), undefined, rows, d, Di);
    return {
      y: out,
      backward: (dout) => {
        const lo = linearBackward(yn, p("out_proj.weight"), dout, rows, d, Di);
        const rn = rmsNormBackwardRef(yg, p("norm.weight"), lo.dx, norm);
        const gate = siluGateBackwardRef(y2, z, rn.dx);
        const s = deltaRuleBackwardRef(ssdIn, gate.dy, shape, 1);
        const dg = dtGatesBackwardRef(dtIn, p("A_log"), p("dt_bias"), H, s.dbeta, s.dg!);
        const dD = new Float64Array(H), dxbc = new Float64Array(rows * W);
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < Di; c++) {
            const i = r * Di + c, h = Math.floor(c / P);
            dxbc[r * W + c] = s.dv[i] + D[h] * gate.dy[i];
            dD[h] += gate.dy[i] * xs[i];
          }
          for (let n = 0; n < N; n++) {
            for (let h = 0; h < H; h++) {
              dxbc[r * W + Di + n] += s.dk[(r * H + h) * N + n];
              dxbc[r * W + Di + N + n] += s.dq[(r * H + h) * N + n];
            }
          }
        }
        const c = causalConvSiluBackwardRef(convIn, dxbc, convShape);
        const dzx = new Float64Array(rows * inProj);
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < Di; j++) dzx[r * inProj + j] = gate.dz[r * Di + j];
          for (let j = 0; j < W; j++) dzx[r * inProj + Di + j] = c.dx[r * W + j];
          for (let h = 0; h < H; h++) dzx[r * inProj + Di + W + h] = dg.dx[r * H + h];
        }
        const li = linearBackward(u, p("in_proj.weight"), dzx, rows, inProj, d);
        return {
          du: li.dx,
          grads: new Map([
            [ctx.name("in_proj.weight"), li.dw],
            [ctx.name("conv1d.weight"), c.dweight],
            [ctx.name("conv1d.bias"), c.dbias],
            [ctx.name("dt_bias"), dg.dDtBias],
            [ctx.name("A_log"), dg.dA_log],
            [ctx.name("D"), dD],
            [ctx.name("norm.weight"), rn.dweight],
            [ctx.name("out_proj.weight"), lo.dw],
          ]),
        };
      },
    };
  },
  flops({ cfg, rows, label }) {
    const { d, Di, N, H, P, conv, inProj } = mamba2Widths(cfg);
    const convFlops = 2 * D_CONV * rows * conv, state = rows * H * P * N;
    const terms: FlopTerm[] = [
      linearFlops(`${label}.in_proj`, rows, d, inProj),
      { name: `${label}.conv`, kind: "conv", forward: convFlops, backward: 2 * convFlops },
      {
        name: `${label}.ssd`,
        kind: "recurrence",
        forward: SSD_FLOPS.forward * state,
        backward: SSD_FLOPS.backward * state,
      },
      linearFlops(`${label}.out_proj`, rows, Di, d),
    ];
    return terms;
  },
  activations(ctx, act) {
    const { cfg, rows, label, training, batch, adapter } = ctx;
    for (const [name, width] of mamba2Buffers(cfg, training)) act(`${label}.${name}`, rows * width);
    const { N, P, H } = mamba2Widths(cfg);
    const shape = { batch, seqLen: cfg.seqLen, heads: H, keyDim: N, valueDim: P };
    act(`${label}.checkpoints`, deltaPlan(adapter, shape).checkpointLength);
  },
  // The SSD state H·P·N (zoology's state_size: 2·d·N) and the conv's last 3 inputs per channel.
  stateFloats: (cfg) => {
    const { N, P, H, conv } = mamba2Widths(cfg);
    return H * P * N + (D_CONV - 1) * conv;
  },
};

export const mamba2 = defineArch({
  name: "mamba2",
  label: "Mamba2",
  summary: "two Mamba-2 blocks (RMSNorm + SSD with a per-head scalar decay, gated RMSNorm; zoology's Mamba2)",
  block: "mamba",
  layers: [mamba2Layer, mamba2Layer],
  trainable: true,
  // Vd + Ld + 4d (2 RMSNorms + ln_f) + 2·(in_proj d·(4d + 32 + H) + conv 5·(2d + 32) + 3H + 2d + out_proj 2d²),
  // H = 2d/64 (1 where 64 does not divide 2d).
  paramFormula: ({ dModel: d, vocabSize: V, seqLen: L }) => {
    const H = (2 * d) % 64 === 0 ? (2 * d) / 64 : 1, conv = 2 * d + 32;
    return V * d + L * d + 4 * d + 2 * (d * (2 * d + conv + H) + 5 * conv + 3 * H + 2 * d + 2 * d * d);
  },
});
