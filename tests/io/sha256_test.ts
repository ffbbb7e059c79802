import { createHash } from "node:crypto";
import { assertEquals } from "../_helpers/assert.ts";
import { sha256Hex } from "../../src/io/sha256.ts";

Deno.test("sha256Hex equals node:crypto's SHA-256 across block boundaries and multi-byte text", () => {
  const texts = ["", "abc", "é→∑ 🙂", ...[55, 56, 63, 64, 65, 119, 120, 1000].map((n) => "x".repeat(n))];
  for (const t of texts) assertEquals(sha256Hex(t), createHash("sha256").update(t).digest("hex"), `length ${t.length}`);
  // FIPS 180-4's own example.
  assertEquals(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
});
