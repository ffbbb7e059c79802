import {
  fftRef,
  gateBackwardRef,
  gateRef,
  HYENA_DELTA_RANGE,
  hyenaDeltas,
  hyenaFilterBackwardRef,
  hyenaFilterForwardRef,
  type HyenaFilterParams,
  hyenaMixerBackwardRef,
  hyenaMixerForwardRef,
  type HyenaMixerParams,
  hyenaPositionalZ,
  type HyenaShape,
  hyenaTime,
  longConvBackwardRef,
  longConvFftRef,
  longConvFftSize,
  type LongConvInputs,
  longConvRef,
  modulationBackwardRef,
  modulationRef,
  shortFilterBackwardRef,
  type ShortFilterInputs,
  shortFilterRef,
  sinActivationBackwardRef,
  sinActivationRef,
} from "../../src/reference/hyena.ts";
import { assert, assertAlmostEquals, assertEquals, assertThrows } from "../_helpers/assert.ts";
import { checkFiniteDifferences, dot, randn } from "../_helpers/check_kernel.ts";

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Checks d(Σ w ⊙ f(x))/dx against `analytic` by central differences (x is perturbed in place). */
function fd(
  name: string,
  x: Float64Array,
  f: () => ArrayLike<number>,
  w: ArrayLike<number>,
  analytic: ArrayLike<number>,
  tol = { rtol: 1e-6, atol: 1e-8 },
) {
  checkFiniteDifferences(name, () => dot(f(), w), x, analytic, tol);
}

const SHAPES: HyenaShape[] = [
  { batch: 1, seqLen: 1, channels: 1 },
  { batch: 2, seqLen: 5, channels: 3 },
  { batch: 2, seqLen: 9, channels: 4 },
];
const dims = (s: HyenaShape) => `B=${s.batch} L=${s.seqLen} C=${s.channels}`;
const size = (s: HyenaShape) => s.batch * s.seqLen * s.channels;

Deno.test("hyena reference: buffers z, t and δ as zoology builds them", () => {
  assertEquals(Array.from(hyenaTime(1)), [0]);
  assertEquals(Array.from(hyenaTime(5)), [0, 0.25, 0.5, 0.75, 1]);
  assertEquals(Array.from(hyenaTime(3, 5)), [0, 0.25, 0.5]);
  const z = hyenaPositionalZ(4);
  for (let n = 0; n < 4; n++) {
    assertAlmostEquals(z[3 * n], n / 3, 1e-15);
    assertAlmostEquals(z[3 * n + 1], Math.cos(2 * Math.PI * 1e-4 * n / 4), 1e-15);
    assertAlmostEquals(z[3 * n + 2], -Math.sin(2 * Math.PI * 1e-4 * n / 4), 1e-15);
  }
  assertEquals(Array.from(hyenaPositionalZ(1)), [0, 1, -0]);
  const delta = hyenaDeltas(5);
  assertAlmostEquals(delta[0], Math.log(1e-2) / 1.5, 1e-15);
  assertAlmostEquals(delta[4], Math.log(1e-2) / 0.3, 1e-14);
  assertAlmostEquals(delta[2], (HYENA_DELTA_RANGE.min + HYENA_DELTA_RANGE.max) / 2, 1e-14);
  assertEquals(Array.from(hyenaDeltas(1)), [HYENA_DELTA_RANGE.min]);
  // The last filter tap of the fastest channel decays to 1e-2^(1/0.3): exp(-|ln 1e-2|/0.3).
  const h = modulationRef([1, 1, 1, 1, 1, 1], 3, 2);
  assertAlmostEquals(h[5], Math.exp(Math.log(1e-2) / 0.3), 1e-15);
  assertAlmostEquals(h[4], Math.exp(Math.log(1e-2) / 1.5), 1e-15);
  assertEquals([h[0], h[1]], [1, 1]);
  assertThrows(() => hyenaTime(6, 5), /exceeds/);
});

