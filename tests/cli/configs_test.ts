import { loadRunConfigFile, resolveRunConfig } from "../../src/train/config.ts";
import { assertEquals } from "../_helpers/assert.ts";

Deno.test("configs/train/*.json are valid run configs", async () => {
  const dir = new URL("../../configs/train/", import.meta.url);
  let n = 0;
  for (const entry of Deno.readDirSync(dir)) {
    if (!entry.name.endsWith(".json")) continue;
    const cfg = resolveRunConfig(await loadRunConfigFile(new URL(entry.name, dir).pathname));
    assertEquals(cfg.batchSize % cfg.microBatchSize, 0);
    n++;
  }
  assertEquals(n >= 2, true);
});
