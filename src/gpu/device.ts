/** Adapter and device acquisition: full adapter limits, optional features proven by a one-dispatch self-test. */
import { BufferAllocator, type Tensor } from "./allocator.ts";
import { PipelineCache } from "./pipeline_cache.ts";

export const OPTIONAL_FEATURES = ["timestamp-query", "shader-f16", "subgroups"] as const;
export type OptionalFeature = typeof OPTIONAL_FEATURES[number];

export interface AdapterSummary {
  description: string;
  vendor: string;
  architecture: string;
  device: string;
  isFallbackAdapter: boolean;
  /** From DENO_WEBGPU_BACKEND when set; otherwise what the adapter most likely is. */
  backend: string;
  /** True for CPU rasterisers (llvmpipe, lavapipe, SwiftShader, WARP). */
  software: boolean;
}

/** Limits that matter for our kernels, copied into reports. */
export const REPORTED_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupsPerDimension",
] as const;

export interface Gpu {
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
  readonly info: AdapterSummary;
  /** Optional features that were requested and passed the self-test. */
  readonly features: ReadonlySet<OptionalFeature>;
  /** Whether WGSL must say `enable subgroups;` to use subgroup builtins on this device. */
  readonly subgroupsNeedEnable: boolean;
  readonly limits: Readonly<Record<string, number>>;
  readonly allocator: BufferAllocator;
  readonly pipelines: PipelineCache;
}

/** A user-facing failure (no adapter, bad backend): the CLI prints the message without a stack. */
export class GpuUnavailableError extends Error {
  override name = "GpuUnavailableError";
}

export const NO_ADAPTER_HELP = [
  "No WebGPU adapter is available.",
  "  - On Linux without a GPU, install a software adapter: `apt-get install -y mesa-vulkan-drivers` (lavapipe, then",
  "    set DENO_WEBGPU_BACKEND=vulkan) or the Mesa OpenGL/EGL drivers (`libegl1 libgl1-mesa-dri`, DENO_WEBGPU_BACKEND=gl).",
  "  - With a GPU, install its Vulkan driver (NVIDIA/AMD/Intel) or use Metal (macOS) / DX12 (Windows).",
  "  - DENO_WEBGPU_BACKEND picks the backend: vulkan, gl, metal or dx12.",
].join("\n");

function isSoftware(description: string, fallback: boolean): boolean {
  return fallback || /llvmpipe|lavapipe|swiftshader|warp|softpipe/i.test(description);
}

/** Deno's namespace, absent in a browser (the page of `mqar serve` runs this same module). */
const denoNs = (globalThis as { Deno?: typeof Deno }).Deno;

function guessBackend(description: string, adapter: GPUAdapter): string {
  if (!denoNs) return "browser";
  const env = Deno.env.get("DENO_WEBGPU_BACKEND");
  if (env) return env;
  if (Deno.build.os === "darwin") return "metal";
  // lavapipe (Vulkan) and llvmpipe (GL) report the same name; only the Vulkan one offers shader-f16.
  if (/llvmpipe/i.test(description)) return adapter.features.has("shader-f16") ? "vulkan" : "gl";
  return Deno.build.os === "windows" ? "dx12" : "vulkan";
}

function adapterLimits(adapter: GPUAdapter): Record<string, number> {
  const out: Record<string, number> = {};
  // GPUSupportedLimits exposes its fields as prototype getters, so walk the prototype for names.
  const proto = Object.getPrototypeOf(adapter.limits);
  for (const key of Object.getOwnPropertyNames(proto)) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[key];
    if (typeof v === "number") out[key] = v;
  }
  return out;
}

export interface AcquireOptions {
  powerPreference?: GPUPowerPreference;
  /** Skip the feature self-test (faster start-up, all optional features off). */
  skipFeatureTest?: boolean;
  /** Features never to use, e.g. to test the fallback kernels. */
  disable?: readonly OptionalFeature[];
  /** Browsers: "compatibility" reaches adapters that only offer WebGPU compatibility mode (e.g. through OpenGL ES). */
  featureLevel?: "core" | "compatibility";
  /** Give up on requestAdapter after this long (some browser setups never answer); default: wait. */
  adapterTimeoutMs?: number;
}

