/**
 * Hostile input, end to end through `main`: every case is one line on stderr, a non-zero exit, nothing trained and no
 * file's content lost. The README's reliability table lists the same cases.
 */
import { capture } from "../_helpers/console.ts";
import { main } from "../../main.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { makeSweepCommand } from "../../src/cli/sweep.ts";
import type { RunConfig } from "../../src/train/result.ts";
import { readResults, ResultsWriter } from "../../src/sweep/results_file.ts";
import { writeSafetensors } from "../../src/train/safetensors.ts";
import { resolveRunConfig } from "../../src/train/config.ts";
import { adapterFitProblem } from "../../src/cli/_adapter_fit.ts";
import { fakeConfig, fakeResult } from "../_helpers/results.ts";

const TINY = new URL("../../configs/sweeps/cpu-tiny.json", import.meta.url).pathname;

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mqar-bad-input-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs `mqar ARGS` and checks: exit code `code`, exactly one stderr line matching `pattern`, no stack trace. */
async function oneLine(args: string[], pattern: RegExp, code = 2): Promise<string> {
  const r = await capture(() => main(args));
  const lines = r.err.trim().split("\n");
  assertEquals(r.code, code, `mqar ${args.join(" ")}: ${r.err}`);
  assertEquals(lines.length, 1, `mqar ${args.join(" ")}: expected one line, got:\n${r.err}`);
  assert(pattern.test(lines[0]), `mqar ${args.join(" ")}: ${lines[0]} does not match ${pattern}`);
  assert(!/\n\s+at /.test(r.err), "no stack trace");
  return lines[0];
}

/** A sweep command whose trainer only counts calls (no GPU). */
function countingSweep() {
  const calls: RunConfig[] = [];
  const command = makeSweepCommand(() =>
    Promise.resolve((cfg: RunConfig) => {
      calls.push(cfg);
      return Promise.resolve(fakeResult(cfg, 0.5));
    })
  );
  return { command, calls };
}

const TRAIN_TINY = ["--mixer", "based", "--d-model", "16", "--seq-len", "16", "--kv-pairs", "2", "--vocab-size", "64"];

Deno.test("bad input: a results path that is someone's file is refused and left byte for byte", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, string, RegExp][] = [
      ["n.txt", "precious notes\n", /n\.txt:1: line 1 is not a result record/],
      ["n2.txt", "precious notes", /does not look like a results file/],
      ["config.json", await Deno.readTextFile(TINY), /not a results file|not a result record/],
      ["one-line-config.json", JSON.stringify(JSON.parse(await Deno.readTextFile(TINY))), /sweep config/],
      [
        "other-schema.jsonl",
        JSON.stringify(fakeResult(fakeConfig())) + "\n" + JSON.stringify({ ...fakeResult(fakeConfig()), schema: 9 }) +
        "\n",
        /:2: .*schema 9/,
      ],
    ];
    for (const [name, content, pattern] of cases) {
      const path = `${dir}/${name}`;
      await Deno.writeTextFile(path, content);
      const { command, calls } = countingSweep();
      const err = await command.run(["--config", TINY, "--out", path]).then(() => null, (e) => e as Error);
      assert(err !== null && pattern.test(err.message), `${name}: ${err}`);
      assertEquals(calls.length, 0, `${name}: nothing trained`);
      assertEquals(await Deno.readTextFile(path), content, `${name}: unchanged`);
    }
    // The sweep config as its own results file.
    await Deno.writeTextFile(`${dir}/c.json`, JSON.stringify(JSON.parse(await Deno.readTextFile(TINY))));
    const before = await Deno.readTextFile(`${dir}/c.json`);
    await oneLine(["sweep", "--config", `${dir}/c.json`, "--out", `${dir}/c.json`], /is the sweep config itself/);
    assertEquals(await Deno.readTextFile(`${dir}/c.json`), before);
    // merge --out X X where X ends with a complete non-record line: refused, X unchanged.
    const x = `${dir}/x.jsonl`;
    const xContent = JSON.stringify(fakeResult(fakeConfig())) + '\n{"schema":1}\n';
    await Deno.writeTextFile(x, xContent);
    await oneLine(["merge", "--out", x, x], /x\.jsonl:2: line 2 is not a result record/);
    assertEquals(await Deno.readTextFile(x), xContent);
  });
});

