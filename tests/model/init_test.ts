// Covers src/model/config.ts and src/model/param_spec.ts (names, shapes, init descriptors) as well as init.ts.
import { makeArchConfig, makeModelConfig, MIXERS, type ModelConfig } from "../../src/model/config.ts";
import { INIT_STREAM, initParams, paramStreamId } from "../../src/model/init.ts";
import { type InitDescriptor, numel, paramShapes, paramSpec, TIE_METADATA } from "../../src/model/param_spec.ts";
import { assert, assertEquals, assertNotEquals, assertThrows } from "../_helpers/assert.ts";

const L0 = "backbone.layers.0.sequence_mixer.mixer.";
const L1 = "backbone.layers.1.sequence_mixer.mixer.";
const COMMON_HEAD = [
  ["backbone.embeddings.word_embeddings.weight", [8192, 64]],
  ["backbone.embeddings.position_embeddings.weight", [64, 64]],
] as const;
const BASECONV = [
  [`${L0}projection.weight`, [64, 64]],
  [`${L0}projection.bias`, [64]],
  [`${L0}conv.conv.weight`, [64, 1, 3]],
  [`${L0}conv.conv.bias`, [64]],
] as const;
const norms = (layer: number) =>
  [
    [`backbone.layers.${layer}.norm1.weight`, [64]],
    [`backbone.layers.${layer}.norm1.bias`, [64]],
    [`backbone.layers.${layer}.norm2.weight`, [64]],
    [`backbone.layers.${layer}.norm2.bias`, [64]],
  ] as const;
const LN_F = [["backbone.ln_f.weight", [64]], ["backbone.ln_f.bias", [64]]] as const;
const mha = (p: string) =>
  [[`${p}Wqkv.weight`, [192, 64]], [`${p}Wqkv.bias`, [192]], [`${p}out_proj.weight`, [64, 64]], [
    `${p}out_proj.bias`,
    [64],
  ]] as const;
const PROJ = [
  [`${L1}proj_q.weight`, [192, 64]],
  [`${L1}proj_k.weight`, [192, 64]],
  [`${L1}proj_v.weight`, [60, 64]],
  [`${L1}proj_o.weight`, [64, 60]],
] as const;
const extra = (names: string[]) => names.map((n) => [`${L1}${n}`, [192]] as const);
const hyenaLayer = (p: string) =>
  [
    [`${p}in_proj.weight`, [192, 64]],
    [`${p}in_proj.bias`, [192]],
    [`${p}out_proj.weight`, [64, 64]],
    [`${p}out_proj.bias`, [64]],
    [`${p}short_filter.weight`, [192, 1, 3]],
    [`${p}short_filter.bias`, [192]],
    [`${p}filter_fn.bias`, [64]],
    [`${p}filter_fn.pos_emb.z`, [1, 64, 3]],
    [`${p}filter_fn.implicit_filter.0.weight`, [64, 3]],
    [`${p}filter_fn.implicit_filter.0.bias`, [64]],
    [`${p}filter_fn.implicit_filter.1.freq`, [1, 64]],
    [`${p}filter_fn.implicit_filter.2.weight`, [64, 64]],
    [`${p}filter_fn.implicit_filter.2.bias`, [64]],
    [`${p}filter_fn.implicit_filter.4.weight`, [64, 64]],
    [`${p}filter_fn.implicit_filter.4.bias`, [64]],
    [`${p}filter_fn.implicit_filter.6.weight`, [64, 64]],
  ] as const;
// RWKVTimeMixer registration order: time_decay, time_first, time_mix_k/v/r, key, value, receptance, output.
const rwkv = (p: string) =>
  [
    [`${p}time_decay`, [64]],
    [`${p}time_first`, [64]],
    [`${p}time_mix_k`, [1, 1, 64]],
    [`${p}time_mix_v`, [1, 1, 64]],
    [`${p}time_mix_r`, [1, 1, 64]],
    ...["key", "value", "receptance", "output"].map((n) => [`${p}${n}.weight`, [64, 64]] as const),
  ] as const;

