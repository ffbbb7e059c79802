/**
 * `mqar analyze`: the attention analysis of the paper's §5.5 (Table 3, Figures 5, 8, 9) for a trained checkpoint:
 * layer 1's attention matrix on test examples (softmax attention: its probabilities; Based/ReBased: the row-normalised
 * kernel matrix of the parallel form), its IoU against the ground-truth retrieval positions, heatmaps, and the weights
 * of the last query. See src/analysis/attention_iou.ts for the definitions.
 */
import { acquireGpu, readTensor } from "../gpu/device.ts";
import { generateBatch } from "../data/mqar.ts";
import { buildModelGraph } from "../model/graph.ts";
import { ParamStore } from "../model/parameters.ts";
import { architecture, ARCHITECTURES } from "../mixers/registry.ts";
import { mqarConfigOf } from "../train/config.ts";
import { evalBatchSize } from "../train/trainer.ts";
import type { Tensor } from "../gpu/allocator.ts";
import {
  IOU_VARIANTS,
  type IouVariant,
  iouVariants,
  meanOverHeads,
  queryTargets,
  softIou,
} from "../analysis/attention_iou.ts";
import { renderHeatmap } from "../report/heatmap.ts";
import { renderFigure, toStandaloneSvg } from "../report/svg.ts";
import { markdownTable } from "../report/markdown.ts";
import { checkOutputDir } from "../io/output_path.ts";
import { writeTextAtomic } from "../io/atomic.ts";
import { type Command, numberFlag, parseFlags, printJson, UsageError } from "./_common.ts";
import { RUN_FLAGS } from "./train.ts";
import { loadCheckpoint } from "./eval.ts";

const LAYER = 1;

const withMaps = () => ARCHITECTURES.filter((a) => a.trainable && a.layers[LAYER].attentionMap).map((a) => a.name);

const USAGE = `Usage: mqar analyze --checkpoint FILE --out DIR [--examples N] [--json] [flags as for eval]

The paper's §5.5 analysis of layer 1's attention matrix on the first N test examples (default 10000, as the paper):
  softmax attention: the probabilities softmax(q·k/sqrt(dh)); Based/ReBased: Â_ij = g(S_ij)/Σ_j g(S_ij) of the parallel
  form (what multiplies V), averaged over the 12 heads. Mixers with such a layer: ${withMaps().join(", ")}.
IoU against the ground truth G (G_ij = 1 at the value position 2m+1 of the pair a query asks for; "key" variants use
its key position 2m) over query rows × the context region (positions 0..2N−1, the paper's crop), per example, then
averaged: soft = Σ min(Â, G) / Σ max(Â, G) (the default: closest to the paper's Table 3), top-1 = each row's argmax
as the predicted set. Train with --fix-prev-token-conv (layer 0's conv copies the previous token, as the paper) for
the paper's setup: configs/train/paper-iou-L128.json.

Writes DIR/iou.json, DIR/iou.md, DIR/attention-mean.svg (Figure 5: the head average next to the ground truth),
DIR/attention-heads.svg (Figure 8: every head), DIR/last-query.svg (Figure 9: the last query's weights).`;

