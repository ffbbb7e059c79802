import {
  defaultMqarConfig,
  epochOrder,
  generateBatch,
  generateExample,
  IGNORE_INDEX,
  type MqarConfig,
  MqarConfigError,
  numQuerySlots,
  validateMqarConfig,
} from "../../src/data/mqar.ts";
import {
  powerLawWeights,
  sampleDistinctUniform,
  sampleWeightedDistinctLegacy,
  type UniformSource,
} from "../../src/data/_sampling.ts";
import { Rng } from "../../src/data/rng.ts";
import { assert, assertAlmostEquals, assertEquals, assertNotEquals, assertThrows } from "../_helpers/assert.ts";

/** Upper chi-square quantile (Wilson-Hilferty); z = 4.75 is a one-sided tail of about 1e-6. */
function chiSquareCritical(df: number, z = 4.75): number {
  const c = 2 / (9 * df);
  return df * (1 - c + z * Math.sqrt(c)) ** 3;
}

function chiSquare(counts: ArrayLike<number>, probs: ArrayLike<number>, n: number): number {
  let stat = 0;
  for (let i = 0; i < counts.length; i++) {
    const expected = n * probs[i];
    stat += (counts[i] - expected) ** 2 / expected;
  }
  return stat;
}

function small(overrides: Partial<MqarConfig> = {}): MqarConfig {
  return { ...defaultMqarConfig(128), trainExamples: 5000, testExamples: 500, ...overrides };
}

/** Checks every layout invariant of spec §1.2 on one example; returns the query slot g_j of each key j. */
function checkLayout(cfg: MqarConfig, inputs: Uint32Array, targets: Int32Array): number[] {
  const { vocabSize: V, seqLen: L, numKvPairs: N } = cfg;
  const half = Math.floor(V / 2);
  assertEquals(inputs.length, L);
  assertEquals(targets.length, L);
  const keyIndex = new Map<number, number>();
  const valueSet = new Set<number>();
  for (let j = 0; j < N; j++) {
    const k = inputs[2 * j], v = inputs[2 * j + 1];
    assert(k >= 1 && k <= half - 1, `key ${k} outside [1, ${half - 1}]`);
    assert(v >= half && v <= V - 1, `value ${v} outside [${half}, ${V - 1}]`);
    assert(!keyIndex.has(k), `duplicate key ${k}`);
    assert(!valueSet.has(v), `duplicate value ${v}`);
    keyIndex.set(k, j);
    valueSet.add(v);
  }
  for (let t = 0; t < 2 * N; t++) assertEquals(targets[t], IGNORE_INDEX, `context target at ${t}`);
  const gaps = new Array<number>(N).fill(-1);
  let labelled = 0;
  for (let t = 2 * N; t < L; t++) {
    const offset = t - 2 * N;
    if (targets[t] === IGNORE_INDEX) {
      if (!cfg.randomNonQueries) assertEquals(inputs[t], 0, `filler at ${t}`);
      else assert(inputs[t] < V, `filler token ${inputs[t]} at ${t}`);
      continue;
    }
    labelled++;
    assertEquals(offset % 2, 0, `label at odd query offset ${offset}`);
    const j = keyIndex.get(inputs[t]);
    assert(j !== undefined, `query token ${inputs[t]} at ${t} is not a key`);
    assertEquals(targets[t], inputs[2 * j + 1], `target at ${t} is the value of key ${inputs[t]}`);
    assertEquals(gaps[j], -1, `key ${j} queried twice`);
    gaps[j] = offset / 2;
  }
  assertEquals(labelled, N);
  return gaps;
}

Deno.test("mqar: layout, ranges, distinctness and labels at the paper's shapes and odd small ones", () => {
  const configs: [MqarConfig, number][] = [
    [small(), 200],
    [small({ seqLen: 256, numKvPairs: 64 }), 50],
    [small({ seqLen: 48, numKvPairs: 12 }), 200],
    [small({ vocabSize: 32, seqLen: 16, numKvPairs: 3 }), 300],
    // Odd vocabulary (⌊V/2⌋ split), minimal shape, and a context that leaves most slots empty.
    [small({ vocabSize: 41, seqLen: 40, numKvPairs: 10 }), 300],
    [small({ vocabSize: 5, seqLen: 4, numKvPairs: 1 }), 50],
    [small({ vocabSize: 1000, seqLen: 130, numKvPairs: 5, powerA: 1 }), 100],
  ];
  for (const [cfg, count] of configs) {
    for (const split of ["train", "test"] as const) {
      for (let i = 0; i < count; i++) {
        const { inputs, targets } = generateExample(cfg, split, i);
        const gaps = checkLayout(cfg, inputs, targets);
        for (const g of gaps) assert(g >= 0 && g < numQuerySlots(cfg));
      }
    }
  }
});

