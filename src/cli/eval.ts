/** `mqar eval`: accuracy of a saved checkpoint on an MQAR split. */
import { acquireGpu } from "../gpu/device.ts";
import { buildModelGraph } from "../model/graph.ts";
import { ParamStore } from "../model/parameters.ts";
import { modelConfigOf, parseRunConfigInput, resolveRunConfig, type RunConfigInput } from "../train/config.ts";
import { fromStateDict, readSafetensors } from "../train/safetensors.ts";
import { evalBatchSize, evaluate } from "../train/trainer.ts";
import { type Command, parseFlags, printJson, UsageError } from "./_common.ts";
import { RUN_FLAGS, runConfigFromFlags } from "./train.ts";

const USAGE = `Usage: mqar eval --checkpoint FILE [--split test|train] [flags] [--json]

Evaluates a checkpoint written by \`mqar train --save\` (or any safetensors file with the reference state_dict names).
The run config stored in the checkpoint is used; flags (as for train, e.g. --test-examples, --data-seed) override it.`;

export const evalCommand: Command = {
  name: "eval",
  summary: "evaluate a safetensors checkpoint on an MQAR split",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("eval", args, {
      ...RUN_FLAGS,
      checkpoint: { type: "string" },
      split: { type: "string" },
      json: { type: "boolean" },
    });
    if (!values.checkpoint) throw new UsageError("--checkpoint FILE is required");
    const split = values.split ?? "test";
    if (split !== "test" && split !== "train") throw new UsageError(`--split: got "${split}", expected test or train`);
    let contents;
    try {
      contents = await readSafetensors(values.checkpoint);
    } catch (e) {
      throw new UsageError(`--checkpoint ${values.checkpoint}: ${(e as Error).message}`);
    }
    const stored: RunConfigInput[] = [];
    if (contents.metadata.config) {
      let json: unknown;
      try {
        json = JSON.parse(contents.metadata.config);
      } catch (e) {
        throw new UsageError(
          `--checkpoint ${values.checkpoint}: __metadata__.config is not valid JSON (${(e as Error).message}); ` +
            `expected the run config that \`mqar train --save\` stores there`,
        );
      }
      stored.push(parseRunConfigInput(json, `--checkpoint ${values.checkpoint}: __metadata__.config`));
    }
    const cfg = resolveRunConfig(...stored, ...await runConfigFromFlags(values));
    const modelCfg = modelConfigOf(cfg);
    let weights;
    try {
      weights = fromStateDict(modelCfg, contents.tensors, contents.metadata);
    } catch (e) {
      throw new UsageError(
        `--checkpoint ${values.checkpoint} does not fit a ${cfg.mixer} model: ${(e as Error).message}`,
      );
    }
    const gpu = await acquireGpu();
    const release = gpu.allocator.scope();
    try {
      const store = new ParamStore(gpu, modelCfg, { optimizer: false });
      store.upload(weights);
      const n = split === "test" ? cfg.testExamples : cfg.trainExamples;
      const graph = buildModelGraph(gpu, modelCfg, store, {
        training: false,
        batch: evalBatchSize(n, cfg.microBatchSize),
        labelsPerExample: cfg.numKvPairs,
      });
      const t0 = performance.now();
      const r = await evaluate(graph, cfg, split);
      const seconds = (performance.now() - t0) / 1000;
      const record = {
        checkpoint: values.checkpoint,
        split,
        examples: n,
        accuracy: r.accuracy,
        loss: r.loss,
        seconds,
        inferenceTokensPerS: (n * cfg.seqLen) / seconds,
        config: cfg,
        adapter: gpu.info,
      };
      if (values.json) printJson(record);
      else {
        console.log(
          `${cfg.mixer} d=${cfg.dModel} L=${cfg.seqLen}: ${split} accuracy ${r.accuracy.toFixed(4)} loss ` +
            `${r.loss.toFixed(4)} over ${n} examples (${seconds.toFixed(1)} s)`,
        );
      }
      return 0;
    } finally {
      release();
    }
  },
};
