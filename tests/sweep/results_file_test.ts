import { assert, assertEquals, assertRejects, assertThrows } from "../_helpers/assert.ts";
import {
  appendResult,
  isResultsDirectory,
  parseResultsText,
  readResults,
  readResultsAt,
  RESULTS_FILE_NAME,
  resultsFilesAt,
  ResultsInputError,
  resultsWriteFile,
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
    await resultsWriteFile(path);
    for (const r of [r1, r2, r3]) assertEquals(await appendResult(path, r), null);
    const text = await Deno.readTextFile(path);
    assertEquals(text, line(r1) + line(r2) + line(r3));
    const read = await readResults(path);
    assertEquals(read.results, [r1, r2, r3]);
    assertEquals(read.warnings, []);
  });
});

Deno.test("results file: a torn last line is ignored with a warning; a bad line in the middle is corruption", () => {
  const good = line(r1) + line(r2);
  const torn = JSON.stringify(r3).slice(0, 100);
  const read = parseResultsText(good + torn, "f.jsonl");
  assertEquals(read.results, [r1, r2]);
  assertEquals(read.warnings.length, 1);
  assert(read.warnings[0].startsWith("f.jsonl:3: ignored an incomplete or invalid last line"), read.warnings[0]);
  // A complete but invalid last line (newline included) is treated the same way.
  assertEquals(parseResultsText(good + "{}\n\n", "f").results, [r1, r2]);
  // Blank lines are harmless anywhere.
  assertEquals(parseResultsText(`\n${line(r1)}\n\n${line(r2)}`, "f"), { results: [r1, r2], warnings: [] });

  assertThrows(
    () => parseResultsText(line(r1) + torn + "\n" + line(r2), "f.jsonl"),
    /f\.jsonl:2: invalid line in the middle/,
  );
  assertThrows(
    () => parseResultsText(line(r1) + line({ ...r2, bestAccuracy: "high" }) + line(r3), "g.jsonl"),
    /g\.jsonl:2: .*bestAccuracy/,
  );
  assertThrows(() => parseResultsText(line({ ...r1, schema: 2 }) + line(r2), "h"), /h:1: .*schema/);
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

Deno.test("results file: append after a torn tail truncates the fragment instead of gluing onto it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/r.jsonl`;
    const fragment = JSON.stringify(r2).slice(0, 57);
    await Deno.writeTextFile(path, line(r1) + fragment);
    const repaired = await appendResult(path, r3);
    assert(repaired !== null && repaired.includes("truncated an invalid last line"), String(repaired));
    assertEquals(await Deno.readTextFile(path), line(r1) + line(r3));
    assertEquals(await readResults(path), { results: [r1, r3], warnings: [] });
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

Deno.test("results file: a complete but invalid last line, a lone fragment and trailing spaces are all repaired", async () => {
  await withTempDir(async (dir) => {
    const a = `${dir}/a.jsonl`;
    await Deno.writeTextFile(a, line(r1) + '{"schema":1}\n');
    assert((await appendResult(a, r2)) !== null);
    assertEquals(await Deno.readTextFile(a), line(r1) + line(r2));

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
    assertEquals(await resultsWriteFile(`${dir}/out`), `${dir}/out/${RESULTS_FILE_NAME}`);
    assertEquals(await resultsWriteFile(`${dir}/out`, { index: 2, count: 4 }), `${dir}/out/results-2-of-4.jsonl`);
    assertEquals(await resultsWriteFile(`${dir}/out`, { index: 0, count: 1 }), `${dir}/out/results.jsonl`);
    assertEquals(await resultsWriteFile(`${dir}/x/y.jsonl`, { index: 1, count: 2 }), `${dir}/x/y.jsonl`);
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