Deno.test("mqar: when S = N every query slot is used, so the query region permutes the keys", () => {
  for (const L of [48, 256, 512]) {
    const cfg = small({ seqLen: L, numKvPairs: L / 4 });
    assertEquals(numQuerySlots(cfg), cfg.numKvPairs);
    for (let i = 0; i < 20; i++) {
      const { inputs } = generateExample(cfg, "train", i);
      const N = cfg.numKvPairs;
      const context = Array.from(inputs.subarray(0, 2 * N)).filter((_, t) => t % 2 === 0).sort((a, b) => a - b);
      const queried = Array.from(inputs.subarray(2 * N)).filter((_, t) => t % 2 === 0).sort((a, b) => a - b);
      assertEquals(queried, context);
    }
  }
});

Deno.test("mqar: randomNonQueries fills only the filler, keeps keys/values/queries/targets", () => {
  const plain = small({ vocabSize: 64, seqLen: 48, numKvPairs: 4 });
  const noisy = { ...plain, randomNonQueries: true };
  const seen = new Set<number>();
  for (let i = 0; i < 100; i++) {
    const a = generateExample(plain, "train", i), b = generateExample(noisy, "train", i);
    checkLayout(noisy, b.inputs, b.targets);
    // The filler is drawn after keys, values and gaps, so everything labelled is the same example.
    assertEquals(b.targets, a.targets);
    for (let t = 0; t < plain.seqLen; t++) {
      if (a.inputs[t] !== 0) assertEquals(b.inputs[t], a.inputs[t]);
      else seen.add(b.inputs[t]);
    }
  }
  // 100 examples x 36 filler tokens over V = 64: every token appears (zoology draws them from [0, V)).
  assertEquals(seen.size, 64);
});

Deno.test("mqar: examples are pure functions of (dataSeed, split, index)", () => {
  const cfg = small();
  const a = generateExample(cfg, "train", 7), b = generateExample(cfg, "train", 7);
  assertEquals(a.inputs, b.inputs);
  assertEquals(a.targets, b.targets);
  assertNotEquals(generateExample(cfg, "train", 8).inputs, a.inputs);
  assertNotEquals(generateExample(cfg, "test", 7).inputs, a.inputs);
  assertNotEquals(generateExample({ ...cfg, dataSeed: 43 }, "train", 7).inputs, a.inputs);
  // The example counts only bound the indices; they do not change the data.
  assertEquals(generateExample({ ...cfg, trainExamples: 100_000 }, "train", 7).inputs, a.inputs);
  // No two of the first train and test examples coincide (a shared stream would repeat them).
  const seen = new Set<string>();
  for (const split of ["train", "test"] as const) {
    for (let i = 0; i < 300; i++) seen.add(generateExample(cfg, split, i).inputs.join(","));
  }
  assertEquals(seen.size, 600);
  assertThrows(() => generateExample(cfg, "test", 500), /index 500 out of range \[0, 500\)/);
  assertThrows(() => generateExample(cfg, "train", -1), /out of range/);
  assertThrows(() => generateExample(cfg, "train", 1.5), /out of range/);
  assertThrows(() => generateExample(cfg, "valid" as "train", 0), /split must be "train" or "test", got "valid"/);
  assertThrows(() => generateExample(cfg, "constructor" as "train", 0), /split must be/);
});

