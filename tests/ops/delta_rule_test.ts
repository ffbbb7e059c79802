import type { Tensor } from "../../src/gpu/allocator.ts";
import { type Gpu, readTensor, withGpuErrors, writeTensor } from "../../src/gpu/device.ts";
import { submit } from "../../src/ops/_dispatch.ts";
import {
  createDeltaGates,
  createDeltaGatesBackward,
  createDeltaRule,
  createDeltaRuleBackward,
  createDtGates,
  createDtGatesBackward,
  createL2Norm,
  createL2NormBackward,
  deltaCheckpointLength,
  deltaMaxSegmentTokens,
  deltaPlan,
  type DeltaRuleVariant,
  deltaSegmentTokens,
  type DeltaShape,
  deltaValueBlock,
  deltaWorkspaceLength,
  selectDeltaRuleVariant,
} from "../../src/ops/delta_rule.ts";
import {
  deltaGatesBackwardRef,
  deltaGatesForwardRef,
  deltaRuleBackwardRef,
  deltaRuleForwardRef,
  dtGatesBackwardRef,
  dtGatesForwardRef,
  l2NormBackwardRef,
  l2NormForwardRef,
} from "../../src/reference/delta_rule.ts";
import { assert, assertEquals, assertThrows } from "../_helpers/assert.ts";
import { checkKernel, f32, f64, FP32_TOLERANCE, randn, type Values } from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

/** Value pre-filled into every output: each must be overwritten (parameter grads start at 1 and must accumulate). */
const JUNK = 123;
const q32 = (a: ArrayLike<number>) => f64(f32(a));

interface Options {
  gated: boolean;
  update?: "delta" | "additive";
  segmentTokens?: number;
  segmentsPerDispatch?: number;
  variant?: DeltaRuleVariant;
  valueBlock?: number;
  chunksPerDispatch?: number;
}

/**
 * The delta rule on L2-normalised q, k (from raw N(0, 1) values through the GPU's L2 norm), β and g from the gates op,
 * and every gradient back to the raw inputs and the gate parameters: the whole op chain a DeltaNet layer runs.
 */