// fla's DeltaNet / GatedDeltaNet registration order (zoology's 2 heads; Gated: values 2× wide, D is a fixed extra).
const deltaNet = (gated: boolean) => {
  const HV = gated ? 128 : 64, V = gated ? 64 : 32;
  return [
    [`${L1}q_proj.weight`, [64, 64]],
    [`${L1}k_proj.weight`, [64, 64]],
    [`${L1}v_proj.weight`, [HV, 64]],
    [`${L1}b_proj.weight`, [2, 64]],
    ...(gated ? [[`${L1}a_proj.weight`, [2, 64]], [`${L1}A_log`, [2]], [`${L1}dt_bias`, [2]]] as const : []),
    [`${L1}q_conv1d.weight`, [64, 1, 4]],
    [`${L1}k_conv1d.weight`, [64, 1, 4]],
    [`${L1}v_conv1d.weight`, [HV, 1, 4]],
    [`${L1}o_norm.weight`, [V]],
    [`${L1}o_proj.weight`, [64, HV]],
  ] as const;
};

function layout(layer0: readonly (readonly [string, readonly number[]])[], layer1: typeof layer0) {
  return [...COMMON_HEAD, ...layer0, ...norms(0), ...layer1, ...norms(1), ...LN_F].map(([n, s]) => [n, [...s]]);
}

/** Spec §4.1 names and shapes at d = 64, in PyTorch state_dict order. */
const EXPECTED_LAYOUT: Record<string, (string | number[])[][]> = {
  attention: layout(mha(L0), mha(L1)),
  conv_attention: layout(BASECONV, mha(L1)),
  // zoology's SlidingAttn has MHA's modules (Wqkv, out_proj with biases); the window is only a mask.
  sliding_window: layout(BASECONV, mha(L1)),
  based: layout(BASECONV, PROJ),
  rebased_x2: layout(BASECONV, PROJ),
  rebased_norm: layout(BASECONV, PROJ),
  rebased: layout(BASECONV, [...PROJ, ...extra(["ln_q.weight", "ln_q.bias", "ln_k.weight", "ln_k.bias"])]),
  rebased_gamma: layout(BASECONV, [...PROJ, ...extra(["ln_q.gamma", "ln_k.gamma"])]),
  rebased_gamma_beta: layout(BASECONV, [...PROJ, ...extra(["ln_q.gamma", "ln_q.beta", "ln_k.gamma", "ln_k.beta"])]),
  rwkv: layout(rwkv(L0), rwkv(L1)),
  conv_rwkv: layout(BASECONV, rwkv(L1)),
  // MambaBlock: mixer directly under the block, then the RMSNorm; d_inner 128, dt_rank 4, d_state 16.
  mamba: [
    ...COMMON_HEAD,
    ...[0, 1].flatMap((layer) => {
      const m = `backbone.layers.${layer}.mixer.`;
      return [
        [`${m}in_proj.weight`, [256, 64]],
        [`${m}conv1d.weight`, [128, 1, 4]],
        [`${m}conv1d.bias`, [128]],
        [`${m}x_proj.weight`, [36, 128]],
        [`${m}dt_proj.weight`, [128, 4]],
        [`${m}dt_proj.bias`, [128]],
        [`${m}A_log`, [128, 16]],
        [`${m}D`, [128]],
        [`${m}out_proj.weight`, [64, 128]],
        [`backbone.layers.${layer}.norm.weight`, [64]],
      ];
    }),
    ...LN_F,
  ].map(([n, sh]) => [n as string, [...sh as readonly number[]]]),
  // Hyena's registration order: in_proj, out_proj, short_filter, then filter_fn (bias, pos_emb.z, the implicit MLP
  // with its one shared Sin frequency at implicit_filter.1).
  hyena: layout(hyenaLayer(L0), hyenaLayer(L1)),
  // Mamba2Block as MambaBlock; zoology's Mamba2: in_proj (z 128 | xBC 160 | dt 2), conv over xBC, 2 heads of 64.
  mamba2: [
    ...COMMON_HEAD,
    ...[0, 1].flatMap((layer) => {
      const m = `backbone.layers.${layer}.mixer.`;
      return [
        [`${m}in_proj.weight`, [290, 64]],
        [`${m}conv1d.weight`, [160, 1, 4]],
        [`${m}conv1d.bias`, [160]],
        [`${m}dt_bias`, [2]],
        [`${m}A_log`, [2]],
        [`${m}D`, [2]],
        [`${m}norm.weight`, [128]],
        [`${m}out_proj.weight`, [64, 128]],
        [`backbone.layers.${layer}.norm.weight`, [64]],
      ];
    }),
    ...LN_F,
  ].map(([n, sh]) => [n as string, [...sh as readonly number[]]]),
  deltanet: layout(BASECONV, deltaNet(false)),
  gated_deltanet: layout(BASECONV, deltaNet(true)),
};