Deno.test("mqar: generateBatch concatenates examples independently of batch composition", () => {
  const cfg = small({ seqLen: 64, numKvPairs: 6, vocabSize: 100 });
  const L = cfg.seqLen, N = cfg.numKvPairs;
  const indices = [5, 1, 9, 1, 4999];
  const batch = generateBatch(cfg, "train", indices);
  const other = generateBatch(cfg, "train", [9, 0, 5]);
  assertEquals(batch.inputs.length, indices.length * L);
  assertEquals(batch.targets.length, indices.length * L);
  indices.forEach((index, b) => {
    const ex = generateExample(cfg, "train", index);
    assertEquals(batch.inputs.slice(b * L, (b + 1) * L), ex.inputs);
    assertEquals(batch.targets.slice(b * L, (b + 1) * L), ex.targets);
  });
  assertEquals(other.inputs.slice(0, L), batch.inputs.slice(2 * L, 3 * L));
  assertEquals(other.inputs.slice(2 * L), batch.inputs.slice(0, L));
  // Labels: ascending flat positions, exactly where targets are set, with those targets.
  assertEquals(batch.labelPositions.length, indices.length * N);
  assertEquals(batch.labelTargets.length, indices.length * N);
  const expected: number[] = [];
  batch.targets.forEach((v, t) => v !== IGNORE_INDEX && expected.push(t));
  assertEquals(Array.from(batch.labelPositions), expected);
  batch.labelPositions.forEach((t, i) => assertEquals(batch.labelTargets[i], batch.targets[t]));
  for (let i = 1; i < batch.labelPositions.length; i++) assert(batch.labelPositions[i] > batch.labelPositions[i - 1]);
  assertEquals(generateBatch(cfg, "test", []).labelPositions.length, 0);
  assertThrows(() => generateBatch(cfg, "train", [0, 5000]), /index 5000 out of range/);
});

