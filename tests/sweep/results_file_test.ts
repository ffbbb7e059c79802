import { assert, assertEquals, assertRejects, assertThrows } from "../_helpers/assert.ts";
import {
  appendResult,
  isResultsDirectory,
  notASingleRecord,
  parseResultsText,
  readResults,
  readResultsAt,
  RESULTS_FILE_NAME,
  resultsFilesAt,
  ResultsInputError,
  ResultsLockedError,
  resultsTargetFile,
  ResultsWriter,
  writeResultsFile,
} from "../../src/sweep/results_file.ts";
import { fakeConfig, fakeResult } from "../_helpers/results.ts";

const r1 = fakeResult(fakeConfig({ seed: 1 }), 0.1);
const r2 = fakeResult(fakeConfig({ seed: 2 }), 0.2);
const r3 = fakeResult(fakeConfig({ seed: 3 }), 0.3);
const line = (r: unknown) => `${JSON.stringify(r)}\n`;

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mqar-results-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("results file: append then read round-trips, one line per record", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sub/results.jsonl`;
    for (const r of [r1, r2, r3]) assertEquals(await appendResult(path, r), null);
    const text = await Deno.readTextFile(path);
    assertEquals(text, line(r1) + line(r2) + line(r3));
    const read = await readResults(path);
    assertEquals(read.results, [r1, r2, r3]);
    assertEquals(read.warnings, []);
  });
});

Deno.test("results file: only a torn tail is skipped; any complete line that is not a record is an error", () => {
  const good = line(r1) + line(r2);
  const torn = JSON.stringify(r3).slice(0, 100);
  const read = parseResultsText(good + torn, "f.jsonl");
  assertEquals(read.results, [r1, r2]);
  assertEquals(read.tornTailAt, new TextEncoder().encode(good).length);
  assertEquals(read.warnings.length, 1);
  assert(read.warnings[0].startsWith("f.jsonl:3: ignored a torn last line"), read.warnings[0]);
  // Blank lines are harmless anywhere.
  const blank = parseResultsText(`\n${line(r1)}\n\n${line(r2)}`, "f");
  assertEquals([blank.results, blank.warnings, blank.tornTailAt], [[r1, r2], [], null]);

  // A complete line (newline included) cannot be a torn write: at the end as in the middle, it is refused.
  assertThrows(() => parseResultsText(good + "{}\n\n", "f"), /f:3: line 3 is not a result record/);
  assertThrows(() => parseResultsText(good + "precious notes\n", "f"), /f:3: .*not JSON.*left as it is/);
  assertThrows(() => parseResultsText(line(r1) + torn + "\n" + line(r2), "f.jsonl"), /f\.jsonl:2: line 2/);
  assertThrows(
    () => parseResultsText(line(r1) + line({ ...r2, bestAccuracy: "high" }) + line(r3), "g.jsonl"),
    /g\.jsonl:2: .*bestAccuracy/,
  );
  assertThrows(() => parseResultsText(line(r1) + line({ ...r2, schema: 2 }), "h"), /h:2: .*schema 2; this version/);
  // Text without a newline and without any record is not a results file (notes, a one-line config).
  assertThrows(() => parseResultsText("precious notes", "n.txt"), /n\.txt: does not look like a results file/);
  assertThrows(
    () => parseResultsText(JSON.stringify({ mixers: ["based"], dModels: [64] }), "c.json"),
    /c\.json: does not look like a results file .*sweep config/,
  );
  // A fragment of one of our records alone is a torn first write.
  assertEquals(parseResultsText('{"sch', "t").tornTailAt, 0);
  const err = (() => {
    try {
      parseResultsText("garbage\n" + line(r1), "x");
    } catch (e) {
      return e;
    }
  })();
  assert(err instanceof ResultsInputError, String(err));
  assert(/InputError/.test(err.name)); // main.ts prints it as one line
});

Deno.test("results file: a pretty-printed record (train --out) is read as one record, never appended to", async () => {
  const pretty = JSON.stringify(r1, null, 2) + "\n";
  const read = parseResultsText(pretty, "run.json");
  assertEquals([read.results, read.singleRecord], [[r1], true]);
  assertThrows(
    () => parseResultsText(JSON.stringify({ schema: "mqar-bench/1", cases: [] }, null, 2), "bench.json"),
    /bench\.json: a bench report .*not a results file/,
  );
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/run.json`, pretty);
    await assertRejects(() => appendResult(`${dir}/run.json`, r2), /mqar merge --out/);
    assertEquals(await Deno.readTextFile(`${dir}/run.json`), pretty);
    assertEquals(await notASingleRecord(`${dir}/run.json`), null);
    await Deno.writeTextFile(`${dir}/two.jsonl`, line(r1) + line(r2));
    assertEquals(await notASingleRecord(`${dir}/two.jsonl`), "is a results file with 2 records (a sweep's output)");
    await Deno.writeTextFile(`${dir}/notes.txt`, "notes\n");
    assert((await notASingleRecord(`${dir}/notes.txt`))?.startsWith("is not a result record"));
  });
});

