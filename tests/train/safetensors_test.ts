import { makeModelConfig, MIXERS } from "../../src/model/config.ts";
import { initParams } from "../../src/model/init.ts";
import { paramSpec, stateDictExtras } from "../../src/model/param_spec.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  fromStateDict,
  readSafetensors,
  SafetensorsError,
  type TensorData,
  toStateDict,
  writeSafetensors,
} from "../../src/train/safetensors.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "../_helpers/assert.ts";

const WORD = "backbone.embeddings.word_embeddings.weight";

/** Builds a file byte by byte: u64 LE header length, the header text as given, then raw little-endian floats. */
function handBuilt(headerText: string, floats: number[], extraBytes = 0): Uint8Array {
  const header = new TextEncoder().encode(headerText);
  const bytes = new Uint8Array(8 + header.length + floats.length * 4 + extraBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, header.length, true);
  view.setUint32(4, 0, true);
  bytes.set(header, 8);
  floats.forEach((x, i) => view.setFloat32(8 + header.length + 4 * i, x, true));
  return bytes;
}

function tensors(entries: [string, number[], number[]][]): Map<string, TensorData> {
  return new Map(entries.map(([name, shape, values]) => [name, { shape, data: new Float32Array(values) }]));
}

Deno.test("safetensors: a hand-built file (unaligned header, odd key order, scalar, empty tensor) parses", () => {
  const header = '{"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]},' +
    '"__metadata__":{"format":"pt","note":"é"},' +
    '"a":{"dtype":"F32","shape":[3,1],"data_offsets":[0,12]},' +
    '"s":{"dtype":"F32","shape":[],"data_offsets":[20,24]},' +
    '"e":{"dtype":"F32","shape":[0,4],"data_offsets":[24,24]}}';
  const file = handBuilt(header, [1.5, -2, 3.25, 1e-30, -0, 7]);
  assert((8 + new TextEncoder().encode(header).length) % 8 !== 0, "header deliberately unaligned");
  const { tensors: t, metadata } = decodeSafetensors(file);
  assertEquals(metadata, { format: "pt", note: "é" });
  assertEquals([...t.keys()], ["b", "a", "s", "e"]);
  assertEquals(t.get("a"), { shape: [3, 1], data: new Float32Array([1.5, -2, 3.25]) });
  assertEquals(t.get("b"), { shape: [2], data: new Float32Array([1e-30, -0]) });
  assert(Object.is(t.get("b")!.data[1], -0), "negative zero kept");
  assertEquals(t.get("s"), { shape: [], data: new Float32Array([7]) });
  assertEquals(t.get("e"), { shape: [0, 4], data: new Float32Array(0) });
});

Deno.test("safetensors: writer layout is byte-exact (length, space padding to 8, offsets, LE data)", () => {
  const bytes = encodeSafetensors(tensors([["w", [2, 2], [1, 2, 3, 4]], ["b", [1], [0.5]]]), { k: "v" });
  const view = new DataView(bytes.buffer);
  const n = Number(view.getBigUint64(0, true));
  assertEquals((8 + n) % 8, 0);
  const headerText = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  const json = '{"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},' +
    '"b":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}}';
  assertEquals(headerText.trimEnd(), json);
  assertEquals(headerText.slice(json.length), " ".repeat(n - json.length));
  assert(n - json.length < 8);
  assertEquals(bytes.length, 8 + n + 20);
  assertEquals([0, 1, 2, 3, 4].map((i) => view.getFloat32(8 + n + 4 * i, true)), [1, 2, 3, 4, 0.5]);
  // No metadata: no "__metadata__" key.
  const bare = encodeSafetensors(tensors([["x", [1], [1]]]));
  assert(!new TextDecoder().decode(bare).includes("__metadata__"));
});