Deno.test("mqar: validateMqarConfig names the field, the value and what is allowed", () => {
  const base = small();
  assertEquals(validateMqarConfig(base), base);
  validateMqarConfig(defaultMqarConfig(2048));
  const cases: [Partial<MqarConfig>, keyof MqarConfig, RegExp][] = [
    [{ seqLen: 129, numKvPairs: 16 }, "seqLen", /seqLen = 129; must be even/],
    [{ seqLen: 128, numKvPairs: 33 }, "numKvPairs", /numKvPairs = 33; must satisfy 4·numKvPairs ≤ seqLen = 128/],
    [{ vocabSize: 128 }, "vocabSize", /vocabSize = 128; must be > seqLen = 128/],
    [{ vocabSize: 8, seqLen: 16, numKvPairs: 4 }, "numKvPairs", /numKvPairs = 4; needs N distinct keys.*gives only 3/],
    [{ numKvPairs: 0 }, "numKvPairs", /numKvPairs = 0; must be an integer in \[1,/],
    [{ numKvPairs: 2.5 }, "numKvPairs", /numKvPairs = 2.5; must be an integer/],
    [{ vocabSize: 8192.5 }, "vocabSize", /vocabSize = 8192.5; must be an integer/],
    [{ seqLen: "128" as unknown as number }, "seqLen", /seqLen = "128"; must be an integer/],
    [{ powerA: 0 }, "powerA", /powerA = 0; must be a finite number > 0/],
    [{ powerA: -0.01 }, "powerA", /powerA = -0.01; must be a finite number > 0/],
    [{ powerA: NaN }, "powerA", /powerA = NaN; must be a finite number > 0/],
    [{ trainExamples: 0 }, "trainExamples", /trainExamples = 0; must be an integer in \[1, 4294967296\]/],
    [{ testExamples: -3 }, "testExamples", /testExamples = -3; must be an integer in \[1,/],
    [{ testExamples: 1.5 }, "testExamples", /testExamples = 1.5; must be an integer/],
    [{ dataSeed: -1 }, "dataSeed", /dataSeed = -1; must be an integer in \[0,/],
    [{ randomNonQueries: 1 as unknown as boolean }, "randomNonQueries", /randomNonQueries = 1; must be a boolean/],
  ];
  for (const [overrides, field, message] of cases) {
    const cfg = { ...base, ...overrides };
    let caught: unknown;
    try {
      validateMqarConfig(cfg);
    } catch (e) {
      caught = e;
    }
    assert(caught instanceof MqarConfigError, `${JSON.stringify(overrides)} should throw MqarConfigError`);
    assertEquals(caught.field, field);
    assert(message.test(caught.message), `message "${caught.message}" should match ${message}`);
    // Generation validates too.
    assertThrows(() => generateExample(cfg, "train", 0), message);
  }
});

Deno.test("sampler: weighted draw matches numpy's legacy choice(replace=False, p) on recorded uniforms", () => {
  // Recorded with numpy 2.4.6: np.random.seed(seed); rand(...) gives `u`, and np.random.seed(seed);
  // np.random.choice(S, size=N, replace=False, p=p) with p = a·i^(a−1)/Σ, a = 0.01, gives `expected`.
  const fixtures = [
    {
      S: 48,
      N: 16,
      u: [
        0.5488135039273248,
        0.7151893663724195,
        0.6027633760716439,
        0.5448831829968969,
        0.4236547993389047,
        0.6458941130666561,
        0.4375872112626925,
        0.8917730007820798,
        0.9636627605010293,
        0.3834415188257777,
        0.7917250380826646,
        0.5288949197529045,
        0.5680445610939323,
        0.925596638292661,
        0.07103605819788694,
        0.08712929970154071,
        0.02021839744032572,
        0.832619845547938,
        0.7781567509498505,
        0.8700121482468192,
      ],
      expected: [6, 13, 7, 3, 9, 29, 40, 2, 18, 5, 34, 0, 1, 31, 27, 35],
    },
    {
      S: 48,
      N: 16,
      u: [
        0.417022004702574,
        0.7203244934421581,
        0.00011437481734488664,
        0.30233257263183977,
        0.14675589081711304,
        0.0923385947687978,
        0.1862602113776709,
        0.34556072704304774,
        0.39676747423066994,
        0.538816734003357,
        0.4191945144032948,
        0.6852195003967595,
        0.20445224973151743,
        0.8781174363909454,
        0.027387593197926163,
        0.6704675101784022,
        0.41730480236712697,
        0.5586898284457517,
        0.14038693859523377,
        0.1981014890848788,
        0.8007445686755367,
        0.9682615757193975,
        0.31342417815924284,
      ],
      expected: [3, 13, 0, 1, 2, 5, 11, 27, 10, 14, 19, 6, 7, 32, 45, 9],
    },
    {
      S: 12,
      N: 12,
      u: [
        0.43599490214200376,
        0.025926231827891333,
        0.5496624778787091,
        0.4353223926182769,
        0.42036780208748903,
        0.3303348210038741,
        0.2046486340378425,
        0.6192709663506637,
        0.29965467367452314,
        0.26682727510286663,
        0.6211338327692949,
        0.5291420942770391,
        0.13457994534493356,
        0.5135781212657464,
        0.18443986564691528,
        0.7853351478166735,
        0.8539752926394888,
        0.4942368373819278,
        0.846561485357468,
        0.079645477009061,
        0.505246090121704,
        0.06528650438687811,
        0.42812232759738944,
        0.09653091566061256,
      ],
      expected: [1, 0, 2, 3, 4, 7, 9, 10, 6, 8, 5, 11],
    },
  ];
  for (const { S, N, u, expected } of fixtures) {
    let next = 0;
    const recorded: UniformSource = {
      uniform: () => {
        assert(next < u.length, "sampler consumed more uniforms than numpy");
        return u[next++];
      },
      int: () => {
        throw new Error("not used");
      },
    };
    const out = new Uint32Array(N);
    sampleWeightedDistinctLegacy(recorded, powerLawWeights(S, 0.01), N, out);
    assertEquals(Array.from(out), expected);
    assertEquals(next, u.length, "sampler must consume exactly numpy's uniforms");
  }
  // searchsorted side='right': a uniform equal to a cdf step goes to the next index (cdf = [0.25, 0.5, 1]).
  const steps = [0.25, 0.5, 0.3, 0];
  const onSteps: UniformSource = { uniform: () => steps.shift()!, int: () => 0 };
  const out = new Uint32Array(3);
  sampleWeightedDistinctLegacy(onSteps, Float64Array.from([1, 1, 2]), 3, out);
  // Round 1: 0.25 → 1, 0.5 → 2, 0.3 → 1 (dup). Round 2 (only index 0 left, cdf [1]): 0 → 0.
  assertEquals(Array.from(out), [1, 2, 0]);
  assertEquals(steps.length, 0);
});

/** numpy's legacy procedure transcribed literally: full-length cdf with zeroed weights, linear searchsorted. */
function legacyChoiceLiteral(rng: UniformSource, p: Float64Array, count: number): number[] {
  const weights = Float64Array.from(p);
  const found: number[] = [];
  while (found.length < count) {
    const x = Array.from({ length: count - found.length }, () => rng.uniform());
    for (const f of found) weights[f] = 0;
    const cdf = new Float64Array(weights.length);
    let acc = 0;
    weights.forEach((w, i) => (cdf[i] = acc += w));
    const last = cdf[cdf.length - 1];
    for (let i = 0; i < cdf.length; i++) cdf[i] /= last;
    const picked = x.map((xi) => cdf.findIndex((c) => c > xi));
    for (const index of picked) if (!found.includes(index)) found.push(index);
  }
  return found;
}

Deno.test("sampler: weighted draw equals the literal numpy transcription for random weights and sizes", () => {
  const gen = new Rng(99);
  for (let trial = 0; trial < 300; trial++) {
    const size = gen.int(1, 70);
    const count = gen.int(1, size);
    const p = trial % 2 ? powerLawWeights(size, [0.01, 0.5, 1, 3][trial % 4]) : Float64Array.from(
      { length: size },
      () => gen.uniform() ** 4 + 1e-9,
    );
    const out = new Uint32Array(count + 2);
    sampleWeightedDistinctLegacy(new Rng(trial), p, count, out, 2);
    assertEquals(Array.from(out.subarray(2)), legacyChoiceLiteral(new Rng(trial), p, count), `trial ${trial}`);
  }
});

Deno.test("sampler: distinct uniform subsets are uniform over ordered subsets (all three paths)", () => {
  // range 5, count 2 takes the byte-map rejection path; range 4, count 3 the partial Fisher-Yates path.
  for (const [lo, hi, count, orderings] of [[3, 7, 2, 20], [10, 13, 3, 24]]) {
    const rng = new Rng(5, count);
    const counts = new Map<string, number>();
    const n = 24_000;
    const out = new Uint32Array(count);
    for (let i = 0; i < n; i++) {
      sampleDistinctUniform(rng, lo, hi, count, out);
      for (const v of out) assert(v >= lo && v <= hi);
      assertEquals(new Set(out).size, count);
      const key = out.join(",");
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    assertEquals(counts.size, orderings);
    const stat = chiSquare([...counts.values()], new Array(orderings).fill(1 / orderings), n);
    assert(stat < chiSquareCritical(orderings - 1), `ordered-subset chi-square ${stat.toFixed(1)}`);
  }
  // A huge range takes the Set-backed rejection path: distinct, in range, and uniform in each draw position.
  const rng = new Rng(6);
  const lo = 1000, hi = 1000 + 10_000_000 - 1, count = 8, bins = 10, n = 2000;
  const firstBins = new Array(bins).fill(0), lastBins = new Array(bins).fill(0);
  const out = new Uint32Array(count);
  for (let i = 0; i < n; i++) {
    sampleDistinctUniform(rng, lo, hi, count, out);
    for (const v of out) assert(v >= lo && v <= hi);
    assertEquals(new Set(out).size, count);
    firstBins[Math.floor((out[0] - lo) / 1_000_000)]++;
    lastBins[Math.floor((out[count - 1] - lo) / 1_000_000)]++;
  }
  for (const counts of [firstBins, lastBins]) {
    const stat = chiSquare(counts, new Array(bins).fill(1 / bins), n);
    assert(stat < chiSquareCritical(bins - 1), `wide-range chi-square ${stat.toFixed(1)}`);
  }
  assertThrows(() => sampleDistinctUniform(new Rng(1), 1, 3, 4, new Uint32Array(4)), /cannot draw 4 distinct/);
});

/** Query slots of `n` examples at the spec's L = 128, N = 16 (S = 48). */
function collectGaps(n: number): number[][] {
  const cfg = small({ trainExamples: n });
  const batch = generateBatch(cfg, "train", Array.from({ length: n }, (_, i) => i));
  const gaps: number[][] = [];
  for (let b = 0; b < n; b++) {
    const L = cfg.seqLen;
    gaps.push(checkLayout(cfg, batch.inputs.subarray(b * L, (b + 1) * L), batch.targets.subarray(b * L, (b + 1) * L)));
  }
  return gaps;
}

function meanAndStd(xs: number[]): [number, number] {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1);
  return [mean, Math.sqrt(variance)];
}

Deno.test("mqar: gap distribution follows the power law with numpy's bias (L=128, N=16, S=48)", () => {
  const n = 4000, S = 48;
  const p = powerLawWeights(S, 0.01);
  assertAlmostEquals(p[0], 0.2205, 5e-5, "spec table: p₁");
  const gaps = collectGaps(n);

  // The first gap is the first uniform of the first round, so g_0 ~ p exactly. Every expected count is ≥ n·p_48 ≈ 19.
  const firstCounts = new Array(S).fill(0);
  for (const g of gaps) firstCounts[g[0]]++;
  const critical = chiSquareCritical(S - 1);
  const stat = chiSquare(firstCounts, p, n);
  assert(stat < critical, `g_0 chi-square ${stat.toFixed(1)} ≥ ${critical.toFixed(1)} (df ${S - 1})`);
  // The same statistic rejects a uniform slot sampler by orders of magnitude (so this check can fail).
  const rng = new Rng(1234);
  const uniformCounts = new Array(S).fill(0);
  for (let i = 0; i < n; i++) uniformCounts[rng.int(0, S - 1)]++;
  assert(chiSquare(uniformCounts, p, n) > 10 * critical, "uniform slots must fail the power-law test");

  // Means. g_0 has an exact mean Σ s·p_s = 9.901; the spec's 10.1 (and numpy's 9.973 ± 0.039 over 1e5 rows) are
  // Monte-Carlo estimates. With sd ≈ 12.2 and n = 4000 the standard error is ≈ 0.19: allow 4 SE.
  const exactMean0 = p.reduce((acc, ps, s) => acc + s * ps, 0);
  assertAlmostEquals(exactMean0, 9.901, 1e-3);
  const [mean0, sd0] = meanAndStd(gaps.map((g) => g[0]));
  assertAlmostEquals(mean0, exactMean0, 4 * sd0 / Math.sqrt(n), `mean g_0 = ${mean0}`);
  assertAlmostEquals(mean0, 10.1, 0.2 + 4 * sd0 / Math.sqrt(n), `mean g_0 = ${mean0} vs spec 10.1`);
  // g_15 has no closed form: spec 19.5 (numpy over 1e5 rows: 19.526 ± 0.040). Allow 4 SE (sd ≈ 12.9) plus the
  // spec's rounding and Monte-Carlo error (0.1).
  const [mean15, sd15] = meanAndStd(gaps.map((g) => g[15]));
  assertAlmostEquals(mean15, 19.5, 0.1 + 4 * sd15 / Math.sqrt(n), `mean g_15 = ${mean15} vs spec 19.5`);
  // The bias the spec calls out: later keys are queried later (means rise by ~10 slots from j = 0 to 15).
  assert(mean15 - mean0 > 6, `mean g_15 − mean g_0 = ${mean15 - mean0}`);
});

Deno.test("mqar: epochOrder is a run-seeded permutation that leaves the data alone", () => {
  const order = epochOrder(1000, 3, 0);
  assertEquals(Array.from(order).sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i));
  assertEquals(epochOrder(1000, 3, 0), order);
  assertNotEquals(epochOrder(1000, 3, 1), order);
  assertNotEquals(epochOrder(1000, 4, 0), order);
  assertEquals(Array.from(epochOrder(1, 3, 7)), [0]);
  // First position is uniform over the examples across epochs.
  const counts = new Array(10).fill(0);
  const n = 5000;
  for (let epoch = 0; epoch < n; epoch++) counts[epochOrder(10, 11, epoch)[0]]++;
  const stat = chiSquare(counts, new Array(10).fill(0.1), n);
  assert(stat < chiSquareCritical(9), `epoch-order chi-square ${stat.toFixed(1)}`);
  assertThrows(() => epochOrder(0, 1, 0), /numExamples/);
  assertThrows(() => epochOrder(10, -1, 0), /runSeed/);
  assertThrows(() => epochOrder(10, 1, 0.5), /epoch/);
});

Deno.test("mqar: a 64 x 2048 batch (N = 512) generates in milliseconds", () => {
  const cfg = defaultMqarConfig(2048);
  const indices = Array.from({ length: 64 }, (_, i) => i);
  generateBatch(cfg, "train", indices); // warm-up (JIT)
  const start = performance.now();
  const reps = 5;
  for (let r = 0; r < reps; r++) generateBatch(cfg, "train", indices.map((i) => i + 64 * r));
  const ms = (performance.now() - start) / reps;
  // ~9 ms here on a shared core; the bound only catches gross regressions (e.g. O(S²) lookups or O(V) work per
  // example), with room for slow CI machines.
  assert(ms < 150, `batch took ${ms.toFixed(1)} ms`);
});
