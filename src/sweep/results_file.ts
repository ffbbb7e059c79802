/**
 * Results files: JSON Lines, one RunResult per line, appended as each run finishes.
 *
 * Crash safety: a record is written as one `write` of the whole line (newline included) on a file opened for append,
 * then fsynced, so a crash leaves at most one torn line, and only at the end. Readers ignore an invalid last line
 * (returning a warning) but treat an invalid line anywhere else as corruption, reported with its line number.
 * Before appending, a torn tail is truncated away (and a valid last line lacking its newline gets one), so a new
 * record never glues onto a fragment. One writer per file: parallel shards write to separate files.
 *
 * Paths: an existing file, or a path ending in ".jsonl", is a results file. Any other path is a results directory
 * (created on demand) holding `results.jsonl` for an unsharded sweep and `results-<i>-of-<n>.jsonl` for shard i/n.
 * Reading a directory reads every `*.jsonl` file in it (not recursively), in name order.
 */
import { z } from "zod";
import { dirname, join } from "node:path";
import { RESULT_SCHEMA_VERSION, type RunResult } from "../train/result.ts";
import type { Shard } from "./shard.ts";

/** Unusable results input (corrupt line, unreadable file): printed as one line by the CLI, exit code 2. */
export class ResultsInputError extends Error {
  override name = "ResultsInputError";
}

export const RESULTS_FILE_NAME = "results.jsonl";

export function shardResultsFileName(shard: Shard): string {
  return `results-${shard.index}-of-${shard.count}.jsonl`;
}

// Metrics may be null: JSON writes NaN/Infinity as null, and a diverged run can have NaN losses.
const metric = z.number().nullable();

const runConfigSchema = z.looseObject({
  mixer: z.string(),
  dModel: z.number(),
  seqLen: z.number(),
  numKvPairs: z.number(),
  vocabSize: z.number(),
  powerA: z.number(),
  randomNonQueries: z.boolean(),
  dataSeed: z.number(),
  trainExamples: z.number(),
  testExamples: z.number(),
  batchSize: z.number(),
  microBatchSize: z.number(),
  epochs: z.number(),
  lr: z.number(),
  weightDecay: z.number(),
  seed: z.number(),
  earlyStopAccuracy: z.number(),
  maxSteps: z.number().nullable(),
});

/** Loose on purpose: fields added by later writers pass through; the fields reports rely on are required. */
const runResultSchema = z.looseObject({
  schema: z.literal(RESULT_SCHEMA_VERSION),
  runId: z.string().min(1),
  status: z.enum(["ok", "nan", "error"]),
  stopReason: z.string().nullable(),
  config: runConfigSchema,
  params: z.number(),
  accuracyPerEpoch: z.array(metric),
  trainLossPerEpoch: z.array(metric),
  bestAccuracy: metric,
  bestEpoch: z.number(),
  epochsRun: z.number(),
  steps: z.number(),
  wallTimeS: metric,
  trainTokensPerS: metric,
  peakBytes: z.looseObject({ total: z.number() }),
  adapter: z.looseObject({}),
  env: z.looseObject({}),
  startedAt: z.string(),
  finishedAt: z.string(),
});

/** Parses one line; returns the record or a short reason it is not one. */
export function parseResultLine(line: string): { ok: true; result: RunResult } | { ok: false; reason: string } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    return { ok: false, reason: `not JSON (${(e as Error).message})` };
  }
  const parsed = runResultSchema.safeParse(value);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    const where = first.path.length ? first.path.join(".") : "record";
    return { ok: false, reason: `not a result record: ${where}: ${first.message}` };
  }
  return { ok: true, result: parsed.data as unknown as RunResult };
}

export interface ReadResults {
  results: RunResult[];
  /** Recoverable problems (torn last line), for the caller to show. */
  warnings: string[];
}

/** Parses the text of a results file; `source` names it in messages. */
export function parseResultsText(text: string, source: string): ReadResults {
  const lines = text.split("\n");
  let last = lines.length - 1;
  while (last >= 0 && lines[last].trim() === "") last--;
  const results: RunResult[] = [];
  const warnings: string[] = [];
  for (let i = 0; i <= last; i++) {
    if (lines[i].trim() === "") continue;
    const r = parseResultLine(lines[i]);
    if (r.ok) {
      results.push(r.result);
    } else if (i === last) {
      warnings.push(
        `${source}:${i + 1}: ignored an incomplete or invalid last line (${r.reason}); ` +
          `probably a run interrupted while writing — it will be rerun on resume`,
      );
    } else {
      throw new ResultsInputError(
        `${source}:${i + 1}: invalid line in the middle of a results file (${r.reason}); ` +
          `the file is corrupt: fix or delete that line (records after it are intact)`,
      );
    }
  }
  return { results, warnings };
}

/** Reads one results file (see parseResultsText). A missing file is a ResultsInputError. */
export async function readResults(path: string): Promise<ReadResults> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ResultsInputError(`cannot read results file ${path}: ${(e as Error).message}`);
  }
  return parseResultsText(text, path);
}

async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Whether `path` names a results directory under the convention above (it need not exist yet). */
export async function isResultsDirectory(path: string): Promise<boolean> {
  const info = await statOrNull(path);
  if (info) return info.isDirectory;
  return !path.endsWith(".jsonl");
}

/** The file a sweep (or one shard of it) appends to under the path convention; creates nothing. */
export async function resultsTargetFile(path: string, shard?: Shard): Promise<string> {
  if (!(await isResultsDirectory(path))) return path;
  return join(path, shard && shard.count > 1 ? shardResultsFileName(shard) : RESULTS_FILE_NAME);
}

