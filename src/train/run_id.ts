/** Stable run ids: the same RunConfig always hashes to the same id, whatever its key order (resume, merge, dedupe). */
import { sha256Hex } from "../io/sha256.ts";
import type { RunConfig } from "./result.ts";

/**
 * JSON with object keys sorted at every level, no whitespace. `undefined` members are dropped like JSON.stringify does;
 * non-finite numbers are rejected because JSON would silently turn them into null and merge distinct configs.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`canonicalJson: non-finite number ${value}`);
    // -0 and 0 are the same config value; JSON.stringify already prints both as "0".
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : canonicalJson(v))).join(",")}]`;
  if (typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  throw new Error(`canonicalJson: cannot encode a ${typeof value}`);
}

export const RUN_ID_LENGTH = 16;

/** First 16 hex digits (64 bits) of SHA-256 over the canonical JSON of the config. */
export function computeRunId(config: RunConfig): string {
  return sha256Hex(canonicalJson(config)).slice(0, RUN_ID_LENGTH);
}
