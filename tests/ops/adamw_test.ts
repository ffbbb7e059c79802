import { readTensor, writeTensor } from "../../src/gpu/device.ts";
import { createAdamW } from "../../src/ops/adamw.ts";
import { createGradNorm, GRAD_NORM_SLOTS } from "../../src/ops/grad_norm.ts";
import { submit } from "../../src/ops/_dispatch.ts";
import { ADAMW_DEFAULTS, adamwStepRef, type AdamWTensorState } from "../../src/reference/adamw.ts";
import { gradNormRef } from "../../src/reference/grad_norm.ts";
import { assertAlmostEquals, assertEquals } from "../_helpers/assert.ts";
import { checkKernel, f32, f64, randn, type Values } from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

// Odd sizes and the paper's widths (a 64×192 matrix, a 192 bias).
const SIZES = [1, 5, 17, 64 * 192, 192];
const STEPS = 3;
const LRS = [1e-2, 3e-3, 1e-3]; // a changing lr checks that setStep rewrites the uniform

function gradsFor(step: number): Float64Array[] {
  return SIZES.map((n, k) => f64(f32(randn(n, 1000 * step + k, 0.05))));
}

for (const mode of ["plain", "clipped", "zeroGrad"] as const) {
  Deno.test({
    name: `adamw: ${STEPS} steps over ${SIZES.length} tensors (${mode}) match float64 AdamW`,
    ...gpuTest,
    fn: async () => {
      const gpu = await testGpu();
      const alloc = gpu.allocator;
      const params = SIZES.map((n, k) => f64(f32(randn(n, 50 + k))));
      const ref: AdamWTensorState[] = params.map((p) => ({
        param: Float64Array.from(p),
        grad: new Float64Array(p.length),
        m: new Float64Array(p.length),
        v: new Float64Array(p.length),
      }));
      const tp = SIZES.map((n, k) => alloc.tensor(`p${k}`, [n], "params"));
      const tg = SIZES.map((n, k) => alloc.tensor(`g${k}`, [n], "grads"));
      tp.forEach((t, k) => writeTensor(gpu, t, f32(params[k])));
      const maxNorm = 0.3; // below the typical norm of these grads, so clipping is active
      const norm = mode === "clipped" ? createGradNorm(gpu, "gn", { grads: tg, maxNorm }) : undefined;
      const op = createAdamW(gpu, "adamw", {
        tensors: SIZES.map((_, k) => ({ param: tp[k], grad: tg[k] })),
        clip: norm ? { tensor: norm.result, index: GRAD_NORM_SLOTS.clip } : undefined,
        zeroGrad: mode === "zeroGrad",
      });
      let clipUsed = 1;
      for (let step = 1; step <= STEPS; step++) {
        const grads = gradsFor(step);
        ref.forEach((r, k) => (r.grad = grads[k]));
        const clip = mode === "clipped" ? gradNormRef(grads, maxNorm).clip : 1;
        clipUsed = Math.min(clipUsed, clip);
        adamwStepRef(ref, step, { lr: LRS[step - 1], ...ADAMW_DEFAULTS }, clip);
        tg.forEach((t, k) => writeTensor(gpu, t, f32(grads[k])));
        op.setStep(step, LRS[step - 1]);
        submit(gpu, [...(norm?.dispatches ?? []), ...op.dispatches]);
      }
      if (mode === "clipped") assertEquals(clipUsed < 1, true, "the test should exercise clipping");
      await checkKernel({
        name: `adamw ${mode}`,
        reference: () => {
          const out: Values = {};
          ref.forEach((r, k) => {
            out[`param${k}`] = r.param;
            out[`m${k}`] = r.m;
            out[`v${k}`] = r.v;
          });
          return out;
        },
        gpu: async () => {
          const out: Values = {};
          for (let k = 0; k < SIZES.length; k++) {
            out[`param${k}`] = await readTensor(gpu, tp[k]);
            out[`m${k}`] = await readTensor(gpu, op.states[k].m);
            out[`v${k}`] = await readTensor(gpu, op.states[k].v);
          }
          return out;
        },
        // v ~ g² ~ 1e-3: relative error dominates; params move by ~lr per step, so absolute 2e-6 is ample.
        tolerance: { rtol: 2e-4, atol: 2e-6 },
        tolerances: Object.fromEntries(SIZES.map((_, k) => [`v${k}`, { rtol: 2e-4, atol: 1e-10 }])),
      });
      for (let k = 0; k < SIZES.length; k++) {
        const g = await readTensor(gpu, tg[k]);
        if (mode === "zeroGrad") assertEquals(g.every((x) => x === 0), true, `grad ${k} was not zeroed`);
        else assertEquals(Array.from(g), Array.from(f32(gradsFor(STEPS)[k])), `grad ${k} must be left alone`);
      }
      op.free();
      norm?.free();
      for (const t of [...tp, ...tg]) alloc.free(t);
    },
  });
}

