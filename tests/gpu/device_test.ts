import { readTensor, writeTensor } from "../../src/gpu/device.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";
import { measureMatmul } from "../../src/cli/doctor.ts";

Deno.test({
  name: "acquireGpu: adapter summary, device limits copied from the adapter, features self-tested",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    assert(gpu.info.description.length > 0);
    assert(["vulkan", "gl", "metal", "dx12"].includes(gpu.info.backend) || Deno.env.has("DENO_WEBGPU_BACKEND"));
    // requiredLimits must have been copied, not left at the spec minimums.
    assertEquals(gpu.device.limits.maxStorageBufferBindingSize, gpu.adapter.limits.maxStorageBufferBindingSize);
    assertEquals(gpu.device.limits.maxComputeWorkgroupStorageSize, gpu.adapter.limits.maxComputeWorkgroupStorageSize);
    for (const f of gpu.features) assert(gpu.device.features.has(f), `${f} passed the self-test but is not enabled`);
  },
});

Deno.test({
  name: "writeTensor/readTensor round trip and the pipeline cache reuses compiled pipelines",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const t = gpu.allocator.tensor("rt", [7], "workspace");
    writeTensor(gpu, t, Float32Array.from([1, 2, 3, 4, 5, 6, 7.5]));
    assertEquals(Array.from(await readTensor(gpu, t)), [1, 2, 3, 4, 5, 6, 7.5]);
    gpu.allocator.free(t);
    const p1 = gpu.pipelines.get("matmul", "main_blocked", { TM: 4, TN: 4, BK: 4 });
    const p2 = gpu.pipelines.get("matmul", "main_blocked", { BK: 4, TN: 4, TM: 4 });
    assert(p1 === p2, "same defines in another order must hit the cache");
  },
});

Deno.test({
  name: "doctor's matmul measurement is correct and positive",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const r = await measureMatmul(gpu, 33, 1);
    assert(r.gflops > 0);
    assert(r.maxAbsError < 1e-4, `max abs error ${r.maxAbsError}`);
  },
});
