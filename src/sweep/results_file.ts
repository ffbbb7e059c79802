/**
 * Results files: JSON Lines, one RunResult per line, appended as each run finishes.
 *
 * Crash safety: a record is written as one `write` of the whole line (newline included) on a file opened for append,
 * then fsynced, so a crash leaves at most one torn line, and only at the end: bytes after the last newline. That torn
 * tail is the only thing readers skip (with a warning) and the only thing a writer removes (ResultsWriter). Every
 * complete line must be a record: anything else, anywhere, is refused with its line number and the file is left as it
 * is, so a results path that names someone's notes or config never loses a byte. One writer per file, enforced by an
 * exclusive lock; parallel shards write to separate files.
 *
 * Paths: an existing file, or a path ending in ".jsonl", is a results file. Any other path is a results directory
 * (created on demand) holding `results.jsonl` for an unsharded sweep and `results-<i>-of-<n>.jsonl` for shard i/n.
 * Reading a directory reads every `*.jsonl` file in it (not recursively), in name order.
 */
import { z } from "zod";
import { dirname, join } from "node:path";
import { writeTextAtomic } from "../io/atomic.ts";
import { RESULT_SCHEMA_VERSION, type RunResult } from "../train/result.ts";
import { runConfigRecordSchema } from "../train/run_fields.ts";
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

const runConfigSchema = runConfigRecordSchema();

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

/** What a JSON value that is not a current result record is, for messages (and which command reads it). */
function describeJson(value: unknown): string | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const v = value as Record<string, unknown>;
  if (v.schema === "mqar-bench/1") return "a bench report (bench.json, read by `mqar gate --current`)";
  if (typeof v.schema === "number" && v.schema !== RESULT_SCHEMA_VERSION && "runId" in v) {
    return `a result record of schema ${v.schema}; this version of mqar reads schema ${RESULT_SCHEMA_VERSION}`;
  }
  if ("mixers" in v && "dModels" in v) return "a sweep config (read by `mqar sweep --config`)";
  return null;
}

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
    const known = describeJson(value);
    if (known) return { ok: false, reason: known };
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
  /** Byte offset where a torn tail starts (bytes after the last newline that are not a record), else null. */
  tornTailAt: number | null;
  /** The text ends with a valid record that lacks its newline (an append must start with one). */
  needsNewline: boolean;
  /** The file is one pretty-printed record (as `mqar train --out` writes), not JSON Lines: readable, not appendable. */
  singleRecord: boolean;
}

/** What every record line starts with (JSON.stringify keeps the key order of RunResult). */
const RECORD_PREFIX = '{"schema":';

/** A fragment that a write of one of our records, cut short, can leave: a prefix of a record line. */
function looksTorn(tail: string): boolean {
  const t = tail.trimStart();
  return t === "" || t.startsWith(RECORD_PREFIX) || RECORD_PREFIX.startsWith(t);
}

const utf8Length = (text: string) => new TextEncoder().encode(text).length;

/**
 * Parses the text of a results file (JSON Lines, one record per line); `source` names it in messages.
 * Only a torn tail is tolerated: bytes after the last newline that do not parse (a write cut short can leave nothing
 * else), reported as a warning. Any complete line that is not a record, at the end or in the middle, is an error with
 * its line number; so is a file that holds no record but is not empty, unless it is one pretty-printed record.
 */
