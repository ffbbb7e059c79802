/**
 * Mamba (spec §3.5; [R] src/mixers/mamba.py, d_inner Di = 2d, d_state N = 16, d_conv 4, dt_rank R = ⌈d/16⌉) in the
 * Mamba block (fused residual add + RMSNorm, no LN2, no embedding dropout; spec §2.3):
 *   xz = in_proj(u); x = SiLU(causal conv4(xz[:, :Di])); (δ̃ | B | C) = x_proj(x); δ = softplus(dt_proj(δ̃));
 *   y = selective scan(x, δ, A = −exp(A_log), B, C) + D·x; out = out_proj(y ⊙ SiLU(xz[:, Di:])).
 * Init as the reference code does it (spec §2.4: its _init_weights overwrites dt_proj's special init, so dt_proj.weight
 * is N(0, 0.02) and its bias 0; A_log = log(1..16), D = 1 survive), or Mamba's own dt init with mambaInit "original".
 * GPU builder: mamba_gpu.ts; ops: src/ops/mamba.ts.
 */
import { linearBackward, linearForward } from "../reference/matmul.ts";
import {
  causalConvSiluBackwardRef,
  causalConvSiluForwardRef,
  mambaALogInit,
  selectiveScanBackwardRef,
  selectiveScanForwardRef,
  siluGateBackwardRef,
  siluGateForwardRef,
  softplusBackwardRef,
  softplusForwardRef,
} from "../reference/mamba.ts";
import { scanCheckpointLength, scanSegmentTokens } from "../ops/mamba.ts";
import type { ArchConfig } from "../model/arch_config.ts";
import { conv1dDefault, defineArch, type FlopTerm, type LayerDescriptor, linearFlops, ONES } from "./descriptor.ts";

export const D_STATE = 16;
export const D_CONV = 4;

/** The widths of one Mamba mixer. */
export function mambaWidths(cfg: Pick<ArchConfig, "dModel">) {
  const d = cfg.dModel, Di = 2 * d, N = D_STATE, R = Math.ceil(d / 16);
  return { d, Di, N, R, dbc: R + 2 * N };
}

/** Columns [offset, offset + width) of a [rows, stride] matrix, as a dense [rows, width] copy. */
function columns(m: ArrayLike<number>, rows: number, stride: number, offset: number, width: number): Float64Array {
  const out = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) for (let c = 0; c < width; c++) out[r * width + c] = m[r * stride + offset + c];
  return out;
}

/** Side by side: [rows, Σ widths] from dense blocks [rows, width_k]. */
function concatColumns(rows: number, blocks: { data: ArrayLike<number>; width: number }[]): Float64Array {
  const stride = blocks.reduce((s, b) => s + b.width, 0), out = new Float64Array(rows * stride);
  let offset = 0;
  for (const b of blocks) {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < b.width; c++) out[r * stride + offset + c] = b.data[r * b.width + c];
    }
    offset += b.width;
  }
  return out;
}

/** Per token, channel and state: the scan's multiply-adds (exponentials not counted), forward and backward. */
const SCAN_FLOPS = { forward: 5, backward: 14 };

/** Activation buffers of the GPU builder: name → width in units of (Di | R | x_proj outputs). */
export function mambaBuffers(cfg: Pick<ArchConfig, "dModel">, training: boolean): [string, number][] {
  const { Di, R, dbc } = mambaWidths(cfg);
  const forward: [string, number][] = [
    ["xz", 2 * Di],
    ["xc", Di],
    ["dbc", dbc],
    ["dt_in", R],
    ["dt", Di],
    ["delta", Di],
    ["y", Di],
    ["yg", Di],
  ];
  const backward: [string, number][] = [
    ["dyg", Di],
    ["dy", Di],
    ["dxz", 2 * Di],
    ["dxc", Di],
    ["ddelta", Di],
    ["ddt", Di],
    ["ddt_in", R],
    ["ddbc", dbc],
  ];
  return training ? [...forward, ...backward] : forward;
}

