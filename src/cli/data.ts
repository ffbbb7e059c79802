/** `mqar data`: MQAR examples as JSON Lines, for other frameworks (and `mqar eval --data`) to use the same examples. */
import { checkOutputFile } from "../io/output_path.ts";
import { writeTextAtomic } from "../io/atomic.ts";
import { exampleLine, mqarExamples } from "../data/exchange.ts";
import { mqarConfigOf, resolveRunConfig } from "../train/config.ts";
import { type Command, numberFlag, parseFlags, UsageError } from "./_common.ts";
import { RUN_FLAGS, runConfigFromFlags } from "./train.ts";

const USAGE =
  `Usage: mqar data --out FILE.jsonl [--split test|train] [--examples N] [--start I] [--config FILE] [MQAR flags]

Writes MQAR examples, one JSON object per line: {"input_ids": [L token ids], "labels": [L ints, -100 where
unlabelled]} (labels[t] is the target at input position t, as the reference's inputs/targets pairs). The examples are
exactly the ones \`mqar train\` and \`mqar eval\` use for the same config (the data do not depend on --seed), so
\`mqar eval --checkpoint C --data FILE.jsonl\` on them gives the same accuracy as \`mqar eval --checkpoint C\`.

  --split test|train   default test
  --examples N         how many (default: the whole split: --test-examples or --train-examples)
  --start I            first example index (default 0)
  MQAR flags as for train: --seq-len, --kv-pairs, --vocab-size, --data-seed, --test-examples, --train-examples, ...`;

export const dataCommand: Command = {
  name: "data",
  summary: "write MQAR examples as JSON Lines (input_ids, labels) to exchange with other frameworks",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("data", args, {
      ...RUN_FLAGS,
      split: { type: "string" },
      examples: { type: "string" },
      start: { type: "string" },
      out: { type: "string" },
    });
    if (!values.out) throw new UsageError("--out FILE.jsonl is required");
    const split = (values.split as string | undefined) ?? "test";
    if (split !== "test" && split !== "train") throw new UsageError(`--split: got "${split}", expected test or train`);
    const cfg = resolveRunConfig(...await runConfigFromFlags(values));
    const size = split === "test" ? cfg.testExamples : cfg.trainExamples;
    const start = numberFlag("start", values.start as string | undefined, { integer: true, min: 0 }) ?? 0;
    const count = numberFlag("examples", values.examples as string | undefined, { integer: true, min: 1 }) ??
      size - start;
    if (start + count > size) {
      throw new UsageError(
        `--examples: ${start} + ${count} examples pass the ${split} split's ${size} (raise --${split}-examples)`,
      );
    }
    const out = values.out as string;
    await checkOutputFile("--out", out);
    const mqar = mqarConfigOf(cfg);
    const lines: string[] = [];
    const chunk = 1024;
    for (let i = 0; i < count; i += chunk) {
      for (const e of mqarExamples(mqar, split, start + i, Math.min(chunk, count - i))) lines.push(exampleLine(e));
    }
    await writeTextAtomic(out, lines.join("\n") + "\n");
    console.log(
      `wrote ${count} ${split} examples (L=${cfg.seqLen}, N=${cfg.numKvPairs}, V=${cfg.vocabSize}, data seed ` +
        `${cfg.dataSeed}) to ${out}`,
    );
    return 0;
  },
};
