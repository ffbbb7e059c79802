/**
 * Flag values without the flag parser (no node: imports): the user-error class, numeric flags, and run-config flags to a
 * RunConfig input. Shared by the CLI and the browser page of `mqar serve`, so both give the same messages.
 */
import { parseRunConfigInput, type RunConfigInput } from "../train/config.ts";
import { runFlagFields } from "../train/run_fields.ts";

/** Whether this process is the deno CLI running a script (not a `deno compile` binary, whose executable is itself). */
export function runningUnderDenoCli(): boolean {
  return /^deno(\.exe)?$/.test(Deno.execPath().split(/[\\/]/).pop() ?? "");
}

/** A mistake by the user (bad flag, bad config value): printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

const DECIMAL_INTEGER = /^[+-]?\d+$/;
const DECIMAL_NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * Parses a numeric flag value, naming the flag and the allowed range in the error. Integers must be plain decimal
 * digits (no 0x10, 1.6e1 or 16.0); other numbers decimal, with an optional exponent (3e-3).
 */
export function numberFlag(
  flag: string,
  value: string | undefined,
  opts: { integer?: boolean; min?: number; max?: number; exclusiveMin?: boolean } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  const kind = opts.integer ? "an integer (decimal digits)" : "a number";
  const range = [
    opts.min !== undefined ? `${opts.exclusiveMin ? ">" : ">="} ${opts.min}` : "",
    opts.max !== undefined ? `<= ${opts.max}` : "",
  ].filter(Boolean).join(" and ");
  const bad = !(opts.integer ? DECIMAL_INTEGER : DECIMAL_NUMBER).test(value) || !Number.isFinite(n) ||
    (opts.integer && !Number.isSafeInteger(n)) ||
    (opts.min !== undefined && (opts.exclusiveMin ? n <= opts.min : n < opts.min)) ||
    (opts.max !== undefined && n > opts.max);
  if (bad) throw new UsageError(`--${flag}: got "${value}", expected ${kind}${range ? ` ${range}` : ""}`);
  return n;
}

/** The run-config flags' values (strings, booleans for switches) as a validated partial RunConfig. */
export function runConfigInputFromFlags(values: Record<string, string | boolean | undefined>): RunConfigInput {
  const fromFlags: Record<string, unknown> = {};
  for (const { flag, field, spec } of runFlagFields()) {
    const value = values[flag];
    if (value === undefined) continue;
    if (spec.type === "boolean" || spec.type === "mixer" || spec.type === "choice") fromFlags[field] = value;
    else {
      fromFlags[field] = numberFlag(flag, value as string, {
        integer: spec.type === "int",
        min: spec.min,
        max: spec.max,
        exclusiveMin: spec.exclusiveMin,
      });
    }
  }
  return parseRunConfigInput(fromFlags, "flags");
}
