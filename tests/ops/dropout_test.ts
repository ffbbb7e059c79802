import type { Tensor } from "../../src/gpu/allocator.ts";
import { type Gpu, readTensor, withGpuErrors, writeTensor } from "../../src/gpu/device.ts";
import { createDropoutBackward, createDropoutForward } from "../../src/ops/dropout.ts";
import { type Dispatch, submit } from "../../src/ops/_dispatch.ts";
import {
  dropoutBackwardRef,
  dropoutHash,
  dropoutMask,
  dropoutRef,
  dropoutThreshold,
} from "../../src/reference/dropout.ts";
import { assert, assertEquals, assertThrows } from "../_helpers/assert.ts";
import { checkFiniteDifferences, checkKernel, dot, f32, f64, randn } from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

function upload(gpu: Gpu, label: string, data: Float32Array): Tensor {
  const t = gpu.allocator.tensor(label, [data.length], "activations");
  writeTensor(gpu, t, data);
  return t;
}

async function run(gpu: Gpu, name: string, dispatches: readonly Dispatch[]): Promise<void> {
  await withGpuErrors(gpu.device, name, () => submit(gpu, dispatches));
}

/** Nonzero inputs, so a zero output means exactly "dropped". */
function nonzero(n: number, seed: number): Float32Array {
  return f32(randn(n, seed).map((v) => (Math.abs(v) < 1e-3 ? 1 : v)));
}

const bits = (a: ArrayLike<number>) => Array.from(new Uint32Array(Float32Array.from(a).buffer));

Deno.test({
  name: "dropout: GPU mask and values equal the reference bit-for-bit, forward and backward, odd sizes",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    for (
      const [n, p, seed, stream] of [[1, 0.5, 3, 0], [17, 0.1, 7, 1], [1000, 0.1, 123456789, 2], [
        4099,
        0.3,
        0xfffffffe,
        0,
      ]]
    ) {
      const x = nonzero(n, n), dy = nonzero(n, n + 1), dxSeed = f32(randn(n, n + 2));
      const tx = upload(gpu, "x", x), ty = upload(gpu, "y", new Float32Array(n));
      const tdy = upload(gpu, "dy", dy),
        tdx = upload(gpu, "dx", new Float32Array(n)),
        tdxAcc = upload(gpu, "dxAcc", dxSeed);
      const fwd = createDropoutForward(gpu, "drop", { x: tx, y: ty, p, seed, stream });
      const bwd = createDropoutBackward(gpu, "drop.bwd", { forward: fwd, dy: tdy, dx: tdx });
      const bwdAcc = createDropoutBackward(gpu, "drop.bwdAcc", { forward: fwd, dy: tdy, dx: tdxAcc, accumulate: true });
      const name = `dropout n=${n} p=${p} seed=${seed} stream=${stream}`;
      await run(gpu, name, [fwd, bwd, bwdAcc]);
      const y = await readTensor(gpu, ty), dx = await readTensor(gpu, tdx);
      // Products of two f32 are correctly rounded in WGSL, so values match the f32-rounded reference exactly.
      assertEquals(bits(y), bits(dropoutRef(x, p, seed, stream)), `${name}: forward`);
      assertEquals(bits(dx), bits(dropoutBackwardRef(dy, p, seed, stream)), `${name}: backward`);
      const mask = dropoutMask(n, p, seed, stream);
      assertEquals(Array.from(y, (v) => (v !== 0 ? 1 : 0)), Array.from(mask), `${name}: mask`);
      await checkKernel({
        name: `${name} accumulate`,
        reference: () => ({ dxAcc: dropoutBackwardRef(dy, p, seed, stream).map((v, i) => v + dxSeed[i]) }),
        gpu: async () => ({ dxAcc: await readTensor(gpu, tdxAcc) }),
      });
      for (const t of [tx, ty, tdy, tdx, tdxAcc]) gpu.allocator.free(t);
    }
  },
});

Deno.test({
  name: "dropout: kept fraction ≈ 1 − p, p = 0 is the identity, p = 1 drops everything",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const n = 1 << 17;
    const x = nonzero(n, 50);
    const tx = upload(gpu, "x", x), ty = upload(gpu, "y", new Float32Array(n));
    for (const p of [0, 0.1, 0.5, 0.9, 1]) {
      const fwd = createDropoutForward(gpu, `drop p=${p}`, { x: tx, y: ty, p, seed: 99 });
      await run(gpu, `p=${p}`, [fwd]);
      const y = await readTensor(gpu, ty);
      if (p === 0) {
        assertEquals(bits(y), bits(x), "p = 0 must be the identity");
        continue;
      }
      let kept = 0;
      for (const v of y) if (v !== 0) kept++;
      const dropped = 1 - kept / n;
      // Binomial: the dropped fraction has standard deviation sqrt(p(1 − p)/n) (0 at p = 1).
      const sd = Math.sqrt((p * (1 - p)) / n);
      assert(Math.abs(dropped - p) <= 5 * sd + 1e-9, `p=${p}: dropped fraction ${dropped} (sd ${sd})`);
      if (p < 1) {
        // Kept values are scaled by 1/(1 − p): E[y] = E[x] element by element, checked on one kept element.
        const i = y.findIndex((v) => v !== 0);
        assert(Math.abs(y[i] - x[i] / (1 - p)) <= 1e-6 * Math.abs(y[i]), `p=${p}: scale`);
      }
    }
    for (const t of [tx, ty]) gpu.allocator.free(t);
  },
});

