import {
  deltaGatesBackwardRef,
  deltaGatesForwardRef,
  type DeltaInputs,
  deltaRuleBackwardRef,
  deltaRuleForwardRef,
  type DeltaShape,
  dtGatesBackwardRef,
  dtGatesForwardRef,
  l2NormBackwardRef,
  l2NormForwardRef,
  sigmoid,
} from "../../src/reference/delta_rule.ts";
import { assertAlmostEquals, assertThrows } from "../_helpers/assert.ts";
import { checkFiniteDifferences, dot, randn } from "../_helpers/check_kernel.ts";

/** L2-normalised q, k (as the model feeds them), β in (0, 1), log decays in (−1, 0). */
function inputs(s: DeltaShape, seed: number, gated: boolean): DeltaInputs {
  const rows = s.batch * s.seqLen, H = s.heads;
  return {
    q: l2NormForwardRef(randn(rows * H * s.keyDim, seed), s.keyDim).y,
    k: l2NormForwardRef(randn(rows * H * s.keyDim, seed + 1), s.keyDim).y,
    v: randn(rows * H * s.valueDim, seed + 2),
    beta: randn(rows * H, seed + 3).map(sigmoid),
    ...(gated ? { g: randn(rows * H, seed + 4).map((x) => -sigmoid(x)) } : {}),
  };
}

Deno.test("delta rule reference: one token by hand (S_0 = β·v·kᵀ, o = c·S_0·q)", () => {
  const s = { batch: 1, seqLen: 1, heads: 1, keyDim: 2, valueDim: 1 };
  const o = deltaRuleForwardRef({ q: [1, 0], k: [0.6, 0.8], v: [2], beta: [0.5] }, s, 1);
  // S_0 = 0.5·2·[0.6, 0.8] = [0.6, 0.8]; o = S_0·q = 0.6.
  assertAlmostEquals(o[0], 0.6, 1e-15);
});

Deno.test("delta rule reference: with β = 1 and a unit key, the state stores v exactly and overwrites it (delta rule)", () => {
  const s = { batch: 1, seqLen: 2, heads: 1, keyDim: 2, valueDim: 1 };
  // Token 0 writes 3 under key e0; token 1 writes 5 under the same key: the state then holds 5, not 8.
  const o = deltaRuleForwardRef({ q: [1, 0, 1, 0], k: [1, 0, 1, 0], v: [3, 5], beta: [1, 1] }, s, 1);
  assertAlmostEquals(o[0], 3, 1e-15);
  assertAlmostEquals(o[1], 5, 1e-15);
  // A decay α = e^g on the second token scales the old memory before the correction: still 5.
  const gated = deltaRuleForwardRef({ q: [1, 0, 1, 0], k: [1, 0, 1, 0], v: [3, 5], beta: [1, 1], g: [0, -1] }, s, 1);
  assertAlmostEquals(gated[1], 5, 1e-15);
  // With β = 0.5: S_1 = α·3 + 0.5·(5 − α·3).
  const half = deltaRuleForwardRef({ q: [1, 0, 1, 0], k: [1, 0, 1, 0], v: [3, 5], beta: [1, 0.5], g: [0, -1] }, s, 1);
  const a = Math.exp(-1);
  assertAlmostEquals(half[1], a * 3 + 0.5 * (5 - a * 3), 1e-15);
});

Deno.test("delta rule reference: the additive update accumulates instead of overwriting", () => {
  const s = { batch: 1, seqLen: 2, heads: 1, keyDim: 2, valueDim: 1 };
  const x = { q: [1, 0, 1, 0], k: [1, 0, 1, 0], v: [3, 5], beta: [1, 0.5], g: [0, -1], update: "additive" as const };
  const o = deltaRuleForwardRef(x, s, 1);
  assertAlmostEquals(o[0], 3, 1e-15);
  assertAlmostEquals(o[1], Math.exp(-1) * 3 + 0.5 * 5, 1e-15);
});