Deno.test("hyena reference: short filter and long conv by hand", () => {
  // Short filter, one channel: uc[t] = b + w0·u[t-2] + w1·u[t-1] + w2·u[t], per sequence.
  const uc = shortFilterRef({ u: [1, 2, 3, 4, 5, 6], weight: [0.5, -1, 2], bias: [0.25] }, {
    batch: 2,
    seqLen: 3,
    channels: 1,
  });
  assertEquals(Array.from(uc), [2.25, 3.25, 4.75, 8.25, 6.25, 9.25]);
  // Long conv, one channel, L = 3: y[t] = Σ_{s≤t} h[t-s] v[s] + D v[t].
  const y = longConvRef({ v: [1, 2, 3], h: [1, 10, 100], bias: [0.5] }, { batch: 1, seqLen: 3, channels: 1 });
  assertEquals(Array.from(y), [1 + 0.5, 2 + 10 + 1, 3 + 20 + 100 + 1.5]);
});

Deno.test("hyena reference: the FFT convolution (zoology's form) equals the direct double loop", () => {
  for (
    const s of [{ batch: 1, seqLen: 1, channels: 1 }, { batch: 2, seqLen: 7, channels: 3 }, {
      batch: 1,
      seqLen: 8,
      channels: 1,
    }, {
      batch: 1,
      seqLen: 64,
      channels: 2,
    }]
  ) {
    const x: LongConvInputs = {
      v: randn(size(s), 3 + s.seqLen),
      h: randn(s.seqLen * s.channels, 4 + s.seqLen, 0.1),
      bias: randn(s.channels, 5),
    };
    const diff = maxAbsDiff(longConvFftRef(x, s), longConvRef(x, s));
    assert(diff < 1e-12, `${dims(s)}: FFT vs direct differ by ${diff}`);
  }
  assertEquals([longConvFftSize(1), longConvFftSize(5), longConvFftSize(64), longConvFftSize(65)], [1, 16, 128, 256]);
  // FFT then inverse FFT is N times the identity.
  const re = randn(16, 1), im = randn(16, 2), r0 = Float64Array.from(re), i0 = Float64Array.from(im);
  fftRef(re, im);
  fftRef(re, im, true);
  assert(maxAbsDiff(re.map((v) => v / 16), r0) < 1e-14 && maxAbsDiff(im.map((v) => v / 16), i0) < 1e-14);
});

for (const s of SHAPES) {
  Deno.test(`hyena reference: short filter gradients by finite differences, ${dims(s)}`, () => {
    const n = size(s), seed = 10 + s.seqLen;
    const x = { u: randn(n, seed), weight: randn(3 * s.channels, seed + 1, 0.5), bias: randn(s.channels, seed + 2) };
    const w = randn(n, seed + 3);
    const g = shortFilterBackwardRef(x, w, s);
    const f = () => shortFilterRef(x as ShortFilterInputs, s);
    fd("du", x.u, f, w, g.du);
    fd("dweight", x.weight, f, w, g.dweight);
    fd("dbias", x.bias, f, w, g.dbias);
  });

  Deno.test(`hyena reference: long conv gradients by finite differences, ${dims(s)}`, () => {
    const n = size(s), seed = 20 + s.seqLen;
    const x = {
      v: randn(n, seed),
      h: randn(s.seqLen * s.channels, seed + 1, 0.1),
      bias: randn(s.channels, seed + 2),
    };
    const w = randn(n, seed + 3);
    const g = longConvBackwardRef(x, w, s);
    const f = () => longConvRef(x, s);
    fd("dv", x.v, f, w, g.dv);
    fd("dh", x.h, f, w, g.dh);
    fd("dbias", x.bias, f, w, g.dbias);
  });
}