const cfg64 = (mixer: ModelConfig["mixer"]) => makeModelConfig({ mixer, dModel: 64, seqLen: 64 });

Deno.test("param spec: state_dict names and [out, in] shapes of every mixer (spec §4.1, d = 64)", () => {
  for (const mixer of MIXERS) {
    const got = paramSpec(cfg64(mixer)).map((p) => [p.name, p.shape]);
    assertEquals(got, EXPECTED_LAYOUT[mixer], mixer);
  }
  // The head is tied: no separate parameter, the tie is described for checkpoint metadata.
  assert(paramSpec(cfg64("rebased")).every((p) => !p.name.startsWith("lm_head")));
  assertEquals(TIE_METADATA, { tied: "lm_head.weight=backbone.embeddings.word_embeddings.weight" });
});

Deno.test("param spec: init descriptors follow spec §2.4", () => {
  const bound = 1 / Math.sqrt(3);
  for (const mixer of MIXERS) {
    for (const p of paramSpec(cfg64(mixer))) {
      const leaf = p.name.split(".").slice(-2).join(".");
      let expected: InitDescriptor;
      // RWKV's constructor formulas and Mamba's A_log = log(1..16): checked in tests/mixers/registry_test.ts.
      if (/time_(decay|first|mix_[kvr])$|A_log$|pos_emb\.z$/.test(p.name)) continue;
      if (p.name.endsWith("filter_fn.bias")) { // Hyena's D term: torch.randn, untouched by _init_weights
        assertEquals(p.init, { kind: "normal", mean: 0, std: 1 });
        continue;
      }
      if (p.name.includes("out_proj.weight")) expected = { kind: "normal", mean: 0, std: 0.01 };
      else if (/conv\.conv\.|short_filter\./.test(p.name)) expected = { kind: "uniform", low: -bound, high: bound };
      else if (p.name.endsWith(".freq")) expected = { kind: "ones" }; // Hyena's Sin(w = 1)
      else if (p.name.includes("conv1d.")) expected = { kind: "uniform", low: -0.5, high: 0.5 }; // fan_in 4
      else if (/mixer\.D$/.test(p.name)) expected = { kind: "ones" };
      else if (p.name.endsWith("dt_bias")) { // Gated DeltaNet: softplus⁻¹ of a log-uniform dt, as Mamba's own
        expected = { kind: "inverseSoftplusLogUniform", low: 1e-3, high: 0.1, floor: 1e-4 };
      } else if (/norm[12f]?\.weight$|ln_f\.weight$|ln_[qk]\.(weight|gamma)$/.test(p.name)) expected = { kind: "ones" };
      else if (/\.bias$|\.beta$/.test(p.name)) expected = { kind: "zeros" };
      else expected = { kind: "normal", mean: 0, std: 0.02 }; // Linear weights and both embeddings
      assertEquals(p.init, expected, `${mixer} ${p.name} (${leaf})`);
    }
  }
  const outProj = paramSpec(cfg64("attention")).find((p) => p.name === `${L1}out_proj.weight`)!;
  assert(outProj.init.kind === "normal" && Math.abs(outProj.init.std - 0.02 / Math.sqrt(4)) < 1e-15);
});