async function run(gpu: Gpu, s: DeltaShape, opts: Options, seed: number): Promise<{ ref: Values; got: Values }> {
  const rows = s.batch * s.seqLen, H = s.heads, K = s.keyDim, V = s.valueDim, n = rows * H;
  const x = {
    qRaw: q32(randn(rows * H * K, seed)),
    kRaw: q32(randn(rows * H * K, seed + 1)),
    v: q32(randn(rows * H * V, seed + 2)),
    b: q32(randn(n, seed + 3)),
    a: q32(randn(n, seed + 4)),
    A_log: q32(randn(H, seed + 5, 0.5)),
    dtBias: q32(randn(H, seed + 6)),
    dout: q32(randn(rows * H * V, seed + 7)),
  };
  // Reference chain.
  const qn = l2NormForwardRef(x.qRaw, K).y, kn = l2NormForwardRef(x.kRaw, K).y;
  const gateIn = opts.gated ? { b: x.b, a: x.a, A_log: x.A_log, dtBias: x.dtBias } : { b: x.b };
  const gates = deltaGatesForwardRef(gateIn, H);
  const inputs = { q: qn, k: kn, v: x.v, beta: gates.beta, g: gates.g, update: opts.update };
  const o = deltaRuleForwardRef(inputs, s);
  const g = deltaRuleBackwardRef(inputs, x.dout, s);
  const gg = deltaGatesBackwardRef(gateIn, H, g.dbeta, g.dg);
  const ref: Values = {
    o,
    dq: l2NormBackwardRef(x.qRaw, g.dq, K),
    dk: l2NormBackwardRef(x.kRaw, g.dk, K),
    dv: g.dv,
    db: gg.db,
    ...(opts.gated ? { da: gg.da!, dA_log: gg.dA_log!.map((v) => v + 1), dDtBias: gg.dDtBias!.map((v) => v + 1) } : {}),
  };

  const release = gpu.allocator.scope();
  const al = gpu.allocator;
  const S = opts.segmentTokens ?? deltaSegmentTokens(gpu, s);
  const act = (name: string, len: number, data?: Float64Array) => {
    const t = al.tensor(name, [len], "activations");
    writeTensor(gpu, t, data ? f32(data) : new Float32Array(len).fill(JUNK));
    return t;
  };
  const gl = opts.gated ? 2 * n : n;
  const t = {
    qRaw: act("qRaw", rows * H * K, x.qRaw),
    kRaw: act("kRaw", rows * H * K, x.kRaw),
    q: act("q", rows * H * K),
    k: act("k", rows * H * K),
    v: act("v", rows * H * V, x.v),
    b: act("b", n, x.b),
    a: act("a", n, x.a),
    A_log: act("A_log", H, x.A_log),
    dtBias: act("dtBias", H, x.dtBias),
    gates: act("gates", gl),
    o: act("o", rows * H * V),
    checkpoints: act("checkpoints", deltaCheckpointLength(s, S, opts.variant ?? selectDeltaRuleVariant(gpu))),
    dout: act("dout", rows * H * V, x.dout),
    dq: act("dq", rows * H * K),
    dk: act("dk", rows * H * K),
    dv: act("dv", rows * H * V),
    dgates: act("dgates", gl),
    dqRaw: act("dqRaw", rows * H * K),
    dkRaw: act("dkRaw", rows * H * K),
    db: act("db", n),
    da: act("da", n),
    dA_log: act("dA_log", H, new Float64Array(H).fill(1)),
    dDtBias: act("dDtBias", H, new Float64Array(H).fill(1)),
  };
  const decay = opts.gated ? { a: t.a, A_log: t.A_log, dtBias: t.dtBias } : undefined;
  const core = {
    shape: s,
    q: t.q,
    k: t.k,
    v: t.v,
    gates: t.gates,
    gated: opts.gated,
    update: opts.update,
    checkpoints: t.checkpoints,
    variant: opts.variant,
    valueBlock: opts.valueBlock,
    chunksPerDispatch: opts.chunksPerDispatch,
  };
  const seg = { segmentTokens: opts.segmentTokens };
  const ops = await withGpuErrors(gpu.device, "delta rule setup", () => [
    createL2Norm(gpu, "l2q", { groups: rows * H, width: K, x: t.qRaw, y: t.q }),
    createL2Norm(gpu, "l2k", { groups: rows * H, width: K, x: t.kRaw, y: t.k }),
    createDeltaGates(gpu, "gates", { rows, heads: H, b: t.b, decay, gates: t.gates }),
    createDeltaRule(gpu, "delta", { ...core, ...seg, o: t.o, segmentsPerDispatch: opts.segmentsPerDispatch }),
    createDeltaRuleBackward(gpu, "delta.bwd", {
      ...core,
      ...seg,
      dout: t.dout,
      dq: t.dq,
      dk: t.dk,
      dv: t.dv,
      dgates: t.dgates,
    }),
    createL2NormBackward(gpu, "l2q.bwd", { groups: rows * H, width: K, x: t.qRaw, dy: t.dq, dx: t.dqRaw }),
    createL2NormBackward(gpu, "l2k.bwd", { groups: rows * H, width: K, x: t.kRaw, dy: t.dk, dx: t.dkRaw }),
    createDeltaGatesBackward(gpu, "gates.bwd", {
      rows,
      heads: H,
      b: t.b,
      decay: decay ? { ...decay, da: t.da, dA_log: t.dA_log, dDtBias: t.dDtBias } : undefined,
      dgates: t.dgates,
      db: t.db,
    }),
  ]);
  submit(gpu, ops);
  const read = (tensor: Tensor) => readTensor(gpu, tensor);
  const got: Values = {
    o: await read(t.o),
    dq: await read(t.dqRaw),
    dk: await read(t.dkRaw),
    dv: await read(t.dv),
    db: await read(t.db),
    ...(opts.gated ? { da: await read(t.da), dA_log: await read(t.dA_log), dDtBias: await read(t.dDtBias) } : {}),
  };
  release();
  return { ref, got };
}