Deno.test("bad input: output paths are checked before any work", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/adir`);
    await Deno.writeTextFile(`${dir}/afile`, "keep me\n");
    await oneLine(
      ["train", ...TRAIN_TINY, "--out", `${dir}/adir`],
      /--out: .*adir" is a directory; expected a regular/,
    );
    await oneLine(["train", ...TRAIN_TINY, "--out", "/proc/r.json"], /--out: "\/proc\/r.json": cannot create files/);
    await oneLine(["train", ...TRAIN_TINY, "--save", `${dir}/adir`], /--save: .* is a directory/);
    await oneLine(["train", ...TRAIN_TINY, "--out", `${dir}/afile`], /--out: .*afile" exists and is not a result/);
    await oneLine(["train", ...TRAIN_TINY, "--save", `${dir}/afile`], /--save: .*is not a safetensors checkpoint/);
    await oneLine(["train", ...TRAIN_TINY, "--save", `${dir}/s`, "--out", `${dir}/s`], /need two files/);
    await oneLine(["train", ...TRAIN_TINY, "--out", `${dir}/afile/r.json`], /afile is a regular file, not a dir/);
    assertEquals(await Deno.readTextFile(`${dir}/afile`), "keep me\n");

    const { command, calls } = countingSweep();
    for (const out of ["/dev/null", "/proc/x.jsonl"]) {
      const err = await command.run(["--config", TINY, "--out", out]).then(() => null, (e) => e as Error);
      assert(err && /--out: "\/(dev|proc)\/.*(character device|cannot create)/.test(err.message), String(err));
    }
    assertEquals(calls.length, 0);
    await oneLine(["sweep", "--config", TINY, "--out", "/dev/null", "--dry-run"], /character device/);
    await oneLine(["bench", "--mixers", "based", "--d-models", "16", "--out", `${dir}/afile`], /--out: .*afile" is a/);
    await oneLine(["report", "--results", `${dir}/x.jsonl`, "--out", `${dir}/afile`], /--out: .*is a regular file/);
    await oneLine(["demo", "--out", `${dir}/afile`], /--out: .*is a regular file; expected a directory/);
    assertEquals(await Deno.readTextFile(`${dir}/afile`), "keep me\n");
  });
});

Deno.test("bad input: two sweeps on one results file: the second stops at once, the first's file intact", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/r.jsonl`;
    const first = await ResultsWriter.open(path);
    try {
      await first.append(fakeResult(fakeConfig(), 0.3));
      const { command, calls } = countingSweep();
      const err = await command.run(["--config", TINY, "--out", path]).then(() => null, (e) => e as Error);
      assert(err && /another mqar process .* is writing this results file/.test(err.message), String(err));
      assertEquals(calls.length, 0);
    } finally {
      await first.close();
    }
    assertEquals((await readResults(path)).results.length, 1);
  });
});

Deno.test("bad input: a sweep that finishes nothing says so instead of naming a file it never wrote", async () => {
  await withTempDir(async (dir) => {
    const command = makeSweepCommand(() => Promise.resolve(() => Promise.reject(new Error("device lost"))));
    const r = await capture(() => command.run(["--config", TINY, "--out", `${dir}/r.jsonl`, "--continue-on-error"]));
    assertEquals(r.code, 1);
    assert(r.err.includes("0 runs finished, 0 skipped (already done), 2 failed; no results written"), r.err);
    assertEquals(await Deno.stat(`${dir}/r.jsonl`).catch(() => null), null);
  });
});

Deno.test("bad input: config values that used to crash after validation", async () => {
  await withTempDir(async (dir) => {
    await oneLine(
      ["train", "--batch-size", "512", "--train-examples", "256"],
      /trainExamples: got 256, expected at least batchSize 512/,
    );
    // A checkpoint whose metadata config is not JSON.
    const ckpt = `${dir}/bad.safetensors`;
    await writeSafetensors(ckpt, new Map([["w", { shape: [1], data: new Float32Array(1) }]]), { config: "{oops" });
    await oneLine(["eval", "--checkpoint", ckpt], /__metadata__\.config is not valid JSON/);
    await oneLine(["gate", "--baseline", await json(dir, "[]"), "--current", await json(dir, "[]")], /empty list/);
  });
  // The default micro-batch is always a divisor of the batch (the paper's rule where it is one).
  const mb = (seqLen: number, vocabSize = 4096) =>
    resolveRunConfig({ seqLen, vocabSize, numKvPairs: 2, mixer: "based" }).microBatchSize;
  assertEquals([mb(256), mb(512), mb(1024), mb(2048)], [512, 256, 128, 64]);
  assertEquals(mb(1536), 64); // 256 // 3 = 85 is not a divisor of 512
  assertEquals(mb(262144, 300000), 1); // 256 // 512 = 0
});

async function json(dir: string, text: string): Promise<string> {
  const path = `${dir}/${crypto.randomUUID()}.json`;
  await Deno.writeTextFile(path, text);
  return path;
}

