import { readTensor, writeTensor } from "../../src/gpu/device.ts";
import type { Tensor } from "../../src/gpu/allocator.ts";
import { matmul, MATMUL_VARIANTS, type MatmulArgs } from "../../src/ops/matmul.ts";
import { submit } from "../../src/ops/_dispatch.ts";
import { linearBackward, linearForward, matmulRef } from "../../src/reference/matmul.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { checkFiniteDifferences, checkKernel, dot, f32, f64, randn } from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

// Odd shapes take the scalar loads with clamped edges; [64, 192, 64] and [20, 12, 36] have every dimension a multiple
// of 4, so they take the vec4 paths (12 columns: a half-filled 8-column block; K = 36: a partial 16-deep tile).
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [5, 17, 3],
  [17, 5, 192],
  [33, 64, 65],
  [64, 192, 64],
  [20, 12, 36],
];

for (const variant of MATMUL_VARIANTS) {
  for (const [M, N, K] of SHAPES) {
    Deno.test({
      name: `matmul ${variant}: linear forward+backward M=${M} N=${N} K=${K}`,
      ...gpuTest,
      fn: async () => {
        const gpu = await testGpu();
        const x = f64(f32(randn(M * K, 1))), w = f64(f32(randn(N * K, 2, 0.3)));
        const b = f64(f32(randn(N, 3))), dy = f64(f32(randn(M * N, 4)));
        const dx0 = f64(f32(randn(M * K, 5)));
        const alloc = gpu.allocator;
        const tx = alloc.tensor("x", [M, K], "activations"), tw = alloc.tensor("w", [N, K], "params");
        const tb = alloc.tensor("b", [N], "params"), tdy = alloc.tensor("dy", [M, N], "activations");
        const ty = alloc.tensor("y", [M, N], "activations"), tdx = alloc.tensor("dx", [M, K], "activations");
        const tdw = alloc.tensor("dw", [N, K], "grads");
        for (const [t, v] of [[tx, x], [tw, w], [tb, b], [tdy, dy], [tdx, dx0]] as const) writeTensor(gpu, t, f32(v));
        // dw and dx accumulate: seed them to check `accumulate`.
        writeTensor(gpu, tdw, new Float32Array(N * K).fill(1));
        const dispatches = [
          matmul(gpu, "fwd", { a: tx, b: tw, bias: tb, out: ty, M, N, K, transB: true, variant }),
          matmul(gpu, "dx", { a: tdy, b: tw, out: tdx, M, N: K, K: N, accumulate: true, variant }),
          matmul(gpu, "dw", { a: tdy, b: tx, out: tdw, M: N, N: K, K: M, transA: true, accumulate: true, variant }),
        ];
        await checkKernel({
          name: `linear ${M}x${N}x${K}`,
          reference: () => {
            const g = linearBackward(x, w, dy, M, N, K);
            return {
              y: linearForward(x, w, b, M, N, K),
              dx: g.dx.map((v, i) => v + dx0[i]),
              dw: g.dw.map((v) => v + 1),
            };
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

interface Case {
  M: number;
  N: number;
  K: number;
  batch: number;
  transA: boolean;
  transB: boolean;
  splitK?: number;
}

/**
 * Runs alpha·op(A)·op(B) + bias + C (batched, padded batch strides) on the GPU and in float64; returns the GPU result
 * so callers can compare reruns bit for bit.
 */
async function checkGeneral(variant: MatmulArgs["variant"], c: Case, seed: number): Promise<Float32Array> {
  const gpu = await testGpu();
  const { M, N, K, batch } = c;
  // Batch strides with 4 spare elements keep the vec4 paths (multiples of 4) while proving strides are honoured.
  const strideA = M * K + 4, strideB = K * N + 4, strideC = M * N + 4;
  const a = f64(f32(randn(strideA * batch, seed))), b = f64(f32(randn(strideB * batch, seed + 1)));
  const bias = f64(f32(randn(N, seed + 2))), c0 = f64(f32(randn(strideC * batch, seed + 3)));
  const alpha = 0.75;
  const alloc = gpu.allocator;
  const ta = alloc.tensor("a", [strideA * batch], "activations"), tb = alloc.tensor("b", [strideB * batch], "params");
  const tbias = alloc.tensor("bias", [N], "params"), tc = alloc.tensor("c", [strideC * batch], "activations");
  const tensors: Tensor[] = [ta, tb, tbias, tc];
  for (const [t, v] of [[ta, a], [tb, b], [tbias, bias], [tc, c0]] as const) writeTensor(gpu, t, f32(v));
  const d = matmul(gpu, "general", {
    a: ta,
    b: tb,
    out: tc,
    bias: tbias,
    M,
    N,
    K,
    batch,
    strideA,
    strideB,
    strideC,
    transA: c.transA,
    transB: c.transB,
    alpha,
    accumulate: true,
    variant,
    splitK: c.splitK,
  });
  const expected = Float64Array.from(c0);
  for (let bt = 0; bt < batch; bt++) {
    const ref = matmulRef(
      a.subarray(bt * strideA, bt * strideA + M * K),
      b.subarray(bt * strideB, bt * strideB + K * N),
      M,
      N,
      K,
      { transA: c.transA, transB: c.transB },
    );
    for (let i = 0; i < M * N; i++) expected[bt * strideC + i] += alpha * ref[i] + bias[i % N];
  }
  let got: Float32Array = new Float32Array(0);
  await checkKernel({
    name: `${variant} ${JSON.stringify(c)}`,
    reference: () => ({ c: expected }),
    gpu: async () => {
      submit(gpu, [d]);
      got = await readTensor(gpu, tc);
      return { c: got };
    },
  });
  for (const t of tensors) alloc.free(t);
  return got;
}

const TRANSPOSES = [[false, false], [false, true], [true, false], [true, true]] as const;

for (const variant of MATMUL_VARIANTS) {
  Deno.test({
    name: `matmul ${variant}: every transpose combination, batched with strides, alpha, bias, accumulate`,
    ...gpuTest,
    fn: async () => {
      for (const [transA, transB] of TRANSPOSES) {
        // Odd (scalar path, clamped edges, k tail) and aligned (vec4 path, half-filled column block).
        await checkGeneral(variant, { M: 7, N: 9, K: 11, batch: 2, transA, transB }, 20);
        await checkGeneral(variant, { M: 16, N: 12, K: 20, batch: 2, transA, transB }, 30);
      }
    },
  });

  Deno.test({
    name: `matmul ${variant}: split-K (uneven chunks, k tail) matches the reference and reruns bit-identically`,
    ...gpuTest,
    fn: async () => {
      // Split-K changes only the k range and where results go, so two transpose cases per alignment cover each load
      // path once (each pipeline costs a slow compile on CPU rasterisers).
      for (const [transA, transB] of [[false, false], [true, true]]) {
        // K = 65 in 3 chunks of 24, 24, 17: the last chunk has a 1-deep k tail.
        const odd = { M: 5, N: 17, K: 65, batch: 2, transA, transB, splitK: 3 };
        const first = await checkGeneral(variant, odd, 40);
        assertEquals(Array.from(await checkGeneral(variant, odd, 40)), Array.from(first), `${variant} rerun`);
      }
      for (const [transA, transB] of [[false, true], [true, false]]) {
        // K = 64 in 4 chunks of 16: vec4 loads along k start on chunk boundaries.
        await checkGeneral(variant, { M: 8, N: 12, K: 64, batch: 1, transA, transB, splitK: 4 }, 50);
      }
    },
  });
}

Deno.test({
  name: "matmul: variants agree bit for bit (same k order) and rerun bit-identically",
  ...gpuTest,
  fn: async () => {
    for (const [transA, transB] of TRANSPOSES) {
      for (const shape of [{ M: 33, N: 17, K: 65 }, { M: 64, N: 64, K: 192 }]) {
        const c = { ...shape, batch: 1, transA, transB, splitK: 1 };
        const results = [];
        for (const variant of MATMUL_VARIANTS) {
          const first = await checkGeneral(variant, c, 60);
          assertEquals(Array.from(await checkGeneral(variant, c, 60)), Array.from(first), `${variant} rerun`);
          results.push(first);
        }
        for (let i = 1; i < results.length; i++) {
          assertEquals(
            Array.from(results[i]),
            Array.from(results[0]),
            `${MATMUL_VARIANTS[i]} vs ${MATMUL_VARIANTS[0]}`,
          );
        }
      }
    }
  },
});

Deno.test({
  name: "matmul: batched with broadcast B (stride 0)",
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
    const bFull = new Float64Array(batch * K * N);
    for (let i = 0; i < batch; i++) bFull.set(b, i * K * N);
    for (const variant of MATMUL_VARIANTS) {
      const d = matmul(gpu, "bmm", { a: ta, b: tb, out: tc, M, N, K, batch, strideB: 0, variant });
      await checkKernel({
        name: `batched ${variant}`,
        reference: () => ({ c: matmulRef(a, bFull, M, N, K, { batch }) }),
        gpu: async () => {
          submit(gpu, [d]);
          return { c: await readTensor(gpu, tc) };
        },
      });
    }
    for (const t of [ta, tb, tc]) gpu.allocator.free(t);
  },
});

Deno.test({
  name: "matmul: rejects undersized buffers and unsupported block sizes",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const t = gpu.allocator.tensor("small", [4], "workspace");
    let message = "";
    try {
      matmul(gpu, "bad", { a: t, b: t, out: t, M: 3, N: 3, K: 3 });
    } catch (e) {
      message = (e as Error).message;
    }
    assert(message.includes("needs 9"), `unexpected error: ${message}`);
    message = "";
    try {
      matmul(gpu, "bad", { a: t, b: t, out: t, M: 1, N: 1, K: 1, blockRows: 5 as 4 });
    } catch (e) {
      message = (e as Error).message;
    }
    assert(message.includes("blockRows"), `unexpected error: ${message}`);
    gpu.allocator.free(t);
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

Deno.test("matmul reference: general matmul gradients match finite differences (all transposes)", () => {
  const M = 3, N = 4, K = 5;
  for (const [transA, transB] of TRANSPOSES) {
    const a = randn(M * K, 15), b = randn(K * N, 16), dc = randn(M * N, 17);
    // dL/dop(A) = dC·op(B)ᵀ and dL/dop(B) = op(A)ᵀ·dC, mapped back to storage layout.
    const opB = matmulRef(b, identity(N), K, N, N, { transA: transB }); // op(B) as [K,N]
    const opA = matmulRef(a, identity(K), M, K, K, { transA }); // op(A) as [M,K]
    const dOpA = matmulRef(dc, opB, M, K, N, { transB: true });
    const dOpB = matmulRef(opA, dc, K, N, M, { transA: true });
    const da = transA ? transpose(dOpA, M, K) : dOpA;
    const db = transB ? transpose(dOpB, K, N) : dOpB;
    const loss = (av: Float64Array, bv: Float64Array) => dot(matmulRef(av, bv, M, N, K, { transA, transB }), dc);
    checkFiniteDifferences(`dA tA=${transA} tB=${transB}`, (v) => loss(v, b), a, da);
    checkFiniteDifferences(`dB tA=${transA} tB=${transB}`, (v) => loss(a, v), b, db);
  }
});

function identity(n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) out[i * n + i] = 1;
  return out;
}

/** [rows, cols] row-major → [cols, rows] row-major. */
function transpose(x: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c];
  return out;
}

// A grid wider than maxComputeWorkgroupsPerDimension (the LM head of a vocabulary above 65535 × 64 columns) is folded
// into x and y. A device that claims a small limit forces the fold at small shapes; results must stay bit-identical.
for (const variant of MATMUL_VARIANTS) {
  const cases: [number, number, number][] = [[33, 130, 9], [5, 300, 8], [200, 130, 12], [130, 300, 5]];
  for (const [M, N, K] of cases) {
    Deno.test({
      name: `matmul ${variant}: a grid folded past a small per-dimension limit, M=${M} N=${N} K=${K}`,
      ...gpuTest,
      fn: async () => {
        const gpu = await testGpu();
        // The default grids: 64×64 tiles (tiled); 8 or 64 rows × 64 columns per workgroup (blocked).
        const tileRows = variant === "tiled" || !gpu.info.software ? 64 : 8;
        const grid = [Math.ceil(N / 64), Math.ceil(M / tileRows)];
        const limit = Math.ceil(Math.sqrt(grid[0] * grid[1]));
        if (limit >= Math.max(...grid)) return; // a square grid: no limit below it leaves room to fold into
        const narrow = { ...gpu, limits: { ...gpu.limits, maxComputeWorkgroupsPerDimension: limit } };
        const x = f32(randn(M * K, 11)), w = f32(randn(N * K, 12));
        const alloc = gpu.allocator;
        const tx = alloc.tensor("x", [M, K], "activations"), tw = alloc.tensor("w", [N, K], "params");
        const wide = alloc.tensor("y", [M, N], "activations"), folded = alloc.tensor("y2", [M, N], "activations");
        writeTensor(gpu, tx, x);
        writeTensor(gpu, tw, w);
        submit(gpu, [
          matmul(gpu, "plain", { a: tx, b: tw, out: wide, M, N, K, transB: true, variant }),
          matmul(narrow, "folded", { a: tx, b: tw, out: folded, M, N, K, transB: true, variant }),
        ]);
        const [plain, fold] = [await readTensor(gpu, wide), await readTensor(gpu, folded)];
        assertEquals(fold, plain);
        const ref = matmulRef(f64(x), f64(w), M, N, K, { transB: true });
        let worst = 0;
        for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(fold[i] - ref[i]));
        assert(worst < 1e-4, `max error ${worst}`);
        for (const t of [tx, tw, wide, folded]) alloc.free(t);
      },
    });
  }
}

Deno.test({
  name: "matmul: LM-head shape with 4,194,305 vocabulary columns (more than 65535 × 64) on the real limits",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const M = 2, N = 4194305, K = 4;
    const x = f32(randn(M * K, 21)), w = f32(randn(N * K, 22));
    const alloc = gpu.allocator;
    const tx = alloc.tensor("x", [M, K], "activations"), tw = alloc.tensor("w", [N, K], "params");
    const ty = alloc.tensor("y", [M, N], "activations");
    writeTensor(gpu, tx, x);
    writeTensor(gpu, tw, w);
    submit(gpu, [matmul(gpu, "lm_head", { a: tx, b: tw, out: ty, M, N, K, transB: true })]);
    const y = await readTensor(gpu, ty);
    let worst = 0;
    for (let m = 0; m < M; m++) {
      for (const n of [0, 1, 65535 * 64 - 1, 65535 * 64, N - 2, N - 1]) {
        let s = 0;
        for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
        worst = Math.max(worst, Math.abs(y[m * N + n] - s));
      }
    }
    assert(worst < 1e-5, `max error ${worst}`);
    for (const t of [tx, tw, ty]) alloc.free(t);
  },
});