Deno.test("param spec: every architecture of Table 4 now trains (a trainable spec with inits)", () => {
  for (const mixer of ["rwkv", "conv_rwkv", "mamba"] as const) {
    const cfg = makeArchConfig({ mixer, dModel: 64, seqLen: 64 });
    assertEquals(paramSpec(cfg as ModelConfig).map((p) => p.name), paramShapes(cfg).map((p) => p.name));
  }
  const rwkv = paramShapes(makeArchConfig({ mixer: "rwkv", dModel: 64, seqLen: 64 })).map((p) => p.name);
  assert(rwkv.includes(`${L1}time_mix_r`) && rwkv.includes(`${L0}output.weight`));
  const mamba = paramShapes(makeArchConfig({ mixer: "mamba", dModel: 64, seqLen: 64 })).map((p) => p.name);
  assert(mamba.includes("backbone.layers.1.norm.weight") && mamba.includes("backbone.layers.0.mixer.A_log"));
  // Mamba's own dt init on request: U(±R^-0.5) weight, a softplus⁻¹ bias of a log-uniform dt.
  const original = paramSpec(makeModelConfig({ mixer: "mamba", dModel: 64, seqLen: 64, mambaInit: "original" }));
  const dt = (n: string) => original.find((p) => p.name === `backbone.layers.0.mixer.dt_proj.${n}`)!.init;
  assertEquals(dt("weight"), { kind: "uniform", low: -0.5, high: 0.5 });
  assertEquals(dt("bias"), { kind: "inverseSoftplusLogUniform", low: 1e-3, high: 0.1, floor: 1e-4 });
  const bias = initParams(makeModelConfig({ mixer: "mamba", dModel: 64, seqLen: 64, mambaInit: "original" }), 1)
    .get("backbone.layers.0.mixer.dt_proj.bias")!;
  const softplus = (v: number) => Math.log1p(Math.exp(v));
  assert(bias.every((b) => softplus(b) >= 1e-4 * 0.999 && softplus(b) <= 0.1 * 1.001), "dt in [1e-3, 0.1]");
});

Deno.test("model config: defaults and validation errors name the field, the value and what is allowed", () => {
  assertEquals(makeModelConfig({ mixer: "based", dModel: 64, seqLen: 128 }), {
    mixer: "based",
    dModel: 64,
    seqLen: 128,
    vocabSize: 8192,
    numHeads: 12,
    featureDim: 16,
    attnHeads: 1,
  });
  assertEquals(makeModelConfig({ mixer: "based", dModel: 64, seqLen: 8, vocabSize: undefined }).vocabSize, 8192);
  const bad = (input: Record<string, unknown>, re: RegExp) =>
    assertThrows(() => makeModelConfig({ mixer: "rebased", dModel: 64, seqLen: 64, ...input } as never), re);
  bad(
    { mixer: "h3" },
    /mixer: "h3" is not a known mixer; valid mixers: attention, conv_attention, based, rebased/,
  );
  bad({ dModel: 0 }, /dModel: 0 must be a positive integer/);
  bad({ dModel: 12.5 }, /dModel: 12.5 must be a positive integer/);
  bad({ seqLen: -4 }, /seqLen: -4 must be a positive integer/);
  bad({ vocabSize: "8192" }, /vocabSize: "8192" must be a positive integer/);
  bad({ dModel: 11 }, /dModel: 11 is too small for rebased.*floor\(11\/12\).*>= 12/);
  bad({ mixer: "based", dModel: 8 }, /dModel: 8 is too small for based/);
  bad({ mixer: "attention", dModel: 10, attnHeads: 4 }, /attnHeads: 4 must divide dModel = 10 for attention/);
  bad({ mixer: "mamba", mambaInit: "fancy" }, /mambaInit: "fancy" must be "reference" or "original"/);
  bad({ mixer: "rwkv", wkvBf16: "yes" }, /wkvBf16: "yes" must be true or false/);
  // The smallest legal linear-attention width has value head dim 1.
  const smallest = paramSpec(makeModelConfig({ mixer: "rebased", dModel: 12, seqLen: 5 }));
  assertEquals(smallest.find((p) => p.name === `${L1}proj_v.weight`)!.shape, [12, 12]);
  // Softmax attention works at any width with one head.
  makeModelConfig({ mixer: "conv_attention", dModel: 17, seqLen: 5 });
});

