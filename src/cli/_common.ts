/** Shared CLI plumbing: user errors print one clear line (no stack), flag parsing with helpful messages. */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** A mistake by the user (bad flag, bad config value): printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(args: string[]): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** parseArgs with strict checking; unknown flags and missing values become UsageErrors naming the flag. */
export function parseFlags<O extends Options>(
  command: string,
  args: string[],
  options: O,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals });
  } catch (e) {
    // node's parseArgs explains some mistakes over two lines ("--lr -1"); a user error stays one line.
    const msg = (e as Error).message.replace(/\. To specify a positional argument.*$/s, "").replace(/\s*\n\s*/g, " ");
    const known = Object.keys(options).map((k) => `--${k}`).join(", ");
    throw new UsageError(`${msg} (known flags for ${command}: ${known})`);
  }
}

/** Parses a numeric flag value, naming the flag and the allowed range in the error. */
export function numberFlag(
  flag: string,
  value: string | undefined,
  opts: { integer?: boolean; min?: number; max?: number; exclusiveMin?: boolean } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  const kind = opts.integer ? "an integer" : "a number";
  const range = [
    opts.min !== undefined ? `${opts.exclusiveMin ? ">" : ">="} ${opts.min}` : "",
    opts.max !== undefined ? `<= ${opts.max}` : "",
  ].filter(Boolean).join(" and ");
  const bad = value.trim() === "" || !Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) ||
    (opts.min !== undefined && (opts.exclusiveMin ? n <= opts.min : n < opts.min)) ||
    (opts.max !== undefined && n > opts.max);
  if (bad) throw new UsageError(`--${flag}: got "${value}", expected ${kind}${range ? ` ${range}` : ""}`);
  return n;
}

/** Comma-separated list flag ("64,128") parsed with `parse`. */
export function listFlag<T>(flag: string, value: string | undefined, parse: (item: string) => T): T[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(",").map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new UsageError(`--${flag}: got "${value}", expected a comma-separated list`);
  return items.map(parse);
}

export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}