Deno.test("hyena reference: gate, sin activation and modulation gradients by finite differences", () => {
  const a = randn(12, 1), b = randn(12, 2), w = randn(12, 3);
  const gg = gateBackwardRef(a, b, w);
  fd("gate da", a, () => gateRef(a, b), w, gg.da);
  fd("gate db", b, () => gateRef(a, b), w, gg.db);
  // Sin: rows of F = 4, freq around 1 (its init) and a few larger.
  const x = randn(5 * 4, 4, 2), freq = Float64Array.from([1, 0.5, 1.5, 3]), ws = randn(20, 5);
  const gs = sinActivationBackwardRef(x, freq, ws);
  fd("sin dx", x, () => sinActivationRef(x, freq), ws, gs.dx);
  fd("sin dfreq", freq, () => sinActivationRef(x, freq), ws, gs.dfreq);
  for (const [L, d] of [[1, 1], [5, 3], [9, 4]]) {
    const hraw = randn(L * d, 6 + L, 0.1), wm = randn(L * d, 7 + L);
    fd(`modulation L=${L} d=${d}`, hraw, () => modulationRef(hraw, L, d), wm, modulationBackwardRef(wm, L, d));
  }
});

function filterParams(L: number, F: number, d: number, seed: number): HyenaFilterParams {
  return {
    z: Float64Array.from(hyenaPositionalZ(L)),
    w0: randn(F * 3, seed, 0.5),
    b0: randn(F, seed + 1, 0.5),
    w1: randn(F * F, seed + 2, 0.5),
    b1: randn(F, seed + 3, 0.5),
    w2: randn(F * F, seed + 4, 0.5),
    b2: randn(F, seed + 5, 0.5),
    w3: randn(d * F, seed + 6, 0.5),
    freq: randn(F, seed + 7, 0.2).map((v) => v + 1),
  };
}

Deno.test("hyena reference: the implicit filter's gradients (z and freq included) by finite differences", () => {
  for (const [L, F, d] of [[1, 3, 1], [6, 5, 3]]) {
    const p = filterParams(L, F, d, 30 + L);
    const w = randn(L * d, 40 + L);
    const fwd = hyenaFilterForwardRef(p, L, d);
    const g = hyenaFilterBackwardRef(p, fwd, w, L, d);
    const f = () => hyenaFilterForwardRef(p, L, d).h;
    for (const key of Object.keys(g) as (keyof HyenaFilterParams)[]) {
      fd(`filter L=${L} ${key}`, p[key] as Float64Array, f, w, g[key]);
    }
  }
});

Deno.test("hyena reference: the whole mixer u → v2, every gradient by finite differences", () => {
  const s: HyenaShape = { batch: 2, seqLen: 5, channels: 3 }, F = 4, d = s.channels, n = size(s);
  const p: HyenaMixerParams = {
    ...filterParams(s.seqLen, F, d, 50),
    shortWeight: randn(9 * d, 60, 0.5),
    shortBias: randn(3 * d, 61, 0.5),
    bias: randn(d, 62),
  };
  const u = randn(3 * n, 63), w = randn(n, 64);
  const fwd = hyenaMixerForwardRef(u, p, s);
  const g = hyenaMixerBackwardRef(u, p, fwd, w, s);
  const f = () => hyenaMixerForwardRef(u, p, s).v2;
  // The composition's sums are larger (|f| ~ 10): central differences lose ~1e-8 absolute.
  const tol = { rtol: 1e-5, atol: 1e-7 };
  fd("mixer du", u, f, w, g.du, tol);
  for (const key of Object.keys(p) as (keyof HyenaMixerParams)[]) {
    fd(`mixer ${key}`, p[key] as Float64Array, f, w, g[key], tol);
  }
  // The composed forward is the ops in sequence: v2 = (long conv(v ⊙ x1) ) ⊙ x2.
  const y = longConvRef({ v: gateRef(fwd.v, fwd.x1), h: fwd.filter.h, bias: p.bias }, s);
  assert(maxAbsDiff(gateRef(y, fwd.x2), fwd.v2) === 0);
});