Deno.test("init: shapes, constants and the uniform conv bound", () => {
  const cfg = makeModelConfig({ mixer: "rebased", dModel: 24, seqLen: 16, vocabSize: 50 });
  const params = initParams(cfg, 7);
  const spec = paramSpec(cfg);
  assertEquals([...params.keys()], spec.map((p) => p.name));
  for (const p of spec) {
    const v = params.get(p.name)!;
    assertEquals(v.length, numel(p.shape), p.name);
    if (p.init.kind === "ones") assert(v.every((x) => x === 1), `${p.name} ones`);
    if (p.init.kind === "zeros") assert(v.every((x) => x === 0), `${p.name} zeros`);
  }
  const conv = [...params.get(`${L0}conv.conv.weight`)!, ...params.get(`${L0}conv.conv.bias`)!];
  const bound = 1 / Math.sqrt(3);
  assert(conv.every((x) => Math.abs(x) <= bound), "conv within ±1/sqrt(3)");
  assert(Math.max(...conv.map(Math.abs)) > 0.8 * bound, "conv spans its range");
  assert(new Set(conv).size === conv.length, "conv values distinct");
});

function stats(v: Float32Array): { mean: number; std: number } {
  let s = 0, s2 = 0;
  for (const x of v) {
    s += x;
    s2 += x * x;
  }
  const mean = s / v.length;
  return { mean, std: Math.sqrt(s2 / v.length - mean * mean) };
}

Deno.test("init: N(0, 0.02) word embeddings [8192, 64], N(0, 0.01) out_proj, U(±1/√3) conv", () => {
  const params = initParams(makeModelConfig({ mixer: "attention", dModel: 64, seqLen: 64 }), 42);
  const word = stats(params.get("backbone.embeddings.word_embeddings.weight")!); // 524288 samples
  assert(Math.abs(word.mean) < 2e-4, `mean ${word.mean}`); // ~7 standard errors (0.02/sqrt(524288))
  assert(Math.abs(word.std - 0.02) < 2e-4, `std ${word.std}`);
  const out = stats(params.get(`${L1}out_proj.weight`)!); // 4096 samples
  assert(Math.abs(out.std - 0.01) < 0.001, `out_proj std ${out.std}`);
  const conv = stats(
    initParams(makeModelConfig({ mixer: "based", dModel: 512, seqLen: 8 }), 1).get(
      `${L0}conv.conv.weight`,
    )!,
  );
  assert(Math.abs(conv.std - 1 / 3) < 0.01, `conv std ${conv.std} (uniform ±1/√3 has std 1/3)`);
});

Deno.test("init: deterministic per seed, different across seeds and across parameters", () => {
  const cfg = makeModelConfig({ mixer: "based", dModel: 16, seqLen: 8, vocabSize: 40 });
  const a = initParams(cfg, 3), b = initParams(cfg, 3), c = initParams(cfg, 4);
  for (const [name, v] of a) assertEquals(b.get(name), v, name);
  const q = `${L1}proj_q.weight`, k = `${L1}proj_k.weight`;
  assertNotEquals(c.get(q), a.get(q));
  assertNotEquals(a.get(q), a.get(k)); // same shape and init, own streams
  // Keyed by name: parameters shared by two mixers start identical for one seed.
  const rebased = initParams(makeModelConfig({ ...cfg, mixer: "rebased" }), 3);
  for (const name of [q, `${L1}proj_o.weight`, `${L0}conv.conv.weight`, "backbone.embeddings.word_embeddings.weight"]) {
    assertEquals(rebased.get(name), a.get(name), name);
  }
  assertThrows(() => initParams(cfg, -1), /seed -1/);
  assert(INIT_STREAM > 0);
});

Deno.test("init: stream ids of all parameter names are distinct", () => {
  const names = new Set<string>();
  for (const mixer of MIXERS) for (const p of paramSpec(cfg64(mixer))) names.add(p.name);
  const ids = new Set([...names].map(paramStreamId));
  assertEquals(ids.size, names.size);
});
