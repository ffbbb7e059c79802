/**
 * The mixer registry is the one place a mixer is defined: everything derived from it must agree with it, and no
 * trainable architecture may lack a part.
 */
import { architecture, ARCHITECTURES, findArchitecture } from "../../src/mixers/registry.ts";
import { GPU_BUILDERS } from "../../src/mixers/gpu_registry.ts";
import { makeArchConfig, mixerHelp, MIXERS } from "../../src/model/config.ts";
import { formulaParamCount, paramCount } from "../../src/model/param_count.ts";
import { paramShapes, paramSpec } from "../../src/model/param_spec.ts";
import { mixerLabel } from "../../src/report/report.ts";
import { assert, assertEquals, assertThrows } from "../_helpers/assert.ts";

Deno.test("registry: names are unique, MIXERS are the trainable ones in registry order", () => {
  const names = ARCHITECTURES.map((a) => a.name);
  assertEquals(new Set(names).size, names.length);
  assertEquals([...MIXERS], ARCHITECTURES.filter((a) => a.trainable).map((a) => a.name));
  assertEquals(findArchitecture("no_such_mixer"), undefined);
  assertThrows(() => architecture("no_such_mixer"), /unknown architecture "no_such_mixer"; known: attention/);
});

Deno.test("registry: every layer of every trainable architecture has a GPU builder, a reference and a cost model", () => {
  for (const arch of ARCHITECTURES.filter((a) => a.trainable)) {
    assert(["transformer", "mamba"].includes(arch.block), `${arch.name}: the GPU graph has no ${arch.block} block`);
    for (const layer of arch.layers) {
      assert(GPU_BUILDERS[layer.kind], `${arch.name}: no GPU builder for layer kind ${layer.kind}`);
      for (const part of ["reference", "flops", "activations"] as const) {
        assertEquals(typeof layer[part], "function", `${arch.name} ${layer.kind}: ${part}`);
      }
    }
  }
});

Deno.test("registry: each descriptor's closed-form count equals the count of its parameter shapes", () => {
  for (const arch of ARCHITECTURES) {
    for (const dModel of [12, 24, 64, 130]) {
      for (const seqLen of [16, 256]) {
        const cfg = makeArchConfig({ mixer: arch.name, dModel, seqLen, vocabSize: 300 });
        assertEquals(formulaParamCount(cfg), paramCount(cfg), `${arch.name} d=${dModel} L=${seqLen}`);
      }
    }
  }
});

Deno.test("registry: labels, help texts and breakdown rows come from the descriptors", () => {
  for (const arch of ARCHITECTURES) {
    assert(mixerHelp("", true).includes(`${arch.name}`), arch.name);
    assert(mixerHelp("", true).includes(arch.summary), arch.name);
    const cfg = makeArchConfig({ mixer: arch.name, dModel: 24, seqLen: 16 });
    const modules = new Set(paramShapes(cfg).map((p) => p.module));
    assert(modules.has(`layers.1.mixer (${arch.layers[1].label})`), `${arch.name}: ${[...modules]}`);
    if (arch.paperLabel) assertEquals(mixerLabel(arch.name), `${arch.name} (${arch.paperLabel})`);
  }
  assertEquals(mixerHelp(""), mixerHelp("", true), "every architecture trains");
  assertEquals(mixerLabel("rebased_gamma"), "rebased_gamma ((γ·x)²)");
});

Deno.test("registry: RWKV's constructor inits are the spec's formulas, per layer", () => {
  const cfg = makeArchConfig({ mixer: "rwkv", dModel: 8, seqLen: 16 }) as Parameters<typeof paramSpec>[0];
  const spec = new Map(paramSpec(cfg).map((p) => [p.name, p.init]));
  const at = (layer: number, name: string) => {
    const init = spec.get(`backbone.layers.${layer}.sequence_mixer.mixer.${name}`)!;
    assert(init.kind === "values", name);
    return init.values;
  };
  const f = Math.fround, d = 8;
  // Within float32 rounding of the formula (the init rounds after each float32 operation, as torch does).
  const near = (got: number, want: number, what: string) =>
    assert(Math.abs(got - want) <= 2 ** -22 * Math.max(1, Math.abs(want)), `${what}: ${got} vs ${want}`);
  for (const layer of [0, 1]) {
    const r01 = layer, r10 = 1 - layer / 2;
    for (let h = 0; h < d; h++) {
      near(at(layer, "time_decay")[h], -5 + 8 * (h / (d - 1)) ** (0.7 + 1.3 * r01), `decay ${layer} ${h}`);
      near(at(layer, "time_first")[h], Math.log(0.3) + 0.5 * (((h + 1) % 3) - 1), `first ${layer} ${h}`);
      near(at(layer, "time_mix_k")[h], (h / d) ** r10, `mix_k ${layer} ${h}`);
      near(at(layer, "time_mix_v")[h], (h / d) ** r10 + 0.3 * r01, `mix_v ${layer} ${h}`);
      near(at(layer, "time_mix_r")[h], (h / d) ** (0.5 * r10), `mix_r ${layer} ${h}`);
    }
  }
  // time_decay spans −5 .. 3 in both layers; time_first zigzags around ln 0.3.
  assertEquals([at(0, "time_decay")[0], at(0, "time_decay")[d - 1]], [-5, 3]);
  assertEquals(at(0, "time_first").slice(0, 3), [
    f(Math.log(0.3)),
    f(f(Math.log(0.3)) + 0.5),
    f(f(Math.log(0.3)) - 0.5),
  ]);
  // Mamba's A_log = log(1..16) in every row (it survives the reference's _init_weights), D = 1.
  const mcfg = makeArchConfig({ mixer: "mamba", dModel: 16, seqLen: 16 }) as Parameters<typeof paramSpec>[0];
  const aLog = paramSpec(mcfg).find((p) => p.name === "backbone.layers.0.mixer.A_log")!.init;
  assert(aLog.kind === "values");
  assertEquals(aLog.values.slice(14, 18), [Math.log(15), Math.log(16), Math.log(1), Math.log(2)]);
  // key/value/receptance/output are re-initialised N(0, 0.02) by the reference's _init_weights (output is not rescaled).
  assertEquals(spec.get("backbone.layers.1.sequence_mixer.mixer.output.weight"), {
    kind: "normal",
    mean: 0,
    std: 0.02,
  });
});