Deno.test("results file: append after a torn tail truncates the fragment instead of gluing onto it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/r.jsonl`;
    const fragment = JSON.stringify(r2).slice(0, 57);
    await Deno.writeTextFile(path, line(r1) + fragment);
    const repaired = await appendResult(path, r3);
    assert(repaired !== null && repaired.includes("truncated a torn last line"), String(repaired));
    assertEquals(await Deno.readTextFile(path), line(r1) + line(r3));
    const read = await readResults(path);
    assertEquals([read.results, read.warnings], [[r1, r3], []]);
  });
});

Deno.test("results file: append after a valid last line that lost its newline starts with one", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/r.jsonl`;
    await Deno.writeTextFile(path, line(r1) + JSON.stringify(r2));
    assertEquals(await appendResult(path, r3), null);
    assertEquals(await Deno.readTextFile(path), line(r1) + line(r2) + line(r3));
  });
});

Deno.test("results file: nothing but a torn tail is ever removed; everything else is refused and kept", async () => {
  await withTempDir(async (dir) => {
    const refused = async (name: string, content: string, pattern: RegExp) => {
      const path = `${dir}/${name}`;
      await Deno.writeTextFile(path, content);
      const err = await appendResult(path, r2).then(() => null, (e) => e as Error);
      assert(err instanceof ResultsInputError, `${name}: ${err}`);
      assert(pattern.test(err.message), err.message);
      assertEquals(await Deno.readTextFile(path), content, `${name} must be unchanged`);
    };
    await refused("notes.txt", "precious notes\n", /notes\.txt:1: line 1 is not a result record/);
    await refused("notes2.txt", "precious notes", /does not look like a results file/);
    await refused("config.json", '{"mixers": ["based"], "dModels": [64]}', /does not look like a results file/);
    await refused("other-schema.jsonl", line(r1) + line({ ...r2, schema: 7 }), /:2: .*schema 7/);
    await refused("complete-bad-last.jsonl", line(r1) + '{"schema":1}\n', /:2: line 2 is not a result record/);

    // Repaired: a lone fragment of a record, trailing spaces after the last newline.
    const b = `${dir}/b.jsonl`;
    await Deno.writeTextFile(b, '{"sch');
    assert((await appendResult(b, r2)) !== null);
    assertEquals(await Deno.readTextFile(b), line(r2));
    const c = `${dir}/c.jsonl`;
    await Deno.writeTextFile(c, line(r1) + "   ");
    await appendResult(c, r2);
    assertEquals(await Deno.readTextFile(c), line(r1) + line(r2));
  });
});

Deno.test("results file: one writer at a time (a second sweep on the same file fails at once)", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/r.jsonl`;
    const first = await ResultsWriter.open(path);
    try {
      await first.append(r1);
      const locked = await ResultsWriter.open(path).then(() => null, (e) => e);
      assert(locked instanceof ResultsLockedError && /another mqar process/.test(locked.message), String(locked));
      await assertRejects(() => writeResultsFile(path, [r2]), /another mqar process/);
    } finally {
      await first.close();
    }
    const second = await ResultsWriter.open(path);
    await second.append(r2);
    await second.close();
    assertEquals((await readResults(path)).results, [r1, r2]);
    // A writer that created the file and wrote nothing leaves nothing behind.
    const unused = await ResultsWriter.open(`${dir}/unused.jsonl`);
    await unused.close();
    assertEquals(await Deno.stat(`${dir}/unused.jsonl`).catch(() => null), null);
  });
});