export const mambaLayer: LayerDescriptor<null> = {
  kind: "mamba",
  label: "Mamba",
  options: null,
  params(m, cfg) {
    const { d, Di, N, R, dbc } = mambaWidths(cfg);
    m.linear("in_proj", 2 * Di, d, false);
    m.add("conv1d.weight", [Di, 1, D_CONV], conv1dDefault(D_CONV));
    m.add("conv1d.bias", [Di], conv1dDefault(D_CONV));
    m.linear("x_proj", dbc, Di, false);
    if (cfg.mambaInit === "original") {
      // Mamba's own dt_proj init (dt_init "random", dt_scale 1): weight U(±R^-0.5), bias = softplus⁻¹(dt) with dt
      // log-uniform in [1e-3, 0.1], floored at 1e-4.
      m.add("dt_proj.weight", [Di, R], { kind: "uniform", low: -(R ** -0.5), high: R ** -0.5 });
      m.add("dt_proj.bias", [Di], { kind: "inverseSoftplusLogUniform", low: 1e-3, high: 0.1, floor: 1e-4 });
    } else m.linear("dt_proj", Di, R, true);
    m.add("A_log", [Di, N], { kind: "values", values: Array.from(mambaALogInit(Di, N)) });
    m.add("D", [Di], ONES);
    m.linear("out_proj", d, Di, false);
  },
  reference(ctx, u) {
    const { cfg, batch } = ctx;
    const { d, Di, N, R, dbc: W } = mambaWidths(cfg), rows = batch * cfg.seqLen;
    const shape = { batch, seqLen: cfg.seqLen, channels: Di };
    const scanShape = { ...shape, state: N };
    const wIn = ctx.param("in_proj.weight"), wX = ctx.param("x_proj.weight");
    const wDt = ctx.param("dt_proj.weight"), bDt = Float64Array.from(ctx.param("dt_proj.bias"));
    const wOut = ctx.param("out_proj.weight");
    const xz = linearForward(u, wIn, undefined, rows, 2 * Di, d);
    const x = columns(xz, rows, 2 * Di, 0, Di), z = columns(xz, rows, 2 * Di, Di, Di);
    const conv = { x, weight: ctx.param("conv1d.weight"), bias: ctx.param("conv1d.bias") };
    const xc = causalConvSiluForwardRef(conv, shape);
    const dbc = linearForward(xc, wX, undefined, rows, W, Di);
    const dtIn = columns(dbc, rows, W, 0, R);
    const dt = linearForward(dtIn, wDt, bDt, rows, Di, R);
    const delta = softplusForwardRef(dt);
    const scanIn = {
      x: xc,
      delta,
      A_log: ctx.param("A_log"),
      B: columns(dbc, rows, W, R, N),
      C: columns(dbc, rows, W, R + N, N),
      D: ctx.param("D"),
    };
    const { y } = selectiveScanForwardRef(scanIn, scanShape);
    const yg = siluGateForwardRef(y, z);
    const out = linearForward(yg, wOut, undefined, rows, d, Di);
    return {
      y: out,
      backward: (dout) => {
        const o = linearBackward(yg, wOut, dout, rows, d, Di);
        const gate = siluGateBackwardRef(y, z, o.dx);
        const s = selectiveScanBackwardRef(scanIn, gate.dy, scanShape);
        const ddt = softplusBackwardRef(dt, s.dDelta);
        const lt = linearBackward(dtIn, wDt, ddt, rows, Di, R);
        const ddbc = concatColumns(rows, [{ data: lt.dx, width: R }, { data: s.dB, width: N }, {
          data: s.dC,
          width: N,
        }]);
        const lx = linearBackward(xc, wX, ddbc, rows, W, Di);
        const dxc = Float64Array.from(s.dx, (v, i) => v + lx.dx[i]);
        const c = causalConvSiluBackwardRef(conv, dxc, shape);
        const dxz = concatColumns(rows, [{ data: c.dx, width: Di }, { data: gate.dz, width: Di }]);
        const li = linearBackward(u, wIn, dxz, rows, 2 * Di, d);
        return {
          du: li.dx,
          grads: new Map([
            [ctx.name("in_proj.weight"), li.dw],
            [ctx.name("conv1d.weight"), c.dweight],
            [ctx.name("conv1d.bias"), c.dbias],
            [ctx.name("x_proj.weight"), lx.dw],
            [ctx.name("dt_proj.weight"), lt.dw],
            [ctx.name("dt_proj.bias"), lt.db],
            [ctx.name("A_log"), s.dA_log],
            [ctx.name("D"), s.dD],
            [ctx.name("out_proj.weight"), o.dw],
          ]),
        };
      },
    };
  },
  flops({ cfg, rows, label }) {
    const { d, Di, N, R, dbc } = mambaWidths(cfg);
    const conv = 2 * D_CONV * rows * Di, scan = rows * Di * N;
    const terms: FlopTerm[] = [
      linearFlops(`${label}.in_proj`, rows, d, 2 * Di),
      { name: `${label}.conv`, kind: "conv", forward: conv, backward: 2 * conv },
      linearFlops(`${label}.x_proj`, rows, Di, dbc),
      linearFlops(`${label}.dt_proj`, rows, R, Di),
      {
        name: `${label}.scan`,
        kind: "recurrence",
        forward: SCAN_FLOPS.forward * scan,
        backward: SCAN_FLOPS.backward * scan,
      },
      linearFlops(`${label}.out_proj`, rows, Di, d),
    ];
    return terms;
  },
  activations(ctx, act) {
    const { cfg, rows, label, training, batch, adapter } = ctx;
    for (const [name, width] of mambaBuffers(cfg, training)) act(`${label}.${name}`, rows * width);
    const { Di, N } = mambaWidths(cfg);
    const shape = { batch, seqLen: cfg.seqLen, channels: Di, state: N };
    act(`${label}.checkpoints`, scanCheckpointLength(shape, scanSegmentTokens(adapter, cfg.seqLen, shape)));
  },
  // The scan state (Di × N) and the conv's last 3 inputs per channel.
  stateFloats: (cfg) => {
    const { Di, N } = mambaWidths(cfg);
    return Di * (N + D_CONV - 1);
  },
};

export const mamba = defineArch({
  name: "mamba",
  label: "Mamba",
  summary: "two Mamba blocks (RMSNorm + selective scan, no LN2, no embedding dropout)",
  block: "mamba",
  layers: [mambaLayer, mambaLayer],
  trainable: true,
  // Vd + Ld + 4d (2 RMSNorms + ln_f) + 2·(6d² + 4d⌈d/16⌉ + 110d).
  paramFormula: ({ dModel: d, vocabSize: V, seqLen: L }) =>
    V * d + L * d + 12 * d * d + 8 * d * Math.ceil(d / 16) + 224 * d,
});