export const analyzeCommand: Command = {
  name: "analyze",
  summary: "attention maps and IoU against the retrieval positions (paper §5.5, Table 3) for a checkpoint",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("analyze", args, {
      ...RUN_FLAGS,
      checkpoint: { type: "string" },
      examples: { type: "string" },
      out: { type: "string" },
      json: { type: "boolean" },
    });
    if (!values.checkpoint) throw new UsageError("--checkpoint FILE is required");
    if (!values.out) throw new UsageError("--out DIR is required");
    const { cfg, modelCfg, weights } = await loadCheckpoint(values.checkpoint as string, values);
    const layer = architecture(cfg.mixer).layers[LAYER];
    const map = layer.attentionMap;
    if (!map) {
      throw new UsageError(
        `--checkpoint: ${cfg.mixer}'s layer ${LAYER} (${layer.label}) has no attention matrix; mixers with one: ${
          withMaps().join(", ")
        }`,
      );
    }
    const count = numberFlag("examples", values.examples as string | undefined, { integer: true, min: 1 }) ?? 10000;
    if (count > cfg.testExamples) {
      throw new UsageError(
        `--examples: got ${count}, at most the test split's ${cfg.testExamples} (raise --test-examples)`,
      );
    }
    const out = values.out as string;
    await checkOutputDir("--out", out);

    const gpu = await acquireGpu();
    const release = gpu.allocator.scope();
    const L = cfg.seqLen, N = cfg.numKvPairs, mqar = mqarConfigOf(cfg);
    const sums = Object.fromEntries(IOU_VARIANTS.map((v) => [v, 0])) as Record<IouVariant, number>;
    let bestHeadSoft = 0, lastQueryMass = 0, correct = 0, labels = 0;
    let first: { heads: Float64Array[]; mean: Float64Array; rows: number[]; targets: number[] } | null = null;
    try {
      const store = new ParamStore(gpu, modelCfg, { optimizer: false });
      store.upload(weights);
      const arena = new Map<string, Tensor>();
      const batch = evalBatchSize(count, Math.min(cfg.microBatchSize, 64));
      const graph = buildModelGraph(gpu, modelCfg, store, { training: false, batch, labelsPerExample: N, arena });
      const names = map.activations(modelCfg);
      graph.xent.resetAccumulators();
      for (let start = 0; start < count; start += batch) {
        const mb = generateBatch(mqar, "test", Uint32Array.from({ length: batch }, (_, i) => start + i));
        graph.upload(mb);
        graph.run();
        const acts = new Map<string, Float32Array>();
        for (const n of names) acts.set(n, await readTensor(gpu, arena.get(`layers.${LAYER}.mixer.${n}`)!));
        for (let b = 0; b < batch; b++) {
          const heads = map.matrix(modelCfg, (n) => acts.get(n)!, b);
          const mean = meanOverHeads(heads);
          const t = queryTargets(mb.inputs.subarray(b * L, (b + 1) * L), mb.targets.subarray(b * L, (b + 1) * L), N);
          const iou = iouVariants(mean, L, t);
          for (const v of IOU_VARIANTS) sums[v] += iou[v];
          bestHeadSoft += Math.max(...heads.map((h) => softIou(h, L, t.rows, t.value, t.context)));
          const last = t.rows.length - 1;
          lastQueryMass += mean[t.rows[last] * L + t.value[last]];
          first ??= { heads, mean, rows: t.rows, targets: t.value };
        }
      }
      const s = await graph.xent.readStats();
      correct = s.accCorrect;
      labels = s.accCount;
    } finally {
      release();
    }
    const iou = Object.fromEntries(IOU_VARIANTS.map((v) => [v, sums[v] / count])) as Record<IouVariant, number>;
    const summary = {
      checkpoint: values.checkpoint,
      mixer: cfg.mixer,
      examples: count,
      seqLen: L,
      numKvPairs: N,
      fixPrevTokenConv: Boolean(cfg.fixPrevTokenConv),
      accuracy: correct / labels,
      iou: iou["soft-value"],
      iouVariants: { ...iou, "soft-value-best-head": bestHeadSoft / count },
      lastQueryMassOnTarget: lastQueryMass / count,
      definition: "soft IoU Σmin(Â,G)/Σmax(Â,G) over query rows × context positions, G at the value position 2m+1, " +
        "heads averaged, per example then averaged",
      adapter: gpu.info,
    };
    await writeOutputs(out, summary, first!, L, N, cfg.mixer);
    if (values.json) printJson(summary);
    else {
      console.log(
        `${cfg.mixer}: IoU ${iou["soft-value"].toFixed(3)} (soft, value positions), accuracy ${
          summary.accuracy.toFixed(3)
        } over ${count} test examples`,
      );
      console.log(
        `  other definitions: soft/key ${iou["soft-key"].toFixed(3)}, top-1/value ${
          iou["top1-value"].toFixed(3)
        }, top-1/key ${iou["top1-key"].toFixed(3)}, best head soft/value ${(bestHeadSoft / count).toFixed(3)}; ` +
          `last query's weight on its target ${(lastQueryMass / count).toFixed(3)}`,
      );
      console.log(`wrote ${out}/iou.json, iou.md, attention-mean.svg, attention-heads.svg, last-query.svg`);
    }
    return 0;
  },
};

async function writeOutputs(
  dir: string,
  summary: { mixer: string; iouVariants: Record<string, number>; accuracy: number; examples: number },
  first: { heads: Float64Array[]; mean: Float64Array; rows: number[]; targets: number[] },
  L: number,
  N: number,
  mixer: string,
): Promise<void> {
  const cols = Array.from({ length: 2 * N }, (_, j) => j);
  const marks = first.rows.map((i, r) => [i, first.targets[r]] as [number, number]);
  const truth = new Float64Array(L * L);
  for (const [i, j] of marks) truth[i * L + j] = 1;
  const crop = { width: L, rows: first.rows, cols };
  const mean = renderHeatmap({
    title: `${mixer}: layer-1 attention (test example 0), query rows × context positions`,
    rowLabel: "query position",
    colLabel: "context position",
    panels: [
      { title: "model (head average)", values: first.mean, marks, ...crop },
      { title: "ground truth", values: truth, ...crop },
    ],
  });
  const heads = renderHeatmap({
    title: `${mixer}: layer-1 attention per head (test example 0)`,
    rowLabel: "query position",
    colLabel: "context position",
    panels: first.heads.map((h, k) => ({ title: `head ${k}`, values: h, marks, ...crop })),
  });
  const lastRow = first.rows[first.rows.length - 1], target = first.targets[first.targets.length - 1];
  const last = renderFigure({
    title: `${mixer}: weights of the last query (position ${lastRow}) over the keys, test example 0`,
    subtitle: `ground truth at position ${target}`,
    panels: [{
      title: "head average",
      x: { label: "key position" },
      y: { label: "attention weight" },
      series: [
        {
          name: "weight",
          points: Array.from({ length: lastRow + 1 }, (_, j) => ({ x: j, y: first.mean[lastRow * L + j] })),
        },
        { name: "ground truth", points: [{ x: target, y: 0 }, { x: target, y: 1 }], dash: "4 3" },
      ],
    }],
  });
  const table = markdownTable({
    header: ["definition", "IoU"],
    rows: Object.entries(summary.iouVariants).map(([k, v]) => [k, v.toFixed(4)]),
  });
  await writeTextAtomic(`${dir}/iou.json`, JSON.stringify(summary, null, 2) + "\n");
  await writeTextAtomic(
    `${dir}/iou.md`,
    `# ${mixer}: attention IoU over ${summary.examples} test examples\n\naccuracy ${summary.accuracy.toFixed(4)}\n\n` +
      `${table}\n`,
  );
  await writeTextAtomic(`${dir}/attention-mean.svg`, toStandaloneSvg(mean));
  await writeTextAtomic(`${dir}/attention-heads.svg`, toStandaloneSvg(heads));
  await writeTextAtomic(`${dir}/last-query.svg`, toStandaloneSvg(last));
}
