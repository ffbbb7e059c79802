/** Local assert module (JSR's @std/assert is unreachable here): thin wrappers over node:assert/strict. */
import nodeAssert from "node:assert/strict";

export function assert(cond: unknown, message?: string): asserts cond {
  nodeAssert.ok(cond, message);
}

export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

export function assertNotEquals<T>(actual: T, expected: T, message?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, message);
}

export function assertThrows(fn: () => unknown, match?: RegExp, message?: string): void {
  nodeAssert.throws(fn, match ?? Error, message);
}

export async function assertRejects(fn: () => Promise<unknown>, match?: RegExp, message?: string): Promise<void> {
  await nodeAssert.rejects(fn, match ?? Error, message);
}

export function assertAlmostEquals(actual: number, expected: number, tolerance = 1e-7, message?: string): void {
  if (!(Math.abs(actual - expected) <= tolerance)) {
    nodeAssert.fail(message ?? `expected ${actual} to be within ${tolerance} of ${expected}`);
  }
}
