import { loadKernelSource, preprocessWgsl } from "../../src/gpu/wgsl.ts";
import { assert, assertEquals, assertThrows } from "../_helpers/assert.ts";

Deno.test("preprocessWgsl: constants, #if/#else/#endif, negation, nesting, enables", () => {
  const src = ["#if A", "a;", "#if !B", "notb;", "#else", "b;", "#endif", "#else", "nota;", "#endif", "end;"].join(
    "\n",
  );
  const out = preprocessWgsl(src, { A: true, B: 0, W: 64, EPS: 1e-5, HALF: 0.5 }, ["f16"]);
  const lines = out.split("\n").filter((l) => l.trim());
  assertEquals(lines, [
    "enable f16;",
    "const A = true;",
    "const B = 0;",
    "const W = 64;",
    "const EPS = 0.00001;",
    "const HALF = 0.5;",
    "a;",
    "notb;",
    "end;",
  ]);
  const off = preprocessWgsl(src, {}).split("\n").filter((l) => l.trim());
  assertEquals(off, ["nota;", "end;"]);
});

Deno.test("preprocessWgsl: malformed directives are errors with line numbers", () => {
  assertThrows(() => preprocessWgsl("#if A\nx;"), /line 1 is never closed/);
  assertThrows(() => preprocessWgsl("#endif"), /#endif without #if at line 1/);
  assertThrows(() => preprocessWgsl("#else"), /#else without #if/);
  assertThrows(() => preprocessWgsl("#define X 1"), /unknown directive at line 1/);
  assertThrows(() => preprocessWgsl("x;", { N: NaN }), /finite/);
});

Deno.test("loadKernelSource reads kernels/*.wgsl and names a missing one", () => {
  assert(loadKernelSource("matmul").includes("main_blocked"));
  assertThrows(() => loadKernelSource("no_such_kernel"), /kernels\/no_such_kernel\.wgsl/);
});