export async function acquireGpu(options: AcquireOptions = {}): Promise<Gpu> {
  // Mesa's Vulkan loader warns on every start without XDG_RUNTIME_DIR; a private temp dir silences it.
  if (denoNs && !Deno.env.get("XDG_RUNTIME_DIR")) {
    Deno.env.set("XDG_RUNTIME_DIR", Deno.makeTempDirSync({ prefix: "mqar-xdg-" }));
  }
  if (!("gpu" in navigator) || !navigator.gpu) throw new GpuUnavailableError(NO_ADAPTER_HELP);
  let adapter: GPUAdapter | null = null;
  try {
    const request = navigator.gpu.requestAdapter({
      powerPreference: options.powerPreference ?? "high-performance",
      ...(options.featureLevel ? { featureLevel: options.featureLevel } : {}),
    } as GPURequestAdapterOptions);
    let timer: ReturnType<typeof setTimeout> | undefined;
    adapter = options.adapterTimeoutMs === undefined ? await request : await Promise.race([
      request,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${options.adapterTimeoutMs} ms`)),
          options.adapterTimeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  } catch (e) {
    throw new GpuUnavailableError(`${NO_ADAPTER_HELP}\n  (requestAdapter failed: ${(e as Error).message})`);
  }
  if (!adapter) throw new GpuUnavailableError(NO_ADAPTER_HELP);
  const wanted = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f) && !options.disable?.includes(f));
  const limits = adapterLimits(adapter);
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredFeatures: wanted as GPUFeatureName[], requiredLimits: limits });
  } catch {
    // Some implementations reject a few exotic limit names; the compute limits are the ones we need.
    const core: Record<string, number> = {};
    for (const k of REPORTED_LIMITS) if (k in limits) core[k] = limits[k];
    device = await adapter.requestDevice({ requiredFeatures: wanted as GPUFeatureName[], requiredLimits: core });
  }
  // Without a handler, a shader or validation error only leaves buffers untouched: make it visible, once per message.
  const seen = new Set<string>();
  device.addEventListener("uncapturederror", (event) => {
    const message = (event as GPUUncapturedErrorEvent).error.message;
    if (!seen.has(message)) {
      seen.add(message);
      console.error(`WebGPU error: ${message}`);
    }
  });
  const ai = adapter.info;
  const description = ai.description || ai.device || [ai.vendor, ai.architecture].filter(Boolean).join(" ") ||
    "unknown adapter";
  const info: AdapterSummary = {
    description,
    vendor: ai.vendor,
    architecture: ai.architecture,
    device: ai.device,
    isFallbackAdapter: Boolean((ai as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter),
    backend: guessBackend(description, adapter),
    software: false,
  };
  info.software = isSoftware(description, info.isFallbackAdapter);
  const features = new Set<OptionalFeature>();
  let subgroupsNeedEnable = false;
  if (!options.skipFeatureTest) {
    if (wanted.includes("shader-f16") && await selfTestF16(device)) features.add("shader-f16");
    if (wanted.includes("timestamp-query") && await selfTestTimestamps(device)) features.add("timestamp-query");
    if (wanted.includes("subgroups")) {
      for (const needEnable of [false, true]) {
        if (await selfTestSubgroups(device, needEnable)) {
          features.add("subgroups");
          subgroupsNeedEnable = needEnable;
          break;
        }
      }
    }
  }
  const enables = features.has("shader-f16") ? ["f16"] : [];
  const deviceLimits: Record<string, number> = {};
  for (const k of Object.keys(limits)) {
    const v = (device.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === "number") deviceLimits[k] = v;
  }
  return {
    adapter,
    device,
    info,
    features,
    subgroupsNeedEnable,
    limits: deviceLimits,
    allocator: new BufferAllocator(
      device,
      Math.min(deviceLimits.maxBufferSize ?? Infinity, deviceLimits.maxStorageBufferBindingSize ?? Infinity),
    ),
    pipelines: new PipelineCache(device, enables),
  };
}

/** Runs `fn` in a validation error scope and throws the first GPU error, with `what` for context. */
export async function withGpuErrors<T>(device: GPUDevice, what: string, fn: () => T): Promise<T> {
  device.pushErrorScope("validation");
  device.pushErrorScope("out-of-memory");
  let result: T | undefined;
  let thrown: unknown;
  try {
    result = fn();
  } catch (e) {
    thrown = e;
  }
  const oom = await device.popErrorScope();
  const validation = await device.popErrorScope();
  if (thrown) throw thrown;
  const err = oom ?? validation;
  if (err) throw new Error(`${what}: ${err.message}`);
  return result as T;
}

async function tryRun(device: GPUDevice, code: string, words: number): Promise<Uint32Array | null> {
  device.pushErrorScope("validation");
  device.pushErrorScope("internal");
  let out: GPUBuffer | undefined;
  let staging: GPUBuffer | undefined;
  try {
    const module = device.createShaderModule({ code });
    const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
    out = device.createBuffer({ size: words * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    staging = device.createBuffer({ size: words * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const bind = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: out } }],
    });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(1);
    pass.end();
    enc.copyBufferToBuffer(out, 0, staging, 0, words * 4);
    device.queue.submit([enc.finish()]);
  } catch {
    await device.popErrorScope();
    await device.popErrorScope();
    return null;
  }
  const internal = await device.popErrorScope();
  const validation = await device.popErrorScope();
  if (internal || validation) return null;
  try {
    await staging!.mapAsync(GPUMapMode.READ);
    const result = new Uint32Array(staging!.getMappedRange().slice(0));
    staging!.unmap();
    return result;
  } catch {
    return null;
  } finally {
    out?.destroy();
    staging?.destroy();
  }
}

async function selfTestF16(device: GPUDevice): Promise<boolean> {
  const r = await tryRun(
    device,
    `enable f16;
@group(0) @binding(0) var<storage, read_write> o: array<u32>;
@compute @workgroup_size(1) fn main() { let h = f16(1.5) * f16(2.0); o[0] = u32(f32(h) * 10.0); }`,
    1,
  );
  return r !== null && r[0] === 30;
}

async function selfTestSubgroups(device: GPUDevice, needEnable: boolean): Promise<boolean> {
  const r = await tryRun(
    device,
    `${needEnable ? "enable subgroups;" : ""}
@group(0) @binding(0) var<storage, read_write> o: array<u32>;
@compute @workgroup_size(64) fn main(@builtin(local_invocation_index) i: u32, @builtin(subgroup_size) s: u32) {
  let total = subgroupAdd(1u);
  if (i == 0u) { o[0] = total; o[1] = s; }
}`,
    2,
  );
  return r !== null && r[0] === r[1] && r[1] >= 1;
}

async function selfTestTimestamps(device: GPUDevice): Promise<boolean> {
  device.pushErrorScope("validation");
  try {
    const qs = device.createQuerySet({ type: "timestamp", count: 2 });
    const resolve = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const staging = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass({
      timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
    });
    pass.end();
    enc.resolveQuerySet(qs, 0, 2, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, staging, 0, 16);
    device.queue.submit([enc.finish()]);
    if (await device.popErrorScope()) return false;
    await staging.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    qs.destroy();
    resolve.destroy();
    staging.destroy();
    return t[1] >= t[0];
  } catch {
    await device.popErrorScope().catch(() => null);
    return false;
  }
}

/** Copies a tensor back to the CPU (a readback: ~10 ms in Deno, never inside a training step). */
export async function readTensor(gpu: Gpu, t: Tensor | GPUBuffer, length?: number): Promise<Float32Array> {
  const buffer = "buffer" in t ? t.buffer : t;
  const n = length ?? ("buffer" in t ? t.length : buffer.size / 4);
  const bytes = Math.ceil((n * 4) / 4) * 4;
  const staging = gpu.device.createBuffer({
    size: Math.max(4, bytes),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = gpu.device.createCommandEncoder();
  enc.copyBufferToBuffer(buffer, 0, staging, 0, bytes);
  gpu.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(staging.getMappedRange().slice(0, n * 4));
  staging.unmap();
  staging.destroy();
  return out;
}

/** Same as readTensor, viewed as u32 / i32 words. */
export async function readTensorU32(gpu: Gpu, t: Tensor | GPUBuffer, length?: number): Promise<Uint32Array> {
  const f = await readTensor(gpu, t, length);
  return new Uint32Array(f.buffer, f.byteOffset, f.length);
}

/** Uploads host data into a tensor (queue.writeBuffer: ordered before the next submit, no readback). */
export function writeTensor(gpu: Gpu, t: Tensor, data: Float32Array | Uint32Array | Int32Array): void {
  if (data.length > t.length) throw new Error(`writeTensor ${t.label}: ${data.length} values into ${t.length}`);
  gpu.device.queue.writeBuffer(t.buffer, 0, data as Float32Array<ArrayBuffer>);
}