const dims = (s: DeltaShape) => `B=${s.batch} L=${s.seqLen} H=${s.heads} K=${s.keyDim} V=${s.valueDim}`;

const SHAPES: [DeltaShape, Omit<Options, "gated">][] = [
  [{ batch: 1, seqLen: 1, heads: 1, keyDim: 1, valueDim: 1 }, {}],
  [{ batch: 2, seqLen: 7, heads: 3, keyDim: 5, valueDim: 3 }, {}],
  [{ batch: 2, seqLen: 33, heads: 2, keyDim: 16, valueDim: 16 }, { segmentTokens: 8 }],
  [{ batch: 1, seqLen: 40, heads: 1, keyDim: 16, valueDim: 32 }, { segmentTokens: 16, segmentsPerDispatch: 1 }],
];

for (const [gated, update] of [[false, "delta"], [true, "delta"], [true, "additive"]] as const) {
  for (const [s, opts] of SHAPES) {
    Deno.test({
      name:
        `delta rule ops${gated ? " (gated)" : ""}${
          update === "additive" ? " (additive)" : ""
        }: L2 norms, gates, forward and every gradient vs float64, ` +
        dims(s) + (opts.segmentTokens ? `, segments of ${opts.segmentTokens}` : ""),
      ...gpuTest,
      fn: async () => {
        const gpu = await testGpu();
        const { ref, got } = await run(gpu, s, { ...opts, gated, update }, 17 + s.seqLen);
        await checkKernel({ name: dims(s), reference: () => ref, gpu: () => got, tolerance: FP32_TOLERANCE });
      },
    });
  }
}

// The chunked form (chunks of 16 tokens): one chunk, a partial last chunk, several value blocks, one chunk per dispatch.
const CHUNKED_SHAPES: [DeltaShape, Omit<Options, "gated">][] = [
  [{ batch: 1, seqLen: 1, heads: 1, keyDim: 1, valueDim: 1 }, {}],
  [{ batch: 2, seqLen: 7, heads: 3, keyDim: 5, valueDim: 3 }, {}],
  [{ batch: 2, seqLen: 33, heads: 2, keyDim: 16, valueDim: 13 }, { valueBlock: 4, chunksPerDispatch: 1 }],
  [{ batch: 1, seqLen: 50, heads: 1, keyDim: 32, valueDim: 40 }, {}],
];

for (const [gated, update] of [[false, "delta"], [true, "delta"], [true, "additive"]] as const) {
  for (const [s, opts] of CHUNKED_SHAPES) {
    Deno.test({
      name: `delta rule chunked${gated ? " (gated)" : ""}${update === "additive" ? " (additive)" : ""}: ` +
        `forward and every gradient vs the float64 recurrence, ${dims(s)}` +
        (opts.valueBlock ? `, value blocks of ${opts.valueBlock}` : ""),
      ...gpuTest,
      fn: async () => {
        const gpu = await testGpu();
        const { ref, got } = await run(gpu, s, { ...opts, gated, update, variant: "chunked" }, 23 + s.seqLen);
        await checkKernel({ name: dims(s), reference: () => ref, gpu: () => got, tolerance: FP32_TOLERANCE });
      },
    });
  }
}

