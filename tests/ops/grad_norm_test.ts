import { readTensor, writeTensor } from "../../src/gpu/device.ts";
import { createGradNorm, GRAD_NORM_SLOTS } from "../../src/ops/grad_norm.ts";
import { submit } from "../../src/ops/_dispatch.ts";
import { gradNormRef } from "../../src/reference/grad_norm.ts";
import { assertAlmostEquals, assertEquals } from "../_helpers/assert.ts";
import { checkKernel, f32, f64, randn } from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

// Sizes cover single elements, odd lengths, the paper's widths and tensors spanning several stage-1 workgroups.
const CASES: { name: string; sizes: number[]; maxNorm?: number; items?: number }[] = [
  { name: "one scalar", sizes: [1] },
  { name: "odd sizes", sizes: [5, 17, 1, 64 * 3], maxNorm: 1 },
  { name: "paper widths", sizes: [64 * 192, 192, 192 * 5, 8192 * 8], maxNorm: 1e6 },
  { name: "many partials", sizes: [17 * 257, 4099], maxNorm: 0.5, items: 1 },
];

for (const c of CASES) {
  Deno.test({
    name: `grad_norm: ${c.name} (sizes ${c.sizes.join(",")}, maxNorm ${c.maxNorm ?? "off"})`,
    ...gpuTest,
    fn: async () => {
      const gpu = await testGpu();
      const grads = c.sizes.map((n, k) => f64(f32(randn(n, 100 + k, 0.1))));
      const tensors = grads.map((g, k) => {
        const t = gpu.allocator.tensor(`g${k}`, [g.length], "grads");
        writeTensor(gpu, t, f32(g));
        return t;
      });
      const op = createGradNorm(gpu, "gn", { grads: tensors, maxNorm: c.maxNorm, itemsPerThread: c.items });
      const ref = gradNormRef(grads, c.maxNorm);
      await checkKernel({
        name: c.name,
        reference: () => ({ norm: [ref.norm], clip: [ref.clip], sumSquares: [ref.sumSquares] }),
        gpu: async () => {
          submit(gpu, op.dispatches);
          const r = await readTensor(gpu, op.result);
          return {
            norm: [r[GRAD_NORM_SLOTS.norm]],
            clip: [r[GRAD_NORM_SLOTS.clip]],
            sumSquares: [r[GRAD_NORM_SLOTS.sumSquares]],
          };
        },
      });
      // Determinism: a second run gives bit-identical results.
      const first = Array.from(await readTensor(gpu, op.result));
      submit(gpu, op.dispatches);
      assertEquals(Array.from(await readTensor(gpu, op.result)), first);
      op.free();
      for (const t of tensors) gpu.allocator.free(t);
    },
  });
}

Deno.test({
  name: "grad_norm: setMaxNorm switches clipping on and off without rebuilding",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const g = f64(f32(randn(300, 7)));
    const t = gpu.allocator.tensor("g", [300], "grads");
    writeTensor(gpu, t, f32(g));
    const op = createGradNorm(gpu, "gn", { grads: [t] });
    const norm = gradNormRef([g]).norm;
    submit(gpu, op.dispatches);
    assertEquals((await readTensor(gpu, op.result))[GRAD_NORM_SLOTS.clip], 1);
    op.setMaxNorm(norm / 4);
    submit(gpu, op.dispatches);
    const clipped = (await readTensor(gpu, op.result))[GRAD_NORM_SLOTS.clip];
    assertAlmostEquals(clipped, gradNormRef([g], norm / 4).clip, 1e-5);
    op.setMaxNorm(null);
    submit(gpu, op.dispatches);
    assertEquals((await readTensor(gpu, op.result))[GRAD_NORM_SLOTS.clip], 1);
    op.free();
    gpu.allocator.free(t);
  },
});

Deno.test("grad_norm reference: matches a direct computation and clip_grad_norm_ semantics", () => {
  const r = gradNormRef([[3], [0, 4]], 1);
  assertAlmostEquals(r.norm, 5, 1e-15);
  assertAlmostEquals(r.sumSquares, 25, 1e-15);
  assertAlmostEquals(r.clip, 1 / (5 + 1e-6), 1e-15);
  assertEquals(gradNormRef([[3], [0, 4]], 10).clip, 1);
  assertEquals(gradNormRef([[3], [0, 4]]).clip, 1);
});
