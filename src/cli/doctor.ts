/** `mqar doctor`: what adapter we got, which features passed the self-test, and a tiny matmul's speed. */
import { acquireGpu, type Gpu, readTensor, REPORTED_LIMITS, writeTensor } from "../gpu/device.ts";
import { matmul, selectMatmulVariant } from "../ops/matmul.ts";
import { submit } from "../ops/_dispatch.ts";
import { type Command, parseFlags, printJson } from "./_common.ts";

export interface DoctorReport {
  adapter: Gpu["info"];
  limits: Record<string, number>;
  features: string[];
  subgroupsNeedEnable: boolean;
  matmul: { variant: string; size: number; gflops: number; maxAbsError: number };
  deno: string;
}

/** Times `reps` submits of an n³ matmul after a warm-up; one readback at the end bounds the timing. */
export async function measureMatmul(gpu: Gpu, n = 256, reps = 10): Promise<DoctorReport["matmul"]> {
  const alloc = gpu.allocator;
  const a = alloc.tensor("doctor.a", [n, n], "workspace");
  const b = alloc.tensor("doctor.b", [n, n], "workspace");
  const c = alloc.tensor("doctor.c", [n, n], "workspace");
  const av = new Float32Array(n * n).map((_, i) => ((i * 7) % 13) / 13 - 0.5);
  const bv = new Float32Array(n * n).map((_, i) => ((i * 5) % 11) / 11 - 0.5);
  writeTensor(gpu, a, av);
  writeTensor(gpu, b, bv);
  const variant = selectMatmulVariant(gpu);
  const d = matmul(gpu, "doctor.matmul", { a, b, out: c, M: n, N: n, K: n, variant });
  submit(gpu, [d]);
  await gpu.device.queue.onSubmittedWorkDone();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) submit(gpu, [d]);
  await gpu.device.queue.onSubmittedWorkDone();
  const seconds = (performance.now() - t0) / 1000;
  const out = await readTensor(gpu, c);
  // Spot-check a few entries against a CPU dot product, so a broken adapter cannot report a fast wrong result.
  let maxAbsError = 0;
  for (const [i, j] of [[0, 0], [n - 1, n - 1], [n >> 1, 3 % n]]) {
    let s = 0;
    for (let k = 0; k < n; k++) s += av[i * n + k] * bv[k * n + j];
    maxAbsError = Math.max(maxAbsError, Math.abs(s - out[i * n + j]));
  }
  for (const t of [a, b, c]) alloc.free(t);
  return { variant, size: n, gflops: (2 * n ** 3 * reps) / seconds / 1e9, maxAbsError };
}

export async function doctorReport(): Promise<DoctorReport> {
  const gpu = await acquireGpu();
  const limits: Record<string, number> = {};
  for (const k of REPORTED_LIMITS) if (k in gpu.limits) limits[k] = gpu.limits[k];
  return {
    adapter: gpu.info,
    limits,
    features: [...gpu.features],
    subgroupsNeedEnable: gpu.subgroupsNeedEnable,
    matmul: await measureMatmul(gpu, gpu.info.software ? 256 : 1024, gpu.info.software ? 5 : 50),
    deno: Deno.version.deno,
  };
}

export const doctorCommand: Command = {
  name: "doctor",
  summary: "show the WebGPU adapter, backend, limits, working features and matmul GFLOP/s",
  usage: "Usage: mqar doctor [--json]\n\nExit 1 with guidance when no adapter is usable.",
  async run(args) {
    const { values } = parseFlags("doctor", args, { json: { type: "boolean" } });
    const r = await doctorReport();
    if (values.json) {
      printJson(r);
      return 0;
    }
    const a = r.adapter;
    console.log(`adapter     ${a.description} (vendor ${a.vendor}, device ${a.device})`);
    console.log(`backend     ${a.backend}${a.software ? " (software adapter)" : ""}`);
    console.log(`fallback    ${a.isFallbackAdapter}`);
    console.log(`features    ${r.features.length ? r.features.join(", ") : "none"} (passed self-test)`);
    for (const [k, v] of Object.entries(r.limits)) console.log(`limit       ${k} = ${v}`);
    console.log(
      `matmul      ${r.matmul.size}³ fp32 ${r.matmul.variant}: ${r.matmul.gflops.toFixed(2)} GFLOP/s ` +
        `(max abs error ${r.matmul.maxAbsError.toExponential(1)})`,
    );
    console.log(`deno        ${r.deno}`);
    return 0;
  },
};
