/** `mqar bench` flags: defaults, parsing, and one-line errors that name the flag (no GPU needed). */
import { benchSettingsFromArgs } from "../../src/cli/bench.ts";
import { BENCH_DEFAULTS } from "../../src/bench/throughput.ts";
import { UsageError } from "../../src/cli/_common.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";

Deno.test("bench flags: defaults and parsed values", () => {
  const d = benchSettingsFromArgs([]);
  assertEquals(d, { settings: BENCH_DEFAULTS, out: "results/bench", json: false });
  const p = benchSettingsFromArgs([
    "--mixers",
    "attention,rebased_x2",
    "--d-models",
    "64,128",
    "--seq-lens",
    "256,2048",
    "--batch-size",
    "4",
    "--steps",
    "3",
    "--kv-pairs",
    "8",
    "--max-memory-mib",
    "512",
    "--no-profile",
    "--no-inference",
    "--json",
    "--out",
    "/tmp/x",
  ]);
  assertEquals(p.settings.mixers, ["attention", "rebased_x2"]);
  assertEquals([p.settings.dModels, p.settings.seqLens], [[64, 128], [256, 2048]]);
  assertEquals([p.settings.batchSize, p.settings.steps, p.settings.kvPairs], [4, 3, 8]);
  assertEquals(p.settings.maxMemoryBytes, 512 * 2 ** 20);
  assertEquals([p.settings.profile, p.settings.inference, p.json, p.out], [false, false, true, "/tmp/x"]);
});

Deno.test("bench flags: every bad value is a one-line UsageError naming its flag", () => {
  const cases: [string[], string][] = [
    [["--mixers", "based,mamba3"], "--mixers"],
    [["--mixers", ""], "--mixers"],
    [["--d-models", "64,x"], "--d-models"],
    [["--d-models", "8", "--mixers", "based"], "--d-models"], // 12 heads need d >= 12
    [["--seq-lens", "255"], "--seq-lens"], // MQAR needs an even L
    [["--seq-lens", "0"], "--seq-lens"],
    [["--batch-size", "0"], "--batch-size"],
    [["--steps", "1.5"], "--steps"],
    [["--repeats", "-1"], "--repeats"], // parseArgs explains this one over two lines unless joined
    [["--warmup", "x"], "--warmup"],
    [["--vocab-size", "100", "--seq-lens", "256"], "--vocab-size"], // V must exceed L
    [["--kv-pairs", "65", "--seq-lens", "256"], "--kv-pairs"], // 4N <= L
    [["--max-memory-mib", "0"], "--max-memory-mib"],
    [["--profile-passes", "0"], "--profile-passes"],
    [["--batch"], "--batch"],
    [["--steps"], "--steps"],
  ];
  for (const [args, flag] of cases) {
    let error: unknown = null;
    try {
      benchSettingsFromArgs(args);
    } catch (e) {
      error = e;
    }
    assert(error instanceof UsageError, `${args.join(" ")}: expected a UsageError, got ${error}`);
    const msg = (error as Error).message;
    assert(msg.includes(flag) && !msg.includes("\n"), `${args.join(" ")}: "${msg}" should name ${flag} on one line`);
  }
});
