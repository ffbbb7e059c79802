/** Shared CLI plumbing: user errors print one clear line (no stack), flag parsing with helpful messages. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { numberFlag, UsageError } from "./_flag_values.ts";

export { numberFlag, UsageError };

export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(args: string[]): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * parseArgs with strict checking; unknown flags and missing values become UsageErrors naming the flag. A flag given
 * twice is an error (parseArgs would silently keep the last) unless it is declared `multiple`. A value that looks like
 * a negative number (`--lr -0.001`) is taken as the flag's value, so the flag's own range check explains it.
 */
export function parseFlags<O extends Options>(
  command: string,
  args: string[],
  options: O,
  allowPositionals = false,
  /** String flags whose value may itself start with a dash (`--sbatch-options "--time=1:00:00"`). */
  dashValues: readonly string[] = [],
) {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = /^--([^=]+)$/.exec(args[i])?.[1];
    const takesDash = (value: string) => /^-(\d|\.\d)/.test(value) || (name !== undefined && dashValues.includes(name));
    if (name && options[name]?.type === "string" && i + 1 < args.length && takesDash(args[i + 1])) {
      joined.push(`${args[i]}=${args[i + 1]}`);
      i++;
    } else joined.push(args[i]);
  }
  let parsed;
  try {
    parsed = parseArgs({ args: joined, options, strict: true, allowPositionals, tokens: true });
  } catch (e) {
    // node's parseArgs explains some mistakes over two lines; a user error stays one line.
    const msg = (e as Error).message.replace(/\. To specify a positional argument.*$/s, "").replace(/\s*\n\s*/g, " ");
    const known = Object.keys(options).map((k) => `--${k}`).join(", ");
    throw new UsageError(`${msg} (known flags for ${command}: ${known})`);
  }
  const seen = new Map<string, string | undefined>();
  for (const t of parsed.tokens) {
    if (t.kind !== "option" || options[t.name]?.multiple) continue;
    if (seen.has(t.name)) {
      const values = [seen.get(t.name), t.value].filter((v) => v !== undefined).map((v) => `"${v}"`);
      throw new UsageError(
        `--${t.name} is given more than once${values.length ? ` (${values.join(" and ")})` : ""}; give it once`,
      );
    }
    seen.set(t.name, t.value);
  }
  return { values: parsed.values, positionals: parsed.positionals };
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