Deno.test({
  name: "adamw: caller-provided moments, bit-identical reruns",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const n = 1000;
    const p0 = f32(randn(n, 1)), g0 = f32(randn(n, 2)), m0 = f32(randn(n, 3, 0.01)), v0 = f32(randn(n, 4, 0.01));
    for (let i = 0; i < n; i++) v0[i] = Math.abs(v0[i]);
    const run = async () => {
      const t = ["p", "g", "m", "v"].map((name) => gpu.allocator.tensor(name, [n], "params"));
      [p0, g0, m0, v0].forEach((x, k) => writeTensor(gpu, t[k], x));
      const op = createAdamW(gpu, "adamw", { tensors: [{ param: t[0], grad: t[1], m: t[2], v: t[3] }] });
      assertEquals(op.states[0].m, t[2]);
      op.setStep(7, 1e-3);
      submit(gpu, op.dispatches);
      const out = [await readTensor(gpu, t[0]), await readTensor(gpu, t[2]), await readTensor(gpu, t[3])];
      op.free();
      for (const x of t) gpu.allocator.free(x);
      return out;
    };
    const a = await run(), b = await run();
    for (let k = 0; k < 3; k++) assertEquals(Array.from(a[k]), Array.from(b[k]));
    // The step count was honoured: compare with the reference at step 7 starting from the given moments.
    const ref = { param: f64(p0), grad: f64(g0), m: f64(m0), v: f64(v0) };
    adamwStepRef([ref], 7, { lr: 1e-3, ...ADAMW_DEFAULTS });
    await checkKernel({
      name: "adamw step 7",
      reference: () => ({ param: ref.param, m: ref.m, v: ref.v }),
      gpu: () => ({ param: a[0], m: a[1], v: a[2] }),
      tolerance: { rtol: 2e-4, atol: 1e-7 },
    });
  },
});

Deno.test("adamw reference: first step is p(1 − lr·wd) − lr·g/(|g| + eps), decay applies with zero grad", () => {
  const lr = 0.01, g = [0.5, -2, 0, 1e-3], p = [1, -1, 3, 0.25];
  const state = { param: f64(p), grad: g, m: new Float64Array(4), v: new Float64Array(4) };
  adamwStepRef([state], 1, { lr, ...ADAMW_DEFAULTS });
  for (let i = 0; i < 4; i++) {
    const expected = p[i] * (1 - lr * 0.1) - (lr * g[i]) / (Math.abs(g[i]) + 1e-8);
    assertAlmostEquals(state.param[i], expected, 1e-12);
    assertAlmostEquals(state.m[i], 0.1 * g[i], 1e-15);
    assertAlmostEquals(state.v[i], 0.001 * g[i] * g[i], 1e-15);
  }
  // Second step with the same gradient: the bias-corrected moments equal g and g², so the step is again ~lr·sign(g).
  adamwStepRef([state], 2, { lr, ...ADAMW_DEFAULTS });
  const m2 = 0.9 * 0.1 * g[0] + 0.1 * g[0];
  assertAlmostEquals(state.m[0], m2, 1e-15);
});