export function parseResultsText(text: string, source: string): ReadResults {
  const lines = text.split("\n");
  const tail = lines.pop()!; // after the last newline ("" when the text ends with one)
  const results: RunResult[] = [];
  const read: ReadResults = {
    results,
    warnings: [],
    tornTailAt: null,
    needsNewline: false,
    singleRecord: false,
  };
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === "") continue;
    const r = parseResultLine(lines[i]);
    if (r.ok) {
      results.push(r.result);
      continue;
    }
    if (results.length === 0) {
      const whole = parseWholeDocument(text);
      if (whole.record) return { ...read, results: [whole.record], singleRecord: true };
      if (whole.what) {
        throw new ResultsInputError(
          `${source}: ${whole.what}, not a results file (JSON Lines: one result record per line)`,
        );
      }
    }
    throw new ResultsInputError(
      `${source}:${i + 1}: line ${i + 1} is not a result record (${r.reason}); a results file holds only result ` +
        `records, one per line, so it was left as it is: fix or remove that line, or give another path`,
    );
  }
  if (tail.trim() !== "") {
    const r = parseResultLine(tail);
    if (r.ok) {
      results.push(r.result);
      read.needsNewline = true;
    } else if (results.length > 0 || looksTorn(tail)) {
      read.tornTailAt = utf8Length(text.slice(0, text.length - tail.length));
      read.warnings.push(
        `${source}:${lines.length + 1}: ignored a torn last line (${utf8Length(tail)} bytes after the last newline: ` +
          `${r.reason}); probably a run interrupted while writing — it will be rerun on resume`,
      );
    } else {
      throw new ResultsInputError(
        `${source}: does not look like a results file (no result record in it, and its text is not one: ` +
          `${r.reason}); it was left as it is: give a new path, an existing results file or a directory`,
      );
    }
  } else if (tail !== "") {
    read.tornTailAt = utf8Length(text.slice(0, text.length - tail.length)); // whitespace without a newline: nothing to keep
  }
  return read;
}

/** The whole text as one JSON document: a record (a `train --out` file), or a description of what it is. */
function parseWholeDocument(text: string): { record?: RunResult; what?: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return {};
  }
  const parsed = runResultSchema.safeParse(value);
  if (parsed.success) return { record: parsed.data as unknown as RunResult };
  return { what: describeJson(value) ?? "one JSON document" };
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

/** Another process holds the results file: one line, exit code 2; nothing was trained. */
export class ResultsLockedError extends ResultsInputError {
  override name = "ResultsLockedInputError";
}

/**
 * The one appender of a results file. Opening it validates the whole file (anything but a torn tail is refused with
 * its line number and left untouched), takes an exclusive lock for as long as it is open (a second sweep on the same
 * file fails at once instead of training every run twice), and cuts a torn tail away. Each record is then one write of
 * the whole line on the O_APPEND descriptor, fsynced, so a crash leaves at most one torn line, and only at the end.
 * A file this writer created and never wrote to is removed again on close.
 */
export class ResultsWriter {
  #written = 0;
  #needsNewline: boolean;
  private constructor(
    readonly path: string,
    readonly file: Deno.FsFile,
    readonly existing: ReadResults,
    readonly repaired: string | null,
    readonly created: boolean,
  ) {
    this.#needsNewline = existing.needsNewline;
  }

  static async open(path: string): Promise<ResultsWriter> {
    await Deno.mkdir(dirname(path), { recursive: true });
    for (let attempt = 0;; attempt++) {
      const before = await statOrNull(path);
      if (before && !before.isFile) {
        throw new ResultsInputError(`${path}: not a regular file, so it cannot hold results`);
      }
      const file = await Deno.open(path, { read: true, append: true, create: true });
      try {
        if (!(await file.tryLock(true))) {
          throw new ResultsLockedError(
            `${path}: another mqar process (a sweep or a demo) is writing this results file; wait for it to finish ` +
              `or give this one another --out (parallel shards use one file each: --shard i/n on a directory)`,
          );
        }
        // The path may have been replaced (merge --out renames over it) between open and lock: retry on the new file.
        const [opened, now] = [await file.stat(), await statOrNull(path)];
        if (!now || now.ino !== opened.ino || now.dev !== opened.dev) {
          if (attempt < 5) {
            file.close();
            continue;
          }
          throw new ResultsInputError(`${path}: the file keeps being replaced by another process`);
        }
        const text = await readAll(file, opened.size);
        const existing = parseResultsText(text, path);
        if (existing.singleRecord) {
          throw new ResultsInputError(
            `${path}: one result record as \`mqar train --out\` writes it (pretty-printed JSON), not a results file ` +
              `(JSON Lines); it was left as it is: \`mqar merge --out runs.jsonl ${path}\` makes a results file of it`,
          );
        }
        let repaired: string | null = null;
        if (existing.tornTailAt !== null) {
          await file.truncate(existing.tornTailAt);
          await file.sync();
          repaired = `${path}: truncated a torn last line (${opened.size - existing.tornTailAt} bytes at offset ` +
            `${existing.tornTailAt})`;
        }
        return new ResultsWriter(path, file, existing, repaired, before === null);
      } catch (e) {
        file.close();
        throw e;
      }
    }
  }