Deno.test("results file: tail repair works for records longer than the read-back chunk", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/big.jsonl`;
    const big = fakeResult(fakeConfig({ seed: 9 }), 0.9, { stopReason: "x".repeat(200_000) });
    await Deno.writeTextFile(path, line(r1) + line(big) + JSON.stringify(big).slice(0, 150_000));
    await appendResult(path, r2);
    assertEquals((await readResults(path)).results, [r1, big, r2]);
    // A long valid last line without its newline is kept.
    await Deno.writeTextFile(path, line(r1) + JSON.stringify(big));
    await appendResult(path, r2);
    assertEquals((await readResults(path)).results, [r1, big, r2]);
  });
});

Deno.test("results paths: files, directories and shard file names", async () => {
  await withTempDir(async (dir) => {
    assertEquals(await isResultsDirectory(`${dir}/new.jsonl`), false);
    assertEquals(await isResultsDirectory(`${dir}/newdir`), true);
    assertEquals(await resultsTargetFile(`${dir}/out`), `${dir}/out/${RESULTS_FILE_NAME}`);
    assertEquals(await resultsTargetFile(`${dir}/out`, { index: 2, count: 4 }), `${dir}/out/results-2-of-4.jsonl`);
    assertEquals(await resultsTargetFile(`${dir}/out`, { index: 0, count: 1 }), `${dir}/out/results.jsonl`);
    assertEquals(await resultsTargetFile(`${dir}/x/y.jsonl`, { index: 1, count: 2 }), `${dir}/x/y.jsonl`);
    // An existing file is a file whatever its name.
    await Deno.writeTextFile(`${dir}/plain`, "");
    assertEquals(await isResultsDirectory(`${dir}/plain`), false);

    await appendResult(`${dir}/out/results-1-of-2.jsonl`, r2);
    await appendResult(`${dir}/out/results-0-of-2.jsonl`, r1);
    await Deno.writeTextFile(`${dir}/out/notes.txt`, "not results");
    assertEquals(await resultsFilesAt(`${dir}/out`), [
      `${dir}/out/results-0-of-2.jsonl`,
      `${dir}/out/results-1-of-2.jsonl`,
    ]);
    assertEquals(await resultsFilesAt(`${dir}/missing`), []);
    const all = await readResultsAt([`${dir}/out`]);
    assertEquals(all.results.map((r) => r.result), [r1, r2]);
    assertEquals(all.results[1].source, `${dir}/out/results-1-of-2.jsonl`);

    await assertRejects(() => readResultsAt([`${dir}/missing`]), /no such results file or directory/);
    await Deno.mkdir(`${dir}/empty`);
    await assertRejects(() => readResultsAt([`${dir}/empty`]), /holds no \*\.jsonl/);
    assertEquals((await readResultsAt([`${dir}/missing`], { allowMissing: true })).results, []);
  });
});

Deno.test("results file: writeResultsFile replaces the file atomically", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/merged.jsonl`;
    await Deno.writeTextFile(path, "old\n");
    await writeResultsFile(path, [r1, r2]);
    assertEquals(await Deno.readTextFile(path), line(r1) + line(r2));
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["merged.jsonl"]); // no temp file left
  });
});