for (const [gated, update] of [[false, "delta"], [true, "delta"], [true, "additive"]] as const) {
  for (
    const s of [
      { batch: 1, seqLen: 3, heads: 1, keyDim: 2, valueDim: 3 },
      { batch: 2, seqLen: 5, heads: 2, keyDim: 3, valueDim: 2 },
    ]
  ) {
    Deno.test(
      `delta rule reference${gated ? " (gated)" : ""}${update === "additive" ? " (additive)" : ""}: every gradient ` +
        `vs central differences, ` +
        `B=${s.batch} L=${s.seqLen} H=${s.heads} K=${s.keyDim} V=${s.valueDim}`,
      () => {
        const x = { ...inputs(s, 11, gated), update };
        const w = randn(s.batch * s.seqLen * s.heads * s.valueDim, 5);
        const g = deltaRuleBackwardRef(x, w, s);
        const names: ("q" | "k" | "v" | "beta" | "g")[] = ["q", "k", "v", "beta", ...(gated ? ["g" as const] : [])];
        const grads: Record<string, Float64Array> = { q: g.dq, k: g.dk, v: g.dv, beta: g.dbeta, g: g.dg! };
        for (const name of names) {
          const base = Float64Array.from(x[name]!);
          checkFiniteDifferences(
            `d${name}`,
            (p) => dot(deltaRuleForwardRef({ ...x, [name]: p }, s), w),
            base,
            grads[name],
            { samples: 40 },
          );
        }
      },
    );
  }
}

Deno.test("delta rule reference: L2 norm and the gates vs central differences", () => {
  const x = randn(12, 3), w = randn(12, 4);
  checkFiniteDifferences(
    "l2 dx",
    (p) => dot(l2NormForwardRef(p, 4).y, w),
    Float64Array.from(x),
    l2NormBackwardRef(x, w, 4),
  );
  const H = 3, rows = 4;
  const gates = { b: randn(rows * H, 6), a: randn(rows * H, 7), A_log: randn(H, 8), dtBias: randn(H, 9) };
  const wb = randn(rows * H, 10), wg = randn(rows * H, 11);
  const loss = (p: typeof gates) => {
    const f = deltaGatesForwardRef(p, H);
    return dot(f.beta, wb) + dot(f.g!, wg);
  };
  const grads = deltaGatesBackwardRef(gates, H, wb, wg);
  const pairs = [["b", grads.db], ["a", grads.da], ["A_log", grads.dA_log], ["dtBias", grads.dDtBias]] as const;
  for (const [name, analytic] of pairs) {
    const base = Float64Array.from(gates[name]);
    checkFiniteDifferences(`gates d${name}`, (p) => loss({ ...gates, [name]: p }), base, analytic!);
  }
});

Deno.test("delta rule reference: Mamba-2's dt gates vs central differences", () => {
  const H = 2, rows = 5;
  const x = randn(rows * H, 21), A_log = randn(H, 22), dtBias = randn(H, 23);
  const wb = randn(rows * H, 24), wg = randn(rows * H, 25);
  const loss = (xs: Float64Array, al: Float64Array, db: Float64Array) => {
    const f = dtGatesForwardRef(xs, al, db, H);
    return dot(f.beta, wb) + dot(f.g, wg);
  };
  const g = dtGatesBackwardRef(x, A_log, dtBias, H, wb, wg);
  checkFiniteDifferences("dt gates dx", (p) => loss(p, A_log, dtBias), Float64Array.from(x), g.dx);
  checkFiniteDifferences("dt gates dA_log", (p) => loss(x, p, dtBias), Float64Array.from(A_log), g.dA_log);
  checkFiniteDifferences("dt gates ddt_bias", (p) => loss(x, A_log, p), Float64Array.from(dtBias), g.dDtBias);
});

Deno.test("delta rule reference: wrong lengths are refused with the operand's name", () => {
  const s = { batch: 1, seqLen: 2, heads: 1, keyDim: 2, valueDim: 1 };
  assertThrows(() => deltaRuleForwardRef({ q: [1, 0], k: [1, 0, 1, 0], v: [1, 1], beta: [1, 1] }, s), /q has 2/);
});