  /** Records written through this writer. */
  get written(): number {
    return this.#written;
  }

  async append(result: RunResult): Promise<void> {
    // JSON.stringify without indentation never emits a raw newline, so the record is exactly one line.
    const bytes = new TextEncoder().encode(`${this.#needsNewline ? "\n" : ""}${JSON.stringify(result)}\n`);
    let written = await this.file.write(bytes);
    // Regular files take the whole buffer in one call; the loop only guards against a short write.
    while (written < bytes.length) written += await this.file.write(bytes.subarray(written));
    await this.file.sync();
    this.#needsNewline = false;
    this.#written++;
  }

  /** Releases the lock; removes the file when this writer created it and nothing was ever written to it. */
  async close(): Promise<void> {
    try {
      if (this.created && this.#written === 0 && (await this.file.stat()).size === 0) {
        await Deno.remove(this.path).catch(() => {});
      }
    } finally {
      this.file.close();
    }
  }
}

async function readAll(file: Deno.FsFile, size: number): Promise<string> {
  const buf = new Uint8Array(size);
  await file.seek(0, Deno.SeekMode.Start);
  let got = 0;
  while (got < size) {
    const n = await file.read(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  return new TextDecoder().decode(buf.subarray(0, got));
}

/** Appends one record through a ResultsWriter opened for just this write; returns the tail repair message, if any. */
export async function appendResult(path: string, result: RunResult): Promise<string | null> {
  const writer = await ResultsWriter.open(path);
  try {
    await writer.append(result);
    return writer.repaired;
  } finally {
    await writer.close();
  }
}

/**
 * Writes a whole results file atomically (temp file + rename), one record per line. An existing file is locked
 * meanwhile, so a sweep appending to it makes this fail instead of losing its next records to the replaced file.
 */
export async function writeResultsFile(path: string, results: readonly RunResult[]): Promise<void> {
  const text = results.map((r) => `${JSON.stringify(r)}\n`).join("");
  const info = await statOrNull(path);
  if (!info) return await writeTextAtomic(path, text);
  const old = await Deno.open(path, { read: true });
  try {
    if (!(await old.tryLock(true))) {
      throw new ResultsLockedError(`${path}: another mqar process (a sweep or a demo) is appending to it; wait for it`);
    }
    await writeTextAtomic(path, text);
  } finally {
    old.close();
  }
}

/**
 * Null when `path` holds nothing a user would miss if a new result record replaced it: it is empty, or it is one result
 * record (an earlier `mqar train --out`). Otherwise what it is (a results file with records, notes, a config...).
 */
export async function notASingleRecord(path: string): Promise<string | null> {
  const info = await Deno.stat(path);
  if (info.size === 0) return null;
  if (info.size > 64 * 2 ** 20) return "is not a result record";
  const text = await Deno.readTextFile(path);
  const whole = parseWholeDocument(text);
  if (whole.record) return null;
  try {
    const read = parseResultsText(text, path);
    if (read.results.length === 1 && read.tornTailAt === null) return null;
    return `is a results file with ${read.results.length} records (a sweep's output)`;
  } catch {
    return `is not a result record${whole.what ? ` (${whole.what})` : ""}`;
  }
}
