import { assert, assertEquals, assertNotEquals, assertThrows } from "../_helpers/assert.ts";
import { canonicalJson, computeRunId, RUN_ID_LENGTH } from "../../src/train/run_id.ts";
import { fakeConfig } from "../_helpers/results.ts";

Deno.test("run_id: canonical JSON sorts keys at every level and drops undefined", () => {
  assertEquals(
    canonicalJson({ b: 1, a: { d: [1, { z: 0, y: null }], c: "x" }, u: undefined }),
    '{"a":{"c":"x","d":[1,{"y":null,"z":0}]},"b":1}',
  );
  assertEquals(canonicalJson({ a: 1, b: 2 }), canonicalJson({ b: 2, a: 1 }));
  assertThrows(() => canonicalJson({ lr: NaN }), /non-finite/);
  assertThrows(() => canonicalJson({ lr: Infinity }), /non-finite/);
});

Deno.test("run_id: stable across key order and processes; sensitive to every field", () => {
  const cfg = fakeConfig();
  const id = computeRunId(cfg);
  assertEquals(id.length, RUN_ID_LENGTH);
  assert(/^[0-9a-f]{16}$/.test(id));
  // Golden value, computed independently: sha256(json.dumps(cfg, sort_keys=True, separators=(",", ":"))) in Python.
  // Changing the hashing or the canonical form would orphan every existing results file.
  assertEquals(id, "59fb7a26174079bd");
  const reversed = Object.fromEntries(Object.entries(cfg).reverse()) as typeof cfg;
  assertEquals(computeRunId(reversed), id);
  assertEquals(computeRunId(JSON.parse(JSON.stringify(cfg))), id);
  for (const [k, v] of Object.entries({ lr: 3e-3, seed: 43, mixer: "rebased", maxSteps: 10, randomNonQueries: true })) {
    assertNotEquals(computeRunId({ ...cfg, [k]: v }), id, `changing ${k} must change the id`);
  }
});