Deno.test("safetensors: file round trip through an atomic write, overwriting an older file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/model.safetensors`;
    await writeSafetensors(path, tensors([["old", [1], [9]]]));
    const t = tensors([["x", [2, 3], [0, 1, -1, 3.5, 1e10, -1e-10]], ["y", [1, 1, 3], [0.25, 0.5, 0.75]]]);
    await writeSafetensors(path, t, { step: "17" });
    const back = await readSafetensors(path);
    assertEquals(back.tensors, t);
    assertEquals(back.metadata, { step: "17" });
    const entries = [...Deno.readDirSync(dir)].map((e) => e.name);
    assertEquals(entries, ["model.safetensors"], "no temp files left behind");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("safetensors: a failed write leaves no temp file and the target untouched", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // The target is a non-empty directory, so the final rename fails after the temp file was written.
    await Deno.mkdir(`${dir}/ckpt.safetensors`);
    await Deno.writeTextFile(`${dir}/ckpt.safetensors/keep`, "x");
    await assertRejects(() => writeSafetensors(`${dir}/ckpt.safetensors`, tensors([["x", [1], [1]]])));
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["ckpt.safetensors"]);
    assertEquals(await Deno.readTextFile(`${dir}/ckpt.safetensors/keep`), "x");
    // Bad input is rejected before anything is written.
    await assertRejects(
      () => writeSafetensors(`${dir}/bad.safetensors`, tensors([["x", [2, 2], [1, 2, 3]]])),
      /tensor x: shape \[2, 2\] has 4 elements but the data has 3/,
    );
    assertThrows(() => encodeSafetensors(tensors([["x", [1], [1]]]), { n: 3 as unknown as string }), /metadata "n"/);
    assertEquals([...Deno.readDirSync(dir)].length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("safetensors: malformed files give errors naming the problem and the tensor", async () => {
  const good = '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
  const bad = (bytes: Uint8Array, re: RegExp) => assertThrows(() => decodeSafetensors(bytes, "f.safetensors"), re);
  bad(new Uint8Array(5), /f\.safetensors: truncated: 5 bytes/);
  bad(handBuilt(good, [1, 2]).subarray(0, 30), /truncated: header length is \d+ bytes but only 22 bytes follow/);
  bad(handBuilt(good, [1]), /tensor w: data_offsets \[0, 8\] out of range \(data section is 4 bytes\)/);
  bad(handBuilt(good, [1, 2], 4), /data section has 12 bytes but the tensors cover only 8/);
  bad(handBuilt('{"w":{"dtype":"F32",', [1, 2]), /header is not valid JSON/);
  bad(handBuilt("[1,2]", []), /header must be a JSON object/);
  bad(handBuilt('{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}', [1]), /tensor w: unsupported dtype "F16"/);
  bad(handBuilt('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', [1, 2]), /tensor w: .*needs 12/);
  bad(handBuilt('{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}', []), /tensor w: shape \[-1\]/);
  bad(handBuilt('{"w":{"dtype":"F32","shape":[1],"data_offsets":[4]}}', [1, 2]), /tensor w: data_offsets \[4\]/);
  bad(handBuilt('{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}', [1, 2]), /tensor w: .*out of range/);
  bad(
    handBuilt(
      '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
      [1, 2, 3],
    ),
    /tensor b: data overlaps tensor a/,
  );
  bad(
    handBuilt('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', [1, 2]),
    /data bytes \[0, 4\) before tensor a belong to no tensor/,
  );
  bad(handBuilt('{"__metadata__":{"n":3}}', []), /"__metadata__"\."n" must be a string/);
  const huge = new Uint8Array(16);
  new DataView(huge.buffer).setBigUint64(0, 2n ** 40n, true);
  bad(huge, /header length 1099511627776 exceeds/);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/t.safetensors`, handBuilt(good, [1]));
    await assertRejects(() => readSafetensors(`${dir}/t.safetensors`), /t\.safetensors: tensor w: data_offsets/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("state dict: every mixer round-trips through a file; the tie is recorded", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const mixer of MIXERS) {
      const cfg = makeModelConfig({ mixer, dModel: 12, seqLen: 8, vocabSize: 20 });
      const params = initParams(cfg, 5);
      const sd = toStateDict(cfg, params);
      assertEquals(sd.metadata, { tied: "lm_head.weight=backbone.embeddings.word_embeddings.weight" });
      // The parameters, then PyTorch's extra entries (Hyena: its shared Sin frequency's copies and two buffers).
      assertEquals([...sd.tensors.keys()], [
        ...paramSpec(cfg).map((p) => p.name),
        ...stateDictExtras(cfg).map((e) => e.name),
      ]);
      const path = `${dir}/${mixer}.safetensors`;
      await writeSafetensors(path, sd.tensors, { ...sd.metadata, mixer });
      const back = await readSafetensors(path);
      assertEquals(back.metadata.tied, sd.metadata.tied);
      assertEquals(fromStateDict(cfg, back.tensors, back.metadata), params, mixer);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("state dict: Hyena's shared-parameter copies and buffers, as PyTorch lists them, are written and checked", () => {
  const cfg = makeModelConfig({ mixer: "hyena", dModel: 8, seqLen: 6, vocabSize: 20 });
  const params = initParams(cfg, 2);
  const p = "backbone.layers.0.sequence_mixer.mixer.filter_fn.";
  const sd = toStateDict(cfg, params).tensors;
  assertEquals(sd.get(`${p}implicit_filter.5.freq`)!.data, params.get(`${p}implicit_filter.1.freq`));
  assertEquals(sd.get(`${p}pos_emb.t`)!.shape, [1, 6, 1]);
  assertEquals([...sd.get(`${p}pos_emb.t`)!.data].map((v) => Math.round(v * 5)), [0, 1, 2, 3, 4, 5]);
  assertEquals(sd.get(`${p}modulation.deltas`)!.shape, [1, 1, 8]);
  // Loading without them works too (our own older files); with a copy that differs it does not.
  const without = new Map([...sd].filter(([k]) => !/\.(3|5)\.freq$|pos_emb\.t$|deltas$/.test(k)));
  assertEquals(fromStateDict(cfg, without), params);
  const bad = new Map(sd);
  bad.set(`${p}implicit_filter.3.freq`, { shape: [1, 64], data: new Float32Array(64) });
  assertThrows(() => fromStateDict(cfg, bad), /implicit_filter\.3\.freq differs from .*implicit_filter\.1\.freq/);
});

Deno.test("state dict: missing, mis-shaped, foreign and untied tensors are rejected with clear errors", () => {
  const cfg = makeModelConfig({ mixer: "rebased", dModel: 12, seqLen: 8, vocabSize: 20 });
  const params = initParams(cfg, 1);
  const sd = () => new Map(toStateDict(cfg, params).tensors);
  const L1 = "backbone.layers.1.sequence_mixer.mixer.";

  const missing = sd();
  missing.delete(`${L1}ln_k.bias`);
  assertThrows(
    () => fromStateDict(cfg, missing),
    new RegExp(`missing tensor ${L1}ln_k\\.bias \\(expected shape \\[192\\] for mixer rebased\\)`),
  );

  const reshaped = sd();
  reshaped.set(`${L1}proj_o.weight`, { shape: [6, 24], data: new Float32Array(144) });
  assertThrows(() => fromStateDict(cfg, reshaped), /proj_o\.weight has shape \[6, 24\], expected \[12, 12\]/);
  const transposed = sd();
  transposed.set(WORD, { shape: [12, 20], data: params.get(WORD)! });
  assertThrows(
    () => fromStateDict(cfg, transposed),
    /word_embeddings\.weight has shape \[12, 20\], expected \[20, 12\]/,
  );

  // A based checkpoint lacks ln_q/ln_k; a rebased one loaded as based carries foreign tensors.
  const based = makeModelConfig({ ...cfg, mixer: "based" });
  assertThrows(() => fromStateDict(based, sd()), /not parameters of mixer based: .*ln_q\.weight.*another mixer/);
  assertThrows(() => fromStateDict(cfg, toStateDict(based, initParams(based, 1)).tensors), /missing tensor .*ln_q/);
  // Other sizes: a different L changes the position table.
  const longer = makeModelConfig({ ...cfg, seqLen: 16 });
  assertThrows(
    () => fromStateDict(longer, sd()),
    /position_embeddings\.weight has shape \[8, 12\], expected \[16, 12\]/,
  );

  // lm_head: an identical copy is accepted and dropped, a different one is an error.
  const tiedCopy = sd();
  tiedCopy.set("lm_head.weight", { shape: [20, 12], data: new Float32Array(params.get(WORD)!) });
  const loaded = fromStateDict(cfg, tiedCopy);
  assert(!loaded.has("lm_head.weight"));
  assertEquals(loaded, params);
  const untied = sd();
  const other = new Float32Array(params.get(WORD)!);
  other[7] += 1e-3;
  untied.set("lm_head.weight", { shape: [20, 12], data: other });
  assertThrows(() => fromStateDict(cfg, untied), /lm_head\.weight differs from .*word_embeddings.*untied/);
  assertThrows(() => fromStateDict(cfg, sd(), { tied: "nothing" }), /metadata tied="nothing"/);

  // toStateDict checks its input too.
  const short = new Map(params);
  short.set(`${L1}ln_q.weight`, new Float32Array(3));
  assertThrows(() => toStateDict(cfg, short), /ln_q\.weight has 3 elements, expected 192/);
  assertThrows(
    () => toStateDict(cfg, new Map([...params, ["extra", new Float32Array(1)]])),
    /extra is not a parameter/,
  );
  assert(new SafetensorsError("x") instanceof Error);
});
