import {
  roundBf16,
  rwkvGateBackwardRef,
  rwkvGateForwardRef,
  type RwkvShape,
  timeShiftMixBackwardRef,
  timeShiftMixForwardRef,
  type TimeShiftMixInputs,
  wkvBackwardRef,
  wkvForwardRef,
  type WkvInputs,
} from "../../src/reference/rwkv.ts";
import { Rng } from "../../src/data/rng.ts";
import { assert, assertAlmostEquals, assertEquals } from "../_helpers/assert.ts";
import { checkFiniteDifferences, dot, randn } from "../_helpers/check_kernel.ts";

function uniform(n: number, seed: number, lo: number, hi: number): Float64Array {
  const rng = new Rng(seed, 3);
  return Float64Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
}

function wkvInputs(s: RwkvShape, seed: number, kScale = 1): WkvInputs {
  const n = s.batch * s.seqLen * s.channels;
  return {
    k: randn(n, seed, kScale),
    v: randn(n, seed + 1),
    timeDecay: randn(s.channels, seed + 2),
    timeFirst: randn(s.channels, seed + 3, 0.5),
  };
}

/** The wkv formula evaluated directly, O(L²) per channel, in float64 without any stabilisation. */
function wkvDirect(x: WkvInputs, s: RwkvShape): { y: Float64Array; logD: Float64Array } {
  const { batch: B, seqLen: L, channels: C } = s;
  const y = new Float64Array(B * L * C), logD = new Float64Array(B * L * C);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      const w = -Math.exp(x.timeDecay[c]), u = x.timeFirst[c];
      for (let t = 0; t < L; t++) {
        const at = (i: number) => (b * L + i) * C + c;
        let num = Math.exp(u + x.k[at(t)]) * x.v[at(t)], den = Math.exp(u + x.k[at(t)]);
        for (let i = 0; i < t; i++) {
          const e = Math.exp((t - 1 - i) * w + x.k[at(i)]);
          num += e * x.v[at(i)];
          den += e;
        }
        y[at(t)] = num / den;
        logD[at(t)] = Math.log(den);
      }
    }
  }
  return { y, logD };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

Deno.test("rwkv reference: the stabilised wkv recurrence equals the direct O(L²) formula", () => {
  for (
    const [s, kScale] of [[{ batch: 2, seqLen: 9, channels: 3 }, 1], [
      { batch: 1, seqLen: 23, channels: 4 },
      3,
    ]] as const
  ) {
    const x = wkvInputs(s, 11 + s.seqLen, kScale);
    const stable = wkvForwardRef(x, s), direct = wkvDirect(x, s);
    assert(maxAbsDiff(stable.y, direct.y) < 1e-12, `y differs by ${maxAbsDiff(stable.y, direct.y)}`);
    assert(maxAbsDiff(stable.logD, direct.logD) < 1e-12, `logD differs by ${maxAbsDiff(stable.logD, direct.logD)}`);
  }
  // k of ±60: e^{u + k} is ~1e26 (float64 still fine for the direct sum), the recurrence agrees relative to logD.
  const s = { batch: 1, seqLen: 12, channels: 2 };
  const x = { ...wkvInputs(s, 5), k: uniform(24, 6, -60, 60) };
  const stable = wkvForwardRef(x, s), direct = wkvDirect(x, s);
  assert(maxAbsDiff(stable.y, direct.y) < 1e-10, `large k: y differs by ${maxAbsDiff(stable.y, direct.y)}`);
  assert(maxAbsDiff(stable.logD, direct.logD) < 1e-10, "large k: logD");
});

Deno.test("rwkv reference: wkv by hand on three tokens", () => {
  const s = { batch: 1, seqLen: 3, channels: 1 };
  const x: WkvInputs = { k: [0.5, -1, 2], v: [3, 5, 7], timeDecay: [Math.log(0.5)], timeFirst: [0.25] };
  const { y } = wkvForwardRef(x, s);
  assertAlmostEquals(y[0], 3, 1e-15);
  // t = 1: past token 0 with weight e^{k_0}, current with e^{u + k_1}.
  const e0 = Math.exp(0.5), e1 = Math.exp(0.25 - 1);
  assertAlmostEquals(y[1], (e0 * 3 + e1 * 5) / (e0 + e1), 1e-14);
  // t = 2: token 0 decayed once by w = -0.5.
  const f0 = Math.exp(-0.5 + 0.5), f1 = Math.exp(-1), f2 = Math.exp(0.25 + 2);
  assertAlmostEquals(y[2], (f0 * 3 + f1 * 5 + f2 * 7) / (f0 + f1 + f2), 1e-14);
});

