import { fakeConfig, fakeResult } from "../_helpers/results.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { parseResultLine } from "../../src/sweep/results_file.ts";

Deno.test("fixtures: a fake record passes the results-file validator and round-trips through JSON", () => {
  const r = fakeResult(fakeConfig(), 0.75);
  const parsed = parseResultLine(JSON.stringify(r));
  assert(parsed.ok, parsed.ok ? "" : parsed.reason);
  assertEquals(parsed.result, r);
});
