import { ByteLedger, paddedBytes } from "../../src/gpu/allocator.ts";
import { assertEquals, assertThrows } from "../_helpers/assert.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

Deno.test("paddedBytes rounds up to 16 bytes with a 16-byte minimum", () => {
  assertEquals([0, 1, 4, 5, 192].map(paddedBytes), [16, 16, 16, 32, 768]);
});

Deno.test("ByteLedger tracks current and peak per category and in total", () => {
  const l = new ByteLedger();
  l.add("params", 100);
  l.add("activations", 50);
  l.remove("activations", 50);
  l.add("grads", 30);
  assertEquals(l.current(), { params: 100, grads: 30, optimizer: 0, activations: 0, workspace: 0, total: 130 });
  assertEquals(l.peak(), { params: 100, grads: 30, optimizer: 0, activations: 50, workspace: 0, total: 150 });
  assertThrows(() => l.remove("grads", 31), /freeing 31 B of grads/);
});

Deno.test({
  name: "BufferAllocator: allocate and free real buffers, exact current/peak bytes",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const { device } = gpu;
    const { BufferAllocator } = await import("../../src/gpu/allocator.ts");
    const alloc = new BufferAllocator(device);
    const w = alloc.tensor("w", [64, 192], "params"); // 49152 B
    const g = alloc.tensor("g", [64, 192], "grads"); // 49152 B
    const a = alloc.tensor("a", [5, 17], "activations"); // 85 floats -> 340 B -> 352 B
    const u = alloc.uniform("u", 20); // 32 B workspace
    assertEquals(a.bytes, 352);
    assertEquals(alloc.current(), {
      params: 49152,
      grads: 49152,
      optimizer: 0,
      activations: 352,
      workspace: 32,
      total: 98688,
    });
    alloc.free(a);
    alloc.free(g);
    const m = alloc.tensor("m", [10], "optimizer"); // 48 B
    assertEquals(alloc.current().total, 49152 + 32 + 48);
    assertEquals(alloc.peak(), {
      params: 49152,
      grads: 49152,
      optimizer: 48,
      activations: 352,
      workspace: 32,
      total: 98688,
    });
    assertThrows(() => alloc.free(a), /not live/);
    alloc.free(u);
    alloc.free(m);
    alloc.free(w);
    assertEquals(alloc.current().total, 0);
    assertEquals(alloc.liveCount(), 0);
    assertThrows(() => alloc.tensor("bad", [2, -1], "params"), /bad shape/);
  },
});