/** resultsTargetFile, after creating the directory it lives in. */
export async function resultsWriteFile(path: string, shard?: Shard): Promise<string> {
  const file = await resultsTargetFile(path, shard);
  await Deno.mkdir(dirname(file), { recursive: true });
  return file;
}

/** The results files at `path`: the file itself, or every *.jsonl in a directory; [] when nothing exists there yet. */
export async function resultsFilesAt(path: string): Promise<string[]> {
  const info = await statOrNull(path);
  if (!info) return [];
  if (!info.isDirectory) return [path];
  const files: string[] = [];
  for await (const entry of Deno.readDir(path)) {
    if (entry.isFile && entry.name.endsWith(".jsonl")) files.push(join(path, entry.name));
  }
  return files.sort();
}

/** A record with the file it came from (merge and report name sources in their messages). */
export interface SourcedResult {
  result: RunResult;
  source: string;
}

/** Reads every results file at every path (files or directories). Missing paths are errors unless `allowMissing`. */
export async function readResultsAt(
  paths: readonly string[],
  opts: { allowMissing?: boolean } = {},
): Promise<{ results: SourcedResult[]; warnings: string[]; files: string[] }> {
  const results: SourcedResult[] = [];
  const warnings: string[] = [];
  const files: string[] = [];
  for (const path of paths) {
    const found = await resultsFilesAt(path);
    if (found.length === 0 && !opts.allowMissing) {
      const exists = (await statOrNull(path)) !== null;
      throw new ResultsInputError(
        exists ? `${path}: directory holds no *.jsonl results files` : `${path}: no such results file or directory`,
      );
    }
    for (const file of found) {
      const r = await readResults(file);
      files.push(file);
      warnings.push(...r.warnings);
      for (const result of r.results) results.push({ result, source: file });
    }
  }
  return { results, warnings, files };
}

const TAIL_CHUNK = 64 * 1024;

/** Byte offset where the last line of the file starts (just after the previous newline), reading backwards. */
async function lastLineStart(file: Deno.FsFile, contentEnd: number): Promise<number> {
  let end = contentEnd;
  const buf = new Uint8Array(TAIL_CHUNK);
  while (end > 0) {
    const start = Math.max(0, end - TAIL_CHUNK);
    const want = end - start;
    await file.seek(start, Deno.SeekMode.Start);
    let got = 0;
    while (got < want) {
      const n = await file.read(buf.subarray(got, want));
      if (n === null) break;
      got += n;
    }
    for (let i = got - 1; i >= 0; i--) if (buf[i] === 0x0a) return start + i + 1;
    end = start;
  }
  return 0;
}

async function readRange(file: Deno.FsFile, start: number, end: number): Promise<string> {
  const buf = new Uint8Array(end - start);
  await file.seek(start, Deno.SeekMode.Start);
  let got = 0;
  while (got < buf.length) {
    const n = await file.read(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  return new TextDecoder().decode(buf.subarray(0, got));
}

/**
 * Makes the file safe to append to: truncates an invalid last line, and reports whether a valid last line lacks its
 * newline (the caller then starts its write with one). Returns a message describing any repair.
 */
async function repairTail(path: string): Promise<{ needsNewline: boolean; repaired: string | null }> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true, write: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { needsNewline: false, repaired: null };
    throw e;
  }
  try {
    const size = (await file.stat()).size;
    if (size === 0) return { needsNewline: false, repaired: null };
    const lastByte = await readRange(file, size - 1, size);
    const endsWithNewline = lastByte === "\n";
    const contentEnd = endsWithNewline ? size - 1 : size;
    const start = await lastLineStart(file, contentEnd);
    const line = await readRange(file, start, contentEnd);
    if (line.trim() === "") {
      if (endsWithNewline) return { needsNewline: false, repaired: null };
      await file.truncate(start);
      await file.sync();
      return { needsNewline: false, repaired: `${path}: removed ${size - start} bytes of trailing whitespace` };
    }
    const parsed = parseResultLine(line);
    if (parsed.ok) return { needsNewline: !endsWithNewline, repaired: null };
    await file.truncate(start);
    await file.sync();
    return {
      needsNewline: false,
      repaired: `${path}: truncated an invalid last line (${size - start} bytes at offset ${start}: ${parsed.reason})`,
    };
  } finally {
    file.close();
  }
}

/**
 * Appends one record as a single write of the whole line on an O_APPEND file, then fsyncs. Returns a message when the
 * file's tail had to be repaired first (see repairTail), else null.
 */
export async function appendResult(path: string, result: RunResult): Promise<string | null> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const { needsNewline, repaired } = await repairTail(path);
  // JSON.stringify without indentation never emits a raw newline, so the record is exactly one line.
  const bytes = new TextEncoder().encode(`${needsNewline ? "\n" : ""}${JSON.stringify(result)}\n`);
  const file = await Deno.open(path, { append: true, create: true });
  try {
    let written = await file.write(bytes);
    // Regular files take the whole buffer in one call; the loop only guards against a short write.
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.sync();
  } finally {
    file.close();
  }
  return repaired;
}

/** Writes a whole results file atomically (temp file + rename), one record per line. */
export async function writeResultsFile(path: string, results: readonly RunResult[]): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${Deno.pid}`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    const bytes = new TextEncoder().encode(results.map((r) => `${JSON.stringify(r)}\n`).join(""));
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
}
