import { readTensor, writeTensor } from "../../src/gpu/device.ts";
import { matmul, type MatmulVariant } from "../../src/ops/matmul.ts";
import { submit } from "../../src/ops/_dispatch.ts";
import { linearBackward, linearForward, matmulRef } from "../../src/reference/matmul.ts";
import { assertEquals } from "../_helpers/assert.ts";
import { checkFiniteDifferences, checkKernel, dot, f32, f64, randn } from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

const SHAPES: [number, number, number][] = [[1, 1, 1], [5, 17, 3], [17, 5, 192], [33, 64, 65], [64, 192, 64]];
const VARIANTS: MatmulVariant[] = ["blocked", "tiled"];

for (const variant of VARIANTS) {
  for (const [M, N, K] of SHAPES) {
    Deno.test({
      name: `matmul ${variant}: linear forward+backward M=${M} N=${N} K=${K}`,
      ...gpuTest,
      fn: async () => {
        const gpu = await testGpu();
        const x = f64(f32(randn(M * K, 1))), w = f64(f32(randn(N * K, 2, 0.3)));
        const b = f64(f32(randn(N, 3))), dy = f64(f32(randn(M * N, 4)));
        const alloc = gpu.allocator;
        const tx = alloc.tensor("x", [M, K], "activations"), tw = alloc.tensor("w", [N, K], "params");
        const tb = alloc.tensor("b", [N], "params"), tdy = alloc.tensor("dy", [M, N], "activations");
        const ty = alloc.tensor("y", [M, N], "activations"), tdx = alloc.tensor("dx", [M, K], "activations");
        const tdw = alloc.tensor("dw", [N, K], "grads");
        for (const [t, v] of [[tx, x], [tw, w], [tb, b], [tdy, dy]] as const) writeTensor(gpu, t, f32(v));
        // dw accumulates: seed it with ones to check `accumulate`.
        writeTensor(gpu, tdw, new Float32Array(N * K).fill(1));
        const dispatches = [
          matmul(gpu, "fwd", { a: tx, b: tw, bias: tb, out: ty, M, N, K, transB: true, variant }),
          matmul(gpu, "dx", { a: tdy, b: tw, out: tdx, M, N: K, K: N, variant }),
          matmul(gpu, "dw", { a: tdy, b: tx, out: tdw, M: N, N: K, K: M, transA: true, accumulate: true, variant }),
        ];
        await checkKernel({
          name: `linear ${M}x${N}x${K}`,
          reference: () => {
            const g = linearBackward(x, w, dy, M, N, K);
            return { y: linearForward(x, w, b, M, N, K), dx: g.dx, dw: g.dw.map((v) => v + 1) };
          },
          gpu: async () => {
            submit(gpu, dispatches);
            return { y: await readTensor(gpu, ty), dx: await readTensor(gpu, tdx), dw: await readTensor(gpu, tdw) };
          },
        });
        for (const t of [tx, tw, tb, tdy, ty, tdx, tdw]) alloc.free(t);
      },
    });
  }
}

Deno.test({
  name: "matmul: batched with broadcast B (stride 0) and bit-identical reruns",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const batch = 3, M = 7, N = 9, K = 11;
    const a = f64(f32(randn(batch * M * K, 5))), b = f64(f32(randn(K * N, 6)));
    const ta = gpu.allocator.tensor("a", [batch, M, K], "activations");
    const tb = gpu.allocator.tensor("b", [K, N], "params");
    const tc = gpu.allocator.tensor("c", [batch, M, N], "activations");
    writeTensor(gpu, ta, f32(a));
    writeTensor(gpu, tb, f32(b));
    const d = matmul(gpu, "bmm", { a: ta, b: tb, out: tc, M, N, K, batch, strideB: 0 });
    const bFull = new Float64Array(batch * K * N);
    for (let i = 0; i < batch; i++) bFull.set(b, i * K * N);
    await checkKernel({
      name: "batched",
      reference: () => ({ c: matmulRef(a, bFull, M, N, K, { batch }) }),
      gpu: async () => {
        submit(gpu, [d]);
        return { c: await readTensor(gpu, tc) };
      },
    });
    const first = await readTensor(gpu, tc);
    submit(gpu, [d]);
    assertEquals(Array.from(await readTensor(gpu, tc)), Array.from(first));
    for (const t of [ta, tb, tc]) gpu.allocator.free(t);
  },
});

Deno.test("matmul reference: linear gradients match finite differences", () => {
  const M = 3, N = 4, K = 5;
  const x = randn(M * K, 11), w = randn(N * K, 12), b = randn(N, 13), dy = randn(M * N, 14);
  const g = linearBackward(x, w, dy, M, N, K);
  checkFiniteDifferences("dx", (v) => dot(linearForward(v, w, b, M, N, K), dy), x, g.dx);
  checkFiniteDifferences("dw", (v) => dot(linearForward(x, v, b, M, N, K), dy), w, g.dw);
  checkFiniteDifferences("db", (v) => dot(linearForward(x, w, v, M, N, K), dy), b, g.db);
});
