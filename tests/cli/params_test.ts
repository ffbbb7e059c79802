import { capture } from "../_helpers/console.ts";
import { main } from "../../main.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";

function run(args: string[]) {
  return capture(() => main(args));
}

Deno.test("mqar params: breakdown total and JSON for rebased d=64 L=256 (Table 4: 578,752)", async () => {
  const r = await run(["params", "--mixer", "rebased", "--d-model", "64", "--seq-len", "256", "--json"]);
  assertEquals(r.code, 0);
  const b = JSON.parse(r.out);
  assertEquals(b.total, 578752);
  assertEquals(b.rows.reduce((s: number, row: { params: number }) => s + row.params, 0), 578752);
});

Deno.test("mqar params --table4 reproduces every cell", async () => {
  const r = await run(["params", "--table4", "--json"]);
  assertEquals(r.code, 0);
  const rows = JSON.parse(r.out) as { matches: boolean }[];
  assertEquals(rows.length, 28);
  assert(rows.every((x) => x.matches));
});

Deno.test("mqar params --table gives the spec's per-L numbers", async () => {
  const r = await run(["params", "--table", "--json"]);
  const rows = JSON.parse(r.out) as { arch: string; d: number; params: Record<string, number> }[];
  const based64 = rows.find((x) => x.arch === "based" && x.d === 64)!;
  assertEquals(based64.params, { 128: 569792, 256: 577984, 512: 594368, 1024: 627136, 2048: 692672 });
  const attn512 = rows.find((x) => x.arch === "attention" && x.d === 512)!;
  assertEquals(attn512.params["2048"], 7349248);
});

Deno.test("mqar params: bad input is one line naming the flag, exit 2", async () => {
  for (
    const [args, pattern] of [
      [["params", "--mixer", "nope", "--d-model", "64", "--seq-len", "64"], /--mixer: got "nope"/],
      [["params", "--mixer", "based", "--d-model", "x", "--seq-len", "64"], /--d-model: got "x"/],
      [["params", "--mixer", "based", "--seq-len", "64"], /--d-model is required/],
      [["params", "--bogus"], /Unknown option '--bogus'/],
    ] as const
  ) {
    const r = await run([...args]);
    assertEquals(r.code, 2, r.err);
    assert(pattern.test(r.err), r.err);
    assertEquals(r.err.trimEnd().split("\n").length, 1);
  }
});
