/// <reference lib="dom" />
/**
 * The page of `mqar serve` (bundled for the browser by src/cli/serve.ts): trains MQAR in the browser's WebGPU with the
 * CLI's own modules — the same WGSL kernels (sent by the server), model graph, trainer and validation — draws live
 * curves, and exports the runs as the result records `mqar train` writes (`mqar report --results FILE` reads them).
 *
 * `window.mqar` is the page's programmatic face (the browser test drives it): `ready` (the adapter, or an error),
 * `validate(settings)`, `run(settings)` and `records`.
 */
import { acquireGpu, type Gpu } from "../gpu/device.ts";
import { registerKernelSources } from "../gpu/wgsl.ts";
import { trainRun } from "../train/trainer.ts";
import { resolveRunConfig } from "../train/config.ts";
import type { RunConfig, RunResult } from "../train/result.ts";
import { runConfigInputFromFlags, UsageError } from "../cli/_flag_values.ts";
import { adapterFitProblem } from "../cli/_adapter_fit.ts";
import { ARCHITECTURES } from "../mixers/registry.ts";
import { PALETTE, type Panel, renderFigure, type Series } from "../report/svg.ts";
import { PAGE_FIELDS, type PageSettings } from "./fields.ts";

/** The run configs (one per seed) of the page's settings, validated as `mqar train` validates its flags. */
export function configsFromSettings(settings: PageSettings): RunConfig[] {
  const { seeds = "", ...flags } = settings;
  const list = seeds.split(",").map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new UsageError(`--seeds: got "${seeds}", expected a comma-separated list of seeds`);
  return list.map((seed) => resolveRunConfig(runConfigInputFromFlags({ ...flags, seed })));
}