Deno.test("rwkv reference: wkv gradients match finite differences", () => {
  const cases: [RwkvShape, number][] = [
    [{ batch: 1, seqLen: 1, channels: 1 }, 1],
    [{ batch: 2, seqLen: 5, channels: 3 }, 1],
    [{ batch: 1, seqLen: 13, channels: 2 }, 2],
    // Large k (the direct exponentials would overflow float32), fewer but longer sequences.
    [{ batch: 2, seqLen: 9, channels: 2 }, 30],
  ];
  for (const [s, kScale] of cases) {
    const x = wkvInputs(s, 100 + s.seqLen + kScale, kScale);
    const n = s.batch * s.seqLen * s.channels;
    const gy = randn(n, 7 + n);
    const g = wkvBackwardRef(x, gy, s);
    const loss = (q: WkvInputs) => dot(wkvForwardRef(q, s).y, gy);
    const name = `B=${s.batch} L=${s.seqLen} C=${s.channels} kScale=${kScale}`;
    const k = Float64Array.from(x.k), v = Float64Array.from(x.v);
    const td = Float64Array.from(x.timeDecay), tf = Float64Array.from(x.timeFirst);
    const opts = { eps: 1e-6, rtol: 1e-5, atol: 1e-7, samples: 40 };
    checkFiniteDifferences(`${name} gk`, (a) => loss({ ...x, k: a }), k, g.gk, opts);
    checkFiniteDifferences(`${name} gv`, (a) => loss({ ...x, v: a }), v, g.gv, opts);
    checkFiniteDifferences(`${name} dTimeDecay`, (a) => loss({ ...x, timeDecay: a }), td, g.dTimeDecay, opts);
    checkFiniteDifferences(`${name} dTimeFirst`, (a) => loss({ ...x, timeFirst: a }), tf, g.dTimeFirst, opts);
  }
});

Deno.test("rwkv reference: long memory (w near 0) and fast decay (w ≪ 0) gradients match finite differences", () => {
  const s = { batch: 1, seqLen: 30, channels: 2 };
  const x = { ...wkvInputs(s, 61), timeDecay: Float64Array.from([-5, 3]) };
  const gy = randn(60, 62);
  const g = wkvBackwardRef(x, gy, s);
  const loss = (q: WkvInputs) => dot(wkvForwardRef(q, s).y, gy);
  const td = Float64Array.from(x.timeDecay), k = Float64Array.from(x.k);
  checkFiniteDifferences("dTimeDecay", (a) => loss({ ...x, timeDecay: a }), td, g.dTimeDecay);
  checkFiniteDifferences("gk", (a) => loss({ ...x, k: a }), k, g.gk, { samples: 60 });
});

