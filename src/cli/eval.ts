/** `mqar eval`: accuracy of a saved checkpoint on an MQAR split. */
import { acquireGpu, type Gpu } from "../gpu/device.ts";
import { batchOf, type Example, labelCount, parseExamplesText } from "../data/exchange.ts";
import type { ModelConfig } from "../model/config.ts";
import type { RunConfig } from "../train/result.ts";
import { buildModelGraph } from "../model/graph.ts";
import { ParamStore } from "../model/parameters.ts";
import { modelConfigOf, parseRunConfigInput, resolveRunConfig, type RunConfigInput } from "../train/config.ts";
import { fromStateDict, readSafetensors } from "../train/safetensors.ts";
import { evalBatchSize, evaluate } from "../train/trainer.ts";
import { type Command, parseFlags, printJson, UsageError } from "./_common.ts";
import { RUN_FLAGS, runConfigFromFlags } from "./train.ts";

const USAGE = `Usage: mqar eval --checkpoint FILE [--split test|train | --data FILE.jsonl] [flags] [--json]

Evaluates a checkpoint written by \`mqar train --save\` (or any safetensors file with the reference state_dict names).
The run config stored in the checkpoint is used; flags (as for train, e.g. --test-examples, --data-seed) override it.

  --data FILE.jsonl   evaluate these examples instead of an MQAR split: one {"input_ids": [L ints], "labels": [L ints,
                      -100 where unlabelled]} per line (\`mqar data\` writes them; so can any other framework).
                      Loss = mean cross-entropy over the labelled positions, accuracy = fraction predicted exactly.`;

export const evalCommand: Command = {
  name: "eval",
  summary: "evaluate a safetensors checkpoint on an MQAR split",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("eval", args, {
      ...RUN_FLAGS,
      checkpoint: { type: "string" },
      split: { type: "string" },
      data: { type: "string" },
      json: { type: "boolean" },
    });
    if (values.data !== undefined && values.split !== undefined) {
      throw new UsageError("--data and --split choose the examples two ways: give one of them");
    }
    if (!values.checkpoint) throw new UsageError("--checkpoint FILE is required");
    const split = values.split ?? "test";
    if (split !== "test" && split !== "train") throw new UsageError(`--split: got "${split}", expected test or train`);
    const { cfg, modelCfg, weights } = await loadCheckpoint(values.checkpoint, values);
    const examples = values.data === undefined ? null : await readExamples(values.data as string, modelCfg);
    const gpu = await acquireGpu();
    const release = gpu.allocator.scope();
    try {
      const store = new ParamStore(gpu, modelCfg, { optimizer: false });
      store.upload(weights);
      if (examples) {
        const t0 = performance.now();
        const r = await evaluateExamples(gpu, modelCfg, store, examples, cfg.microBatchSize);
        const seconds = (performance.now() - t0) / 1000;
        const record = {
          checkpoint: values.checkpoint,
          data: values.data,
          examples: examples.length,
          labels: r.labels,
          accuracy: r.accuracy,
          loss: r.loss,
          seconds,
          config: cfg,
          adapter: gpu.info,
        };
        if (values.json) printJson(record);
        else {
          console.log(
            `${cfg.mixer} d=${cfg.dModel} L=${cfg.seqLen}: ${values.data} accuracy ${r.accuracy.toFixed(4)} loss ` +
              `${r.loss.toFixed(4)} over ${examples.length} examples, ${r.labels} labels (${seconds.toFixed(1)} s)`,
          );
        }
        return 0;
      }
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

async function readExamples(path: string, cfg: ModelConfig): Promise<Example[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new UsageError(`--data ${path}: ${(e as Error).message}`);
  }
  return parseExamplesText(text, path, { seqLen: cfg.seqLen, vocabSize: cfg.vocabSize });
}

/**
 * Loss and accuracy over every labelled position of `examples`. Examples with the same number of labels share a
 * forward-only graph (its shape is fixed); batches divide each group exactly, so nothing is padded.
 */
export async function evaluateExamples(
  gpu: Gpu,
  cfg: ModelConfig,
  store: ParamStore,
  examples: readonly Example[],
  maxBatch: number,
): Promise<{ accuracy: number; loss: number; labels: number }> {
  const groups = new Map<number, Example[]>();
  for (const e of examples) {
    const n = labelCount(e);
    groups.set(n, [...(groups.get(n) ?? []), e]);
  }
  let lossSum = 0, correct = 0, count = 0;
  for (const [labels, group] of [...groups].sort((a, b) => a[0] - b[0])) {
    const release = gpu.allocator.scope();
    try {
      const batch = evalBatchSize(group.length, maxBatch);
      const graph = buildModelGraph(gpu, cfg, store, { training: false, batch, labelsPerExample: labels });
      graph.xent.resetAccumulators();
      for (let i = 0; i < group.length; i += batch) {
        graph.upload(batchOf(group.slice(i, i + batch), cfg.seqLen));
        graph.run();
      }
      const s = await graph.xent.readStats();
      lossSum += s.accLossSum;
      correct += s.accCorrect;
      count += s.accCount;
    } finally {
      release();
    }
  }
  return { accuracy: correct / count, loss: lossSum / count, labels: count };
}

/**
 * A checkpoint's weights and run config (its `__metadata__.config`, overridden by the RUN_FLAGS in `values`); every
 * problem is a one-line UsageError naming the file.
 */
export async function loadCheckpoint(
  path: string,
  values: Record<string, string | boolean | undefined>,
): Promise<{ cfg: RunConfig; modelCfg: ModelConfig; weights: Map<string, Float32Array> }> {
  let contents;
  try {
    contents = await readSafetensors(path);
  } catch (e) {
    throw new UsageError(`--checkpoint ${path}: ${(e as Error).message}`);
  }
  const stored: RunConfigInput[] = [];
  if (contents.metadata.config) {
    let json: unknown;
    try {
      json = JSON.parse(contents.metadata.config);
    } catch (e) {
      throw new UsageError(
        `--checkpoint ${path}: __metadata__.config is not valid JSON (${(e as Error).message}); ` +
          `expected the run config that \`mqar train --save\` stores there`,
      );
    }
    stored.push(parseRunConfigInput(json, `--checkpoint ${path}: __metadata__.config`));
  }
  const cfg = resolveRunConfig(...stored, ...await runConfigFromFlags(values));
  const modelCfg = modelConfigOf(cfg);
  try {
    return { cfg, modelCfg, weights: fromStateDict(modelCfg, contents.tensors, contents.metadata) };
  } catch (e) {
    throw new UsageError(`--checkpoint ${path} does not fit a ${cfg.mixer} model: ${(e as Error).message}`);
  }
}