for (const variant of ["recurrent", "chunked"] as const) {
  Deno.test({
    name:
      `delta rule ops (gated, ${variant}): a 20000-token sequence, past llvmpipe's 65,535 loop iterations per invocation`,
    ...gpuTest,
    fn: async () => {
      const gpu = await testGpu();
      // Recurrent forward: 2K + 1 = 9 iterations a token, 180,000 for the sequence; the backward 18 a token.
      const s = { batch: 1, seqLen: 20_000, heads: 1, keyDim: 4, valueDim: 2 };
      const { ref, got } = await run(gpu, s, { gated: true, variant }, 5);
      // dA_log and dt_bias sum 20,000 tokens in float32.
      await checkKernel({
        name: dims(s),
        reference: () => ref,
        gpu: () => got,
        tolerance: FP32_TOLERANCE,
        tolerances: { dA_log: { rtol: 2e-3, atol: 2e-4 }, dDtBias: { rtol: 2e-3, atol: 2e-4 } },
      });
    },
  });
}

Deno.test({
  name: "delta rule ops: Mamba-2's dt gates and their gradients vs float64",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const release = gpu.allocator.scope();
    const rows = 37, H = 3, n = rows * H;
    const x = q32(randn(n, 31)), A_log = q32(randn(H, 32)), dtBias = q32(randn(H, 33));
    const dgates = q32(randn(2 * n, 34));
    const f = dtGatesForwardRef(x, A_log, dtBias, H);
    const g = dtGatesBackwardRef(x, A_log, dtBias, H, dgates.subarray(0, n), dgates.subarray(n));
    const tensor = (name: string, data: Float64Array | number) => {
      const len = typeof data === "number" ? data : data.length;
      const t = gpu.allocator.tensor(name, [len], "activations");
      writeTensor(gpu, t, typeof data === "number" ? new Float32Array(len).fill(JUNK) : f32(data));
      return t;
    };
    const t = {
      x: tensor("x", x),
      A_log: tensor("A_log", A_log),
      dtBias: tensor("dtBias", dtBias),
      gates: tensor("gates", 2 * n),
      dgates: tensor("dgates", dgates),
      dx: tensor("dx", n),
      dA_log: tensor("dA_log", new Float64Array(H).fill(1)),
      dDtBias: tensor("dDtBias", new Float64Array(H).fill(1)),
    };
    const common = { rows, heads: H, x: t.x, A_log: t.A_log, dtBias: t.dtBias };
    submit(gpu, [
      createDtGates(gpu, "dt", { ...common, gates: t.gates }),
      createDtGatesBackward(gpu, "dt.bwd", {
        ...common,
        dgates: t.dgates,
        dx: t.dx,
        dA_log: t.dA_log,
        dDtBias: t.dDtBias,
      }),
    ]);
    const ref: Values = {
      gates: [...f.beta, ...f.g],
      dx: g.dx,
      dA_log: g.dA_log.map((v) => v + 1),
      dDtBias: g.dDtBias.map((v) => v + 1),
    };
    const got: Values = {};
    for (const k of Object.keys(ref)) got[k] = await readTensor(gpu, t[k as keyof typeof t]);
    release();
    await checkKernel({ name: "dt gates", reference: () => ref, gpu: () => got, tolerance: FP32_TOLERANCE });
  },
});