Deno.test("rwkv reference: time-shift mix gradients match finite differences, no history across sequences", () => {
  const s = { batch: 3, seqLen: 4, channels: 5 };
  const n = 60;
  const x: TimeShiftMixInputs = {
    x: randn(n, 1),
    mixK: uniform(5, 2, 0, 1),
    mixV: uniform(5, 3, 0, 1),
    mixR: uniform(5, 4, 0, 1),
  };
  const dxk = randn(n, 5), dxv = randn(n, 6), dxr = randn(n, 7);
  const g = timeShiftMixBackwardRef(x, { dxk, dxv, dxr }, s);
  const loss = (q: TimeShiftMixInputs) => {
    const o = timeShiftMixForwardRef(q, s);
    return dot(o.xk, dxk) + dot(o.xv, dxv) + dot(o.xr, dxr);
  };
  const copy = (a: ArrayLike<number>) => Float64Array.from(a);
  checkFiniteDifferences("dx", (a) => loss({ ...x, x: a }), copy(x.x), g.dx, { samples: 60 });
  checkFiniteDifferences("dMixK", (a) => loss({ ...x, mixK: a }), copy(x.mixK), g.dMixK);
  checkFiniteDifferences("dMixV", (a) => loss({ ...x, mixV: a }), copy(x.mixV), g.dMixV);
  checkFiniteDifferences("dMixR", (a) => loss({ ...x, mixR: a }), copy(x.mixR), g.dMixR);
  // Row 4 starts sequence 1: its shifted value is 0, so x_k there is x·mix_k.
  const fwd = timeShiftMixForwardRef(x, s);
  for (let c = 0; c < 5; c++) assertAlmostEquals(fwd.xk[4 * 5 + c], x.x[4 * 5 + c] * x.mixK[c], 1e-15);
  assertAlmostEquals(fwd.xk[5 * 5], x.x[25] * x.mixK[0] + x.x[20] * (1 - x.mixK[0]), 1e-15);
});

Deno.test("rwkv reference: gate gradients match finite differences", () => {
  const r = randn(17, 1, 2), wkv = randn(17, 2), dout = randn(17, 3);
  const g = rwkvGateBackwardRef(r, wkv, dout);
  checkFiniteDifferences("dr", (a) => dot(rwkvGateForwardRef(a, wkv), dout), Float64Array.from(r), g.dr);
  checkFiniteDifferences("dwkv", (a) => dot(rwkvGateForwardRef(r, a), dout), Float64Array.from(wkv), g.dwkv);
});

Deno.test("rwkv reference: roundBf16 rounds the float32 pattern to nearest even", () => {
  const ulp = 2 ** -7; // bf16 has 7 explicit mantissa bits
  assertEquals(roundBf16(1), 1);
  assertEquals(roundBf16(1 + ulp / 2), 1, "tie rounds to the even mantissa (down)");
  assertEquals(roundBf16(1 + 1.5 * ulp), 1 + 2 * ulp, "tie rounds to the even mantissa (up)");
  assertEquals(roundBf16(1 + ulp / 2 + 2 ** -20), 1 + ulp, "above the tie rounds up");
  assertEquals(roundBf16(-3.14159), -3.140625);
  assertEquals(roundBf16(3.4e38), Infinity, "beyond bf16's largest finite value");
  assertEquals(Object.is(roundBf16(-0), -0), true);
  assert(Number.isNaN(roundBf16(NaN)));
  // Every result is a float32 whose low 16 bits are zero.
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (const x of randn(200, 9, 100)) {
    f[0] = roundBf16(x);
    assertEquals(u[0] & 0xffff, 0);
    assert(Math.abs(f[0] - x) <= Math.abs(x) * 2 ** -8 * 1.0001, `${x} rounds to ${f[0]}`);
  }
});

Deno.test("rwkv reference: bf16 mode rounds the gate's wkv and gradients and WKV's gradients", () => {
  const s = { batch: 2, seqLen: 6, channels: 3 };
  const x = wkvInputs(s, 71);
  const gy = randn(36, 72);
  const full = wkvBackwardRef(x, gy, s), half = wkvBackwardRef(x, gy, s, { bf16: true });
  for (const key of ["gk", "gv", "dTimeDecay", "dTimeFirst"] as const) {
    assertEquals(Array.from(half[key]), Array.from(full[key], roundBf16), key);
  }
  const r = randn(36, 73), wkv = randn(36, 74), dout = randn(36, 75);
  const out = rwkvGateForwardRef(r, wkv, { bf16: true });
  const rounded = Array.from(wkv, roundBf16);
  assertEquals(Array.from(out), Array.from(rwkvGateForwardRef(r, rounded)));
  const g = rwkvGateBackwardRef(r, wkv, dout, { bf16: true }), g32 = rwkvGateBackwardRef(r, rounded, dout);
  assertEquals(Array.from(g.dr), Array.from(g32.dr));
  assertEquals(Array.from(g.dwkv), Array.from(g32.dwkv, roundBf16));
});
