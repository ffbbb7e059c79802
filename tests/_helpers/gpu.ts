/** One GPU device per test process, shared by all tests in it. */
import { acquireGpu, type Gpu } from "../../src/gpu/device.ts";

let cached: Promise<Gpu> | undefined;

export function testGpu(): Promise<Gpu> {
  cached ??= acquireGpu();
  return cached;
}

/** Deno's leak sanitizers trip over WebGPU's internal resources; GPU tests opt out. */
export const gpuTest = { sanitizeResources: false, sanitizeOps: false } as const;