interface Live {
  seed: number;
  loss: { x: number; y: number }[];
  accuracy: { x: number; y: number }[];
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function settingsFromForm(): PageSettings {
  const out: PageSettings = {};
  for (const f of PAGE_FIELDS) {
    const value = ($(`f-${f.flag}`) as HTMLInputElement).value.trim();
    if (value !== "") out[f.flag] = value;
  }
  return out;
}

function drawCharts(lives: readonly Live[]) {
  const series = (pick: (l: Live) => { x: number; y: number }[]): Series[] =>
    lives.map((l, i) => ({ name: `seed ${l.seed}`, color: PALETTE[i % PALETTE.length], points: pick(l) }));
  $("charts").innerHTML = renderFigure({
    title: "Training in this browser",
    columns: 2,
    panelWidth: 360,
    panelHeight: 240,
    panels: ([
      {
        title: "test accuracy",
        x: { label: "training step" },
        y: { label: "accuracy", domain: [0, 1] },
        series: series((l) => l.accuracy),
      },
      { title: "training loss", x: { label: "training step" }, y: { label: "loss" }, series: series((l) => l.loss) },
    ] as Panel[]).filter((p) => p.series.some((s) => s.points.length > 0)),
  });
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

function main() {
  const status = $("status"), error = $("error");
  const records: RunResult[] = [];
  let gpu: Gpu | null = null;

  const mixer = $("f-mixer") as HTMLSelectElement;
  for (const a of ARCHITECTURES.filter((a) => a.trainable)) {
    const o = document.createElement("option");
    o.value = a.name;
    o.textContent = `${a.name} — ${a.summary}`;
    mixer.append(o);
  }
  mixer.value = PAGE_FIELDS.find((f) => f.flag === "mixer")!.initial;

  const validate = (settings: PageSettings): string | null => {
    try {
      const configs = configsFromSettings(settings);
      if (gpu) {
        for (const c of configs) {
          const problem = adapterFitProblem(gpu, c);
          if (problem) return problem;
        }
      }
      return null;
    } catch (e) {
      if (e instanceof Error && /UsageError|RunConfigError|ConfigError/.test(e.name)) return e.message;
      throw e;
    }
  };

  const run = async (settings: PageSettings): Promise<RunResult[]> => {
    if (!gpu) throw new Error("no WebGPU adapter");
    const problem = validate(settings);
    if (problem) throw new UsageError(problem);
    const configs = configsFromSettings(settings);
    const lives: Live[] = configs.map((c) => ({ seed: c.seed, loss: [], accuracy: [] }));
    const done: RunResult[] = [];
    for (const [i, cfg] of configs.entries()) {
      const live = lives[i];
      const stepsPerEpoch = Math.floor(cfg.trainExamples / cfg.batchSize);
      const outcome = await trainRun(gpu, cfg, {
        reportEveryS: 0.5,
        onProgress: (p) => {
          if (p.loss !== null) live.loss.push({ x: p.step, y: p.loss });
          status.textContent =
            `seed ${cfg.seed} (${i + 1}/${configs.length}): epoch ${p.epoch + 1}/${p.epochs}, step ` +
            `${p.step}/${p.totalSteps}, ${Math.round(p.tokensPerS)} train tokens/s` +
            (p.lastAccuracy !== null ? `, last test accuracy ${p.lastAccuracy.toFixed(4)}` : "");
          drawCharts(lives);
        },
        onEpoch: (e) => {
          const step = Math.min((e.epoch + 1) * stepsPerEpoch, cfg.maxSteps ?? Infinity);
          live.accuracy.push({ x: step, y: e.accuracy });
          // The epoch's mean loss too, so short runs (fewer loss reads than epochs) still draw a loss curve.
          if (!live.loss.some((p) => p.x >= step)) live.loss.push({ x: step, y: e.trainLoss });
          drawCharts(lives);
        },
      });
      outcome.release();
      const r = outcome.result;
      done.push(r);
      records.push(r);
      $("runs").insertAdjacentHTML(
        "beforeend",
        `<tr><td>${r.config.mixer}</td><td>${r.config.seed}</td><td>${r.bestAccuracy.toFixed(4)}</td>` +
          `<td>${r.epochsRun}</td><td>${Math.round(r.trainTokensPerS)}</td><td>${mib(r.peakBytes.total)}</td></tr>`,
      );
      ($("export") as HTMLButtonElement).disabled = false;
    }
    status.textContent = `done: ${done.length} run(s); best test accuracy ` +
      done.map((r) => r.bestAccuracy.toFixed(4)).join(", ");
    return done;
  };

  const api = {
    ready: null as Promise<Gpu["info"]> | null,
    validate,
    run,
    records,
    /** The records as the JSON Lines file `mqar report --results` reads. */
    jsonl: () => records.map((r) => JSON.stringify(r)).join("\n") + (records.length ? "\n" : ""),
  };
  (globalThis as { mqar?: typeof api }).mqar = api;

  api.ready = (async () => {
    const kernels = await (await fetch("kernels.json")).json();
    registerKernelSources(kernels);
    const compat = new URLSearchParams(location.search).get("compat") !== null;
    gpu = await acquireGpu({ adapterTimeoutMs: 15000, featureLevel: compat ? "compatibility" : undefined });
    $("adapter").textContent = `${gpu.info.description} (${gpu.info.backend}${gpu.info.software ? ", software" : ""})`;
    ($("train") as HTMLButtonElement).disabled = false;
    return gpu.info;
  })();
  api.ready.catch((e) => {
    $("adapter").textContent = "no WebGPU adapter";
    error.textContent = (e as Error).message;
  });

  $("settings").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const settings = settingsFromForm();
    const problem = validate(settings);
    if (problem) {
      error.textContent = problem;
      return;
    }
    const button = $("train") as HTMLButtonElement;
    button.disabled = true;
    try {
      await run(settings);
    } catch (e) {
      error.textContent = (e as Error).message;
    } finally {
      button.disabled = false;
    }
  });
  $("export").addEventListener("click", () => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([api.jsonl()], { type: "application/x-ndjson" }));
    a.download = "mqar-browser-results.jsonl";
    a.click();
  });
}

main();