Deno.test({
  name: "dropout: setSeed changes the mask for forward and backward alike; same seed reproduces it",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const n = 4096, p = 0.1;
    const ones = new Float32Array(n).fill(1);
    const tx = upload(gpu, "x", ones), ty = upload(gpu, "y", new Float32Array(n));
    const tdy = upload(gpu, "dy", ones), tdx = upload(gpu, "dx", new Float32Array(n));
    const fwd = createDropoutForward(gpu, "drop", { x: tx, y: ty, p, seed: 1 });
    const bwd = createDropoutBackward(gpu, "drop.bwd", { forward: fwd, dy: tdy, dx: tdx });
    const masks: number[][] = [];
    for (const seed of [1, 2, 1, 3]) {
      fwd.setSeed(seed);
      assertEquals(fwd.seed, seed);
      await run(gpu, `seed ${seed}`, [fwd, bwd]);
      const y = Array.from(await readTensor(gpu, ty), (v) => (v !== 0 ? 1 : 0));
      const dx = Array.from(await readTensor(gpu, tdx), (v) => (v !== 0 ? 1 : 0));
      assertEquals(dx, y, `seed ${seed}: backward must reuse the forward mask`);
      assertEquals(y, Array.from(dropoutMask(n, p, seed)), `seed ${seed}: mask vs reference`);
      masks.push(y);
    }
    assertEquals(masks[2], masks[0], "same seed, same mask");
    // Independent masks agree on about p² + (1 − p)² = 0.82 of the elements; identical ones on all of them.
    const agree = (a: number[], b: number[]) => a.filter((v, i) => v === b[i]).length / a.length;
    for (const [a, b] of [[0, 1], [1, 3], [0, 3]]) {
      const fraction = agree(masks[a], masks[b]);
      assert(Math.abs(fraction - 0.82) < 0.03, `seeds ${a}/${b}: masks agree on ${fraction}`);
    }
    assertThrows(() => fwd.setSeed(-1));
    assertThrows(() => fwd.setSeed(2 ** 32));
    for (const t of [tx, ty, tdy, tdx]) gpu.allocator.free(t);
  },
});

Deno.test({
  name: "dropout: in-place forward and backward",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const n = 777, p = 0.25, seed = 42, stream = 5;
    const x = nonzero(n, 60), dy = nonzero(n, 61);
    const tx = upload(gpu, "x", x), tdy = upload(gpu, "dy", dy);
    const fwd = createDropoutForward(gpu, "drop", { x: tx, y: tx, p, seed, stream });
    const bwd = createDropoutBackward(gpu, "drop.bwd", { forward: fwd, dy: tdy, dx: tdy });
    await run(gpu, "in place", [fwd, bwd]);
    assertEquals(bits(await readTensor(gpu, tx)), bits(dropoutRef(x, p, seed, stream)));
    assertEquals(bits(await readTensor(gpu, tdy)), bits(dropoutBackwardRef(dy, p, seed, stream)));
    assertThrows(() => createDropoutBackward(gpu, "bad", { forward: fwd, dy: tdy, dx: tdy, accumulate: true }));
    for (const t of [tx, tdy]) gpu.allocator.free(t);
  },
});

Deno.test("dropout reference: streams decorrelate, thresholds, and the backward is the forward's Jacobian", () => {
  const n = 20000;
  const a = dropoutMask(n, 0.5, 7, 0), b = dropoutMask(n, 0.5, 7, 1);
  let same = 0;
  for (let i = 0; i < n; i++) if (a[i] === b[i]) same++;
  assert(Math.abs(same / n - 0.5) < 0.02, `streams 0/1 agree on ${same / n}`);
  // Hash bits are balanced: each of the 32 output bits is set about half the time over consecutive indices.
  const ones = new Array(32).fill(0);
  for (let i = 0; i < n; i++) {
    const h = dropoutHash(5, 0, i);
    for (let bit = 0; bit < 32; bit++) ones[bit] += (h >>> bit) & 1;
  }
  for (const c of ones) assert(Math.abs(c / n - 0.5) < 0.02, `hash bit frequency ${c / n}`);
  assertEquals(dropoutThreshold(0), 0);
  assertEquals(dropoutThreshold(1), 0xffffffff);
  assertEquals(dropoutThreshold(0.5), 2 ** 31);
  assertThrows(() => dropoutThreshold(-0.1));
  assertThrows(() => dropoutThreshold(1.5));
  const x = randn(50, 70), dy = randn(50, 71);
  checkFiniteDifferences(
    "dropout dx",
    (v) => dot(dropoutRef(v, 0.3, 9, 2), dy),
    f64(x),
    dropoutBackwardRef(dy, 0.3, 9, 2),
  );
});
