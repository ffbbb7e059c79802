/**
 * `mqar serve` in a real browser: Debian's Chromium, headless, driven by playwright-core (no browser download). On a
 * machine without a GPU, `--enable-unsafe-webgpu` gives a SwiftShader adapter, slow but correct, so the shapes stay tiny.
 * The page must train above chance, report the CLI's validation messages, and compute the CLI's loss for the same
 * config (same seed, so the same initial weights and batches) to float tolerance.
 */
import { chromium } from "playwright-core";
import { join } from "node:path";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { startPageServer } from "../../src/cli/serve.ts";
import { trainRun } from "../../src/train/trainer.ts";
import { resolveRunConfig } from "../../src/train/config.ts";
import { runConfigInputFromFlags } from "../../src/cli/_flag_values.ts";
import type { RunResult } from "../../src/train/result.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

const CHROMIUM = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";
const unavailable = (() => {
  try {
    Deno.statSync(CHROMIUM);
    return null;
  } catch {
    return `browser test skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM=path); ` +
      ".ci/run installs it where apt is available";
  }
})();
if (unavailable) console.warn(unavailable);

/** A one-step config (train examples = batch), so the first epoch's training loss is exactly the first step's. */
const ONE_STEP = {
  mixer: "based",
  "d-model": "16",
  "seq-len": "16",
  "kv-pairs": "2",
  "vocab-size": "64",
  "train-examples": "32",
  "test-examples": "32",
  "batch-size": "32",
  epochs: "1",
  lr: "0.01",
};
/** Learns within three epochs on the CLI (test accuracy 0.50, 0.72, 0.99 on lavapipe, seed 1). */
const LEARNS = {
  mixer: "based",
  "d-model": "16",
  "seq-len": "8",
  "kv-pairs": "1",
  "vocab-size": "16",
  "train-examples": "1024",
  "test-examples": "256",
  "batch-size": "64",
  epochs: "3",
  lr: "0.01",
  seeds: "1",
};

async function cliStderr(args: string[]): Promise<string> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../../main.ts", import.meta.url).pathname, ...args],
    stdout: "null",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(r.stderr).trim();
}

Deno.test({
  name: "mqar serve: Chromium trains above chance, gives the CLI's messages and the CLI's loss on the same config",
  ...gpuTest,
  ignore: unavailable !== null,
  async fn() {
    const server = await startPageServer({ port: 0 });
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu"],
      timeout: 60_000,
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const pageErrors: string[] = [];
      page.on("pageerror", (e) => pageErrors.push(String(e)));
      await page.goto(server.url);
      const adapter = await page.evaluate(() =>
        (globalThis as unknown as { mqar: { ready: Promise<unknown> } }).mqar.ready
      );
      assert(adapter, "the page found no adapter");

      // Bad settings: the page shows what the CLI prints (after its "mqar train: " prefix).
      const validate = (settings: Record<string, string>) =>
        page.evaluate(
          (s) => (globalThis as unknown as { mqar: { validate(s: unknown): string | null } }).mqar.validate(s),
          settings,
        );
      for (const [flag, value] of [["d-model", "1.6e1"], ["kv-pairs", "5"], ["lr", "-1"]]) {
        const cli = await cliStderr([
          "train",
          ...Object.entries(ONE_STEP).flatMap(([k, v]) => [`--${k}`, k === flag ? value : v]),
        ]);
        const shown = await validate({ ...ONE_STEP, [flag]: value, seeds: "1" });
        assert(shown !== null, `${flag}=${value} passed the page's validation`);
        assertEquals(`mqar train: ${shown}`, cli, `${flag}=${value}`);
      }
      assertEquals(await validate({ ...ONE_STEP, seeds: "1" }), null);

      // One step: the browser's loss is the CLI's (lavapipe here) to float tolerance.
      const [browserRun] = await page.evaluate(
        (s) => (globalThis as unknown as { mqar: { run(s: unknown): Promise<RunResult[]> } }).mqar.run(s),
        { ...ONE_STEP, seeds: "3" },
      ) as RunResult[];
      const gpu = await testGpu();
      const outcome = await trainRun(gpu, resolveRunConfig(runConfigInputFromFlags({ ...ONE_STEP, seed: "3" })));
      outcome.release();
      const [browserLoss, cliLoss] = [browserRun.trainLossPerEpoch[0], outcome.result.trainLossPerEpoch[0]];
      assert(Math.abs(browserLoss - cliLoss) <= 1e-4 * Math.abs(cliLoss), `browser ${browserLoss} vs CLI ${cliLoss}`);
      assertEquals(browserRun.runId, outcome.result.runId, "the same config has the same run id in both");

      // Training rises above chance (values are drawn from 8 tokens here: chance is 1/8 at best).
      const t0 = performance.now();
      const [learned] = await page.evaluate(
        (s) => (globalThis as unknown as { mqar: { run(s: unknown): Promise<RunResult[]> } }).mqar.run(s),
        LEARNS,
      ) as RunResult[];
      const trainS = (performance.now() - t0) / 1000;
      assert(
        learned.bestAccuracy > 0.3,
        `best test accuracy ${learned.bestAccuracy} (per epoch ${learned.accuracyPerEpoch})`,
      );
      assertEquals(learned.status, "ok");
      // The exported records are what `mqar report` reads.
      const jsonl = await page.evaluate(() => (globalThis as unknown as { mqar: { jsonl(): string } }).mqar.jsonl());
      const out = await Deno.makeTempDir({ prefix: "mqar-browser-" });
      await Deno.writeTextFile(join(out, "browser.jsonl"), jsonl);
      const report = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("../../main.ts", import.meta.url).pathname,
          "report",
          "--results",
          join(out, "browser.jsonl"),
          "--out",
          join(out, "report"),
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert(report.success, new TextDecoder().decode(report.stderr));
      const shot = Deno.env.get("MQAR_BROWSER_SCREENSHOT") ?? join(out, "page.png");
      await page.screenshot({ path: shot, fullPage: true });
      assertEquals(pageErrors, []);
      console.log(
        `browser: ${JSON.stringify(adapter)}; learning run ${trainS.toFixed(1)} s, accuracy per epoch ` +
          `${learned.accuracyPerEpoch.map((a) => a.toFixed(3)).join(", ")}, ${Math.round(learned.trainTokensPerS)} ` +
          `train tokens/s; one-step loss ${browserLoss} (CLI ${cliLoss}); screenshot ${shot}`,
      );
    } finally {
      await browser.close();
      await server.close();
    }
  },
});