Deno.test({
  name: "delta rule ops: argument validation and sizes",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const release = gpu.allocator.scope();
    const a = gpu.allocator;
    const s = { batch: 2, seqLen: 5, heads: 2, keyDim: 3, valueDim: 4 };
    const vec = (name: string, len: number) => a.tensor(name, [len], "activations");
    const base = {
      shape: s,
      q: vec("q", 60),
      k: vec("k", 60),
      v: vec("v", 80),
      gates: vec("gates", 20),
      gated: false,
      o: vec("o", 80),
      checkpoints: vec("cp", 1),
    };
    assertThrows(() => createDeltaRule(gpu, "d", { ...base, segmentTokens: 0 }), /segmentTokens/);
    assertThrows(() => createDeltaRule(gpu, "d", { ...base, segmentTokens: 2 }), /checkpoints .* needs 96/);
    assertThrows(() => createDeltaRule(gpu, "d", { ...base, gated: true }), /gates .* needs 40/);
    assertThrows(() => createDeltaRule(gpu, "d", { ...base, o: base.v }), /alias/);
    assertThrows(
      () => createDeltaRule(gpu, "d", { ...base, update: "additve" as "additive" }),
      /update must be "delta" or "additive"/,
    );
    assertThrows(() => createDeltaRule(gpu, "d", { ...base, shape: { ...s, heads: 0 } }), /heads/);
    if (gpu.info.software) {
      assertThrows(
        () =>
          createDeltaRule(gpu, "d", {
            ...base,
            shape: { ...s, seqLen: 5000 },
            segmentTokens: deltaMaxSegmentTokens(3) + 1,
          }),
        /software/,
      );
    }
    assertThrows(
      () => createDeltaRule(gpu, "d", { ...base, variant: "chunk" as "chunked" }),
      /variant must be "recurrent" or "chunked"/,
    );
    const chunked = {
      ...base,
      variant: "chunked" as const,
      checkpoints: vec("cpc", deltaCheckpointLength(s, 1, "chunked")),
    };
    assertThrows(() => createDeltaRule(gpu, "d", { ...base, variant: "chunked" }), /checkpoints .* needs 128/);
    assertThrows(
      () => createDeltaRule(gpu, "d", { ...chunked, valueBlock: 5 }),
      /valueBlock must be an integer in \[1, 4\]/,
    );
    assertThrows(() => createDeltaRule(gpu, "d", { ...chunked, chunksPerDispatch: 0 }), /chunksPerDispatch/);
    assertThrows(() => createL2Norm(gpu, "l", { groups: 20, width: 3, x: base.q, y: base.q }), /alias/);
    // Sizes.
    assertEquals(deltaSegmentTokens({ info: { software: false } }, { ...s, seqLen: 1024 }), 32);
    assertEquals(deltaSegmentTokens({ info: { software: false } }, s), 5);
    assertEquals(deltaSegmentTokens({ info: { software: true } }, { ...s, seqLen: 100 }), 100);
    assertEquals(deltaSegmentTokens({ info: { software: true } }, { ...s, seqLen: 2048 }), 256);
    assertEquals(deltaMaxSegmentTokens(16), Math.floor((60_000 - 48) / 66));
    assertEquals(deltaCheckpointLength(s, 2), 2 * 3 * 16);
    assertEquals(deltaWorkspaceLength(s, 2), 3 * 3 * 16 + 2 * 5 * 16 + 3 * 16);
    // Chunked: one 16-token chunk of states [1, B·H, V, K] = 48, then u [rows, H·V] = 80; partials [1 block, 20, 8].
    assertEquals(deltaCheckpointLength(s, 2, "chunked"), 48 + 80);
    assertEquals(deltaWorkspaceLength(s, 2, "chunked"), 20 * 8 + 48);
    assertEquals(deltaValueBlock(32, 64), 16);
    assertEquals(deltaValueBlock(128, 256), 4);
    assertEquals(deltaValueBlock(5, 3), 3);
    const hw = deltaPlan({ info: { software: false } }, { ...s, seqLen: 40 });
    assertEquals([hw.variant, hw.label, hw.checkpointLength], ["chunked", "chunked-16-vb4", 3 * 48 + 2 * 40 * 2 * 4]);
    assertEquals(deltaPlan({ info: { software: true } }, s).label, "recurrent-segments-5");
    const lavapipe = { info: { software: true }, limits: { maxStorageBufferBindingSize: 128 * 2 ** 20 } };
    const big = { batch: 64, seqLen: 2048, heads: 2, keyDim: 32, valueDim: 64 };
    const S = deltaSegmentTokens(lavapipe, big);
    assert(S < 256 && deltaWorkspaceLength(big, S) * 4 <= 128 * 2 ** 20, `segment ${S}`);
    release();
  },
});
