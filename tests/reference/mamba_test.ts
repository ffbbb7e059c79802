import {
  type CausalConvInputs,
  causalConvRef,
  causalConvSiluBackwardRef,
  causalConvSiluForwardRef,
  mambaALogInit,
  type MambaShape,
  rmsNormBackwardRef,
  rmsNormForwardRef,
  scanA,
  scanCheckpointLength,
  type ScanInputs,
  scanSegmentRanges,
  type ScanShape,
  selectiveScanBackwardRef,
  selectiveScanDirectRef,
  selectiveScanForwardRef,
  silu,
  siluGateBackwardRef,
  siluGateForwardRef,
  softplus,
  softplusBackwardRef,
  softplusForwardRef,
} from "../../src/reference/mamba.ts";
import { assert, assertAlmostEquals, assertEquals, assertThrows } from "../_helpers/assert.ts";
import { checkFiniteDifferences, dot, randn } from "../_helpers/check_kernel.ts";

const copy = (a: ArrayLike<number>) => Float64Array.from(a);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertEquals(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Realistic magnitudes: δ = softplus(N(0, 1)), A_log = log(1..N) per row (Mamba's init), the rest N(0, 1). */
function scanInputs(s: ScanShape, seed: number): ScanInputs {
  const n = s.batch * s.seqLen * s.channels, rows = s.batch * s.seqLen;
  return {
    x: randn(n, seed),
    delta: randn(n, seed + 1).map(softplus),
    A_log: mambaALogInit(s.channels, s.state),
    B: randn(rows * s.state, seed + 2),
    C: randn(rows * s.state, seed + 3),
    D: randn(s.channels, seed + 4),
  };
}

const dims = (s: ScanShape) => `B=${s.batch} L=${s.seqLen} Di=${s.channels} N=${s.state}`;

Deno.test("mamba reference: the scan by hand on two tokens, one channel, two states", () => {
  const s = { batch: 1, seqLen: 2, channels: 1, state: 2 };
  const x: ScanInputs = {
    x: [2, -1],
    delta: [0.5, 0.25],
    A_log: [0, Math.log(2)],
    B: [1, 3, -2, 0.5],
    C: [
      4,
      -1,
      0.5,
      2,
    ],
    D: [0.75],
  };
  const { y } = selectiveScanDirectRef(x, s);
  // t = 0: h = δ·B·x = 0.5·[1, 3]·2 = [1, 3]; y = 4·1 - 1·3 + 0.75·2.
  assertAlmostEquals(y[0], 4 - 3 + 1.5, 1e-15);
  // t = 1: a = exp(0.25·[-1, -2]); h = a·[1, 3] + 0.25·[-2, 0.5]·(-1).
  const h0 = Math.exp(-0.25) * 1 + 0.5, h1 = Math.exp(-0.5) * 3 - 0.125;
  assertAlmostEquals(y[1], 0.5 * h0 + 2 * h1 - 0.75, 1e-15);
  assertAlmostEquals(scanA([Math.log(3)])[0], -3, 1e-15);
});

Deno.test("mamba reference: the scheduled scan equals the direct recurrence and the closed form for any segments", () => {
  for (const s of [{ batch: 2, seqLen: 9, channels: 3, state: 4 }, { batch: 1, seqLen: 23, channels: 2, state: 16 }]) {
    const x = scanInputs(s, 10 + s.seqLen);
    const direct = selectiveScanDirectRef(x, s);
    // Closed form: y_t = Σ_{i≤t} Σ_n C_t[n]·exp(A[n]·Σ_{i<r≤t} δ_r)·δ_i·B_i[n]·x_i + D·x_t.
    const A = scanA(x.A_log), { channels: C, seqLen: L, state: N } = s;
    for (let b = 0; b < s.batch; b++) {
      for (let c = 0; c < C; c++) {
        for (let t = 0; t < L; t++) {
          const at = (i: number) => (b * L + i) * C + c;
          let y = x.D[c] * x.x[at(t)];
          for (let i = 0; i <= t; i++) {
            let decay = 0;
            for (let r = i + 1; r <= t; r++) decay += x.delta[at(r)];
            for (let k = 0; k < N; k++) {
              y += x.C[(b * L + t) * N + k] * Math.exp(A[c * N + k] * decay) * x.delta[at(i)] *
                x.B[(b * L + i) * N + k] * x.x[at(i)];
            }
          }
          assertAlmostEquals(direct.y[at(t)], y, 1e-12, `closed form at b=${b} c=${c} t=${t}`);
        }
      }
    }
    for (const segmentTokens of [1, 3, 4, s.seqLen, s.seqLen + 5]) {
      const seg = selectiveScanForwardRef(x, s, { segmentTokens });
      assert(maxAbsDiff(seg.y, direct.y) < 1e-12, `${dims(s)} S=${segmentTokens}`);
      const segments = scanSegmentRanges(s.seqLen, segmentTokens);
      assertEquals(seg.checkpoints.length, scanCheckpointLength(s, segmentTokens));
      // Checkpoint slot k - 1 = the state after token begin_k - 1.
      const BC = s.batch * C;
      for (let k = 1; k < segments.length; k++) {
        const t = segments[k].begin - 1;
        for (let bc = 0; bc < BC; bc++) {
          const b = Math.floor(bc / C), c = bc % C;
          for (let n = 0; n < N; n++) {
            const got = seg.checkpoints[((k - 1) * N + n) * BC + bc];
            assertAlmostEquals(got, direct.h[((b * L + t) * C + c) * N + n], 1e-12);
          }
        }
      }
    }
  }
  assertEquals(scanSegmentRanges(7, 3), [{ begin: 0, end: 3 }, { begin: 3, end: 6 }, { begin: 6, end: 7 }]);
  assertEquals(scanCheckpointLength({ batch: 2, seqLen: 7, channels: 3, state: 4 }, 3), 2 * 4 * 6);
  assertEquals(scanCheckpointLength({ batch: 2, seqLen: 7, channels: 3, state: 4 }, 7), 1);
  assertThrows(() => scanSegmentRanges(7, 0), /segmentTokens/);
});

Deno.test("mamba reference: every scan gradient matches finite differences of the direct recurrence", () => {
  const shapes: ScanShape[] = [
    { batch: 1, seqLen: 1, channels: 1, state: 1 },
    { batch: 2, seqLen: 5, channels: 3, state: 4 },
    { batch: 1, seqLen: 13, channels: 2, state: 16 },
  ];
  for (const s of shapes) {
    const x = scanInputs(s, 100 + s.seqLen);
    const n = s.batch * s.seqLen * s.channels;
    const dy = randn(n, 7 + n);
    const loss = (q: ScanInputs) => dot(selectiveScanDirectRef(q, s).y, dy);
    const g = selectiveScanBackwardRef(x, dy, s);
    // Segmenting changes the schedule, not the values (up to float64 rounding of the reordered sums).
    for (const segmentTokens of [1, 4]) {
      const gs = selectiveScanBackwardRef(x, dy, s, { segmentTokens });
      for (const key of Object.keys(g) as (keyof typeof g)[]) {
        assert(maxAbsDiff(gs[key], g[key]) < 1e-12, `${dims(s)} S=${segmentTokens} ${key}`);
      }
    }
    const opts = { eps: 1e-6, rtol: 1e-6, atol: 1e-8, samples: 40 };
    const name = dims(s);
    checkFiniteDifferences(`${name} dx`, (a) => loss({ ...x, x: a }), copy(x.x), g.dx, opts);
    checkFiniteDifferences(`${name} dDelta`, (a) => loss({ ...x, delta: a }), copy(x.delta), g.dDelta, opts);
    checkFiniteDifferences(`${name} dB`, (a) => loss({ ...x, B: a }), copy(x.B), g.dB, opts);
    checkFiniteDifferences(`${name} dC`, (a) => loss({ ...x, C: a }), copy(x.C), g.dC, opts);
    checkFiniteDifferences(`${name} dA_log`, (a) => loss({ ...x, A_log: a }), copy(x.A_log), g.dA_log, opts);
    checkFiniteDifferences(`${name} dD`, (a) => loss({ ...x, D: a }), copy(x.D), g.dD, opts);
  }
});

Deno.test("mamba reference: causal conv + SiLU by hand, gradients match finite differences", () => {
  // One channel, weights [1, 2, 3, 4] (tap 3 = the current token), bias 0.5; two sequences of 5 tokens.
  const s: MambaShape = { batch: 2, seqLen: 5, channels: 1 };
  const x0: CausalConvInputs = { x: [1, 2, 3, 4, 5, -1, -2, -3, -4, -5], weight: [1, 2, 3, 4], bias: [0.5] };
  const pre = causalConvRef(x0, s);
  assertEquals(Array.from(pre.subarray(0, 5)), [4.5, 11.5, 20.5, 30.5, 40.5]);
  // Sequence 1 starts fresh: no history from sequence 0.
  assertEquals(pre[5], 0.5 - 4);
  assertAlmostEquals(causalConvSiluForwardRef(x0, s)[0], silu(4.5), 1e-15);

  for (const shape of [{ batch: 3, seqLen: 6, channels: 4 }, { batch: 1, seqLen: 2, channels: 3 }]) {
    const n = shape.batch * shape.seqLen * shape.channels;
    const x: CausalConvInputs = {
      x: randn(n, 1),
      weight: randn(4 * shape.channels, 2, 0.5),
      bias: randn(shape.channels, 3, 0.5),
    };
    const dxc = randn(n, 4);
    const g = causalConvSiluBackwardRef(x, dxc, shape);
    const loss = (q: CausalConvInputs) => dot(causalConvSiluForwardRef(q, shape), dxc);
    checkFiniteDifferences("dx", (a) => loss({ ...x, x: a }), copy(x.x), g.dx, { samples: 72 });
    checkFiniteDifferences("dweight", (a) => loss({ ...x, weight: a }), copy(x.weight), g.dweight);
    checkFiniteDifferences("dbias", (a) => loss({ ...x, bias: a }), copy(x.bias), g.dbias);
  }
});

Deno.test("mamba reference: softplus is stable and its gradient matches finite differences", () => {
  assertAlmostEquals(softplus(0), Math.LN2, 1e-16);
  assertEquals(softplus(1000), 1000);
  assertAlmostEquals(softplus(-50), Math.exp(-50), 1e-35);
  assertAlmostEquals(softplus(3), Math.log(1 + Math.exp(3)), 1e-15);
  const v = randn(40, 5, 4), dd = randn(40, 6);
  const g = softplusBackwardRef(v, dd);
  checkFiniteDifferences("dv", (a) => dot(softplusForwardRef(a), dd), copy(v), g);
});

Deno.test("mamba reference: SiLU gate gradients match finite differences", () => {
  const y = randn(30, 1), z = randn(30, 2, 3), dout = randn(30, 3);
  const g = siluGateBackwardRef(y, z, dout);
  checkFiniteDifferences("dy", (a) => dot(siluGateForwardRef(a, z), dout), copy(y), g.dy);
  checkFiniteDifferences("dz", (a) => dot(siluGateForwardRef(y, a), dout), copy(z), g.dz);
});

Deno.test("mamba reference: RMSNorm by hand, gradients match finite differences", () => {
  const { y, rstd } = rmsNormForwardRef([3, 4], [1, 2], { rows: 1, width: 2, eps: 0 });
  assertAlmostEquals(rstd[0], 1 / Math.sqrt(12.5), 1e-15);
  assertAlmostEquals(y[1], 8 / Math.sqrt(12.5), 1e-15);
  const shape = { rows: 5, width: 7 };
  const x = randn(35, 1, 2), w = randn(7, 2), dy = randn(35, 3);
  const g = rmsNormBackwardRef(x, w, dy, shape);
  const loss = (xx: ArrayLike<number>, ww: ArrayLike<number>) => dot(rmsNormForwardRef(xx, ww, shape).y, dy);
  checkFiniteDifferences("dx", (a) => loss(a, w), copy(x), g.dx, { samples: 35 });
  checkFiniteDifferences("dweight", (a) => loss(x, a), copy(w), g.dweight);
  // A near-zero row: eps keeps it finite.
  const tiny = rmsNormBackwardRef(new Float64Array(7), w, dy.subarray(0, 7), { rows: 1, width: 7 });
  assert(tiny.dx.every(Number.isFinite));
});