Deno.test("bad input: numbers, repeated flags and duplicate keys", async () => {
  await withTempDir(async (dir) => {
    await oneLine(["train", "--seq-len", "0x10"], /--seq-len: got "0x10", expected an integer \(decimal digits\)/);
    await oneLine(["train", "--d-model", "1.6e1"], /--d-model: got "1\.6e1", expected an integer/);
    await oneLine(["train", "--d-model", "16.0"], /--d-model: got "16\.0"/);
    await oneLine(["train", "--lr", "0x10"], /--lr: got "0x10", expected a number > 0/);
    await oneLine(["train", "--lr", "-0.001"], /--lr: got "-0\.001", expected a number > 0/);
    await oneLine(["sweep", "--config", TINY, "--out", dir, "--shard", "0x1/2"], /--shard: got "0x1\/2"/);
    await oneLine(["train", "--lr", "1e-3", "--lr", "3e-3"], /--lr is given more than once \("1e-3" and "3e-3"\)/);
    await oneLine(["sweep", "--config", TINY, "--config", TINY, "--out", dir], /--config is given more than once/);
    await oneLine(["bench", "--seq-lens", "1e9"], /--seq-lens: got "1e9", expected an integer/);
    await oneLine(["bench", "--seq-lens", "1000000000", "--vocab-size", "8192"], /^mqar bench: --seq-lens: .*seqLen/);
    await oneLine(["bench", "--variant", "delta_rul=chunked"], /--variant: unknown op "delta_rul"/);
    await oneLine(
      ["bench", "--variant", "ssd=chunk"],
      /--variant: ssd must be one of recurrent, chunked, got "ssd=chunk"/,
    );

    const dup = await json(dir, '{\n  "lr": 0.001,\n  "dModel": 64,\n  "lr": 0.003\n}\n');
    await oneLine(["train", "--config", dup], /key "lr" appears twice in the top-level object \(line 4\)/);
    const tiny = JSON.parse(await Deno.readTextFile(TINY));
    const dupSweep = await json(dir, JSON.stringify(tiny).replace('"epochs":2', '"epochs":2,"epochs":3'));
    const r = await capture(() => main(["sweep", "--config", dupSweep, "--out", dir, "--dry-run"]));
    assertEquals(r.code, 2);
    assert(/key "epochs" appears twice/.test(r.err), r.err);
    // A new mixer's impossible shapes get the same one-line errors as the old ones'.
    await oneLine(["train", "--mixer", "rwkv", "--d-model", "1"], /dModel: 1 must be >= 2 for rwkv/);
    await oneLine(["train", "--mixer", "conv_rwkv", "--wkv-bf16", "--d-model", "1"], /dModel: 1 must be >= 2/);
    await oneLine(["train", "--mixer", "based", "--d-model", "8"], /dModel: 8 is too small for based/);
    await oneLine(
      ["train", "--mixer", "h3"],
      /mixer: got "h3", expected one of attention, .*sliding_window, deltanet, gated_deltanet, mamba2$/,
    );
    await oneLine(
      ["train", "--mixer", "deltanet", "--d-model", "25"],
      /dModel: 25 must be a multiple of 2 for deltanet/,
    );
    await oneLine(
      ["train", "--mixer", "rebased", "--window", "8"],
      /window: rebased has no sliding window; mixers with one: sliding_window/,
    );
    await oneLine(
      ["train", "--mixer", "sliding_window", "--window", "-1"],
      /--window: got "-1", expected an integer \(decimal digits\) >= 0/,
    );
    await oneLine(["train", "--mixer", "mamba", "--mamba-init", "fancy"], /--mamba-init|mambaInit: got "fancy"/);
    const big = await json(dir, '{"lr": 1e999}');
    await oneLine(["train", "--config", big], /lr: got Infinity \(out of the float64 range\)/);
  });
});

Deno.test("bad input: report reads a train result record as one run instead of calling it corrupt", async () => {
  await withTempDir(async (dir) => {
    const record = `${dir}/run.json`;
    await Deno.writeTextFile(record, JSON.stringify(fakeResult(fakeConfig(), 0.7), null, 2) + "\n");
    const r = await capture(() => main(["report", "--results", record, "--out", `${dir}/report`]));
    assertEquals(r.code, 0, r.err);
    assert(r.out.includes("1 records"), r.out);
  });
});

Deno.test("bad input: a vocabulary too large for one binding names vocabSize; the LM head grid is split", () => {
  const cfg = resolveRunConfig({
    mixer: "rebased",
    dModel: 16,
    seqLen: 16,
    numKvPairs: 2,
    vocabSize: 4194305,
    trainExamples: 64,
    batchSize: 16,
  });
  const lavapipe = {
    limits: { maxStorageBufferBindingSize: 128 * 2 ** 20, maxBufferSize: 2 ** 31 },
    info: { software: true },
  } as unknown as Parameters<typeof adapterFitProblem>[0];
  const problem = adapterFitProblem(lavapipe, cfg);
  assert(problem && /^vocabSize: 4194305 at dModel 16 needs a 256\.0 MiB buffer/.test(problem), String(problem));
  assert(problem.includes("vocabSize <= 2097152 at this dModel"), problem);
  const gpu = { ...lavapipe, limits: { maxStorageBufferBindingSize: 2 ** 31, maxBufferSize: 2 ** 31 } };
  assertEquals(adapterFitProblem(gpu as typeof lavapipe, cfg), null);
  // Activations too large: the micro-batch that fits is named.
  const wide = resolveRunConfig({ mixer: "based", dModel: 64, seqLen: 2048, batchSize: 512, microBatchSize: 512 });
  assert(/^microBatchSize: 512 needs .*--micro-batch-size \d+/.test(adapterFitProblem(lavapipe, wide)!));
});
