/**
 * The one description of every run-configuration field: type, allowed range, default and flag. The trainer's config
 * schema (config.ts), the sweep grid's scalar fields and list items (src/sweep/grid.ts), the result-record reader
 * (src/sweep/results_file.ts) and the train/eval flags (src/cli/train.ts) are all built from this table.
 */
import { z } from "zod";
import { MIXERS } from "../model/config.ts";
import type { RunConfig } from "./result.ts";

const U32 = 0xffffffff;

export interface FieldSpec {
  type: "mixer" | "int" | "number" | "boolean" | "choice";
  /** The allowed values of a "choice" field. */
  choices?: readonly string[];
  min?: number;
  /** min is exclusive (> min). */
  exclusiveMin?: boolean;
  max?: number;
  /** null allowed (maxSteps: no cap). */
  nullable?: boolean;
  /** May be absent from a RunConfig (mixer-specific options); absent = the default behaviour. */
  optional?: boolean;
  /** The CLI flag of train/eval (absent: not settable by a flag). */
  flag?: string;
  /** What the value means, for "expected ..." messages. */
  what: string;
}

/** Every field of RunConfig, in record order. */
export const RUN_FIELDS = {
  mixer: { type: "mixer", flag: "mixer", what: "a trainable mixer" },
  dModel: { type: "int", min: 1, flag: "d-model", what: "model width" },
  seqLen: { type: "int", min: 4, flag: "seq-len", what: "sequence length L" },
  numKvPairs: { type: "int", min: 1, flag: "kv-pairs", what: "key-value pairs per example" },
  vocabSize: { type: "int", min: 4, flag: "vocab-size", what: "vocabulary size" },
  powerA: { type: "number", min: 0, exclusiveMin: true, what: "power-law exponent of query gaps" },
  randomNonQueries: { type: "boolean", what: "random filler tokens" },
  dataSeed: { type: "int", min: 0, max: U32, flag: "data-seed", what: "data seed" },
  trainExamples: { type: "int", min: 1, flag: "train-examples", what: "training examples" },
  testExamples: { type: "int", min: 1, flag: "test-examples", what: "test examples" },
  batchSize: { type: "int", min: 1, flag: "batch-size", what: "examples per optimizer step" },
  microBatchSize: { type: "int", min: 1, flag: "micro-batch-size", what: "examples per micro-batch" },
  epochs: { type: "int", min: 1, flag: "epochs", what: "epochs" },
  lr: { type: "number", min: 0, exclusiveMin: true, flag: "lr", what: "learning rate" },
  weightDecay: { type: "number", min: 0, flag: "weight-decay", what: "AdamW weight decay" },
  seed: { type: "int", min: 0, max: U32, flag: "seed", what: "seed of init, order and dropout" },
  earlyStopAccuracy: {
    type: "number",
    min: 0,
    max: 1,
    flag: "early-stop",
    what: "test accuracy to stop above (1 disables early stopping)",
  },
  maxSteps: { type: "int", min: 1, nullable: true, flag: "max-steps", what: "cap on optimizer steps" },
  fixPrevTokenConv: {
    type: "boolean",
    optional: true,
    flag: "fix-prev-token-conv",
    what: "fix layer 0's short conv to copy the previous token and freeze it (the paper's §5.5 setup)",
  },
  mambaInit: {
    type: "choice",
    choices: ["reference", "original"],
    optional: true,
    flag: "mamba-init",
    what: "Mamba's dt_proj init: the reference code's (default) or Mamba's own",
  },
  wkvBf16: {
    type: "boolean",
    optional: true,
    flag: "wkv-bf16",
    what: "RWKV: round wkv and its gradients to bfloat16",
  },
  window: {
    type: "int",
    min: 0,
    optional: true,
    flag: "window",
    what: "sliding_window: earlier keys each query sees (zoology's block_size; default 256)",
  },
} as const satisfies Record<keyof RunConfig, FieldSpec>;

export type RunFieldName = keyof typeof RUN_FIELDS;

/** Paper defaults (spec §2.5) for everything but the problem size, which defaults to zoology's small MQAR. */
export const RUN_DEFAULTS = {
  mixer: "rebased",
  dModel: 64,
  seqLen: 64,
  vocabSize: 8192,
  powerA: 0.01,
  randomNonQueries: false,
  dataSeed: 42,
  trainExamples: 100_000,
  testExamples: 3_000,
  batchSize: 512,
  epochs: 64,
  lr: 1e-3,
  weightDecay: 0.1,
  seed: 42,
  earlyStopAccuracy: 0.99,
  maxSteps: null,
} as const satisfies Partial<RunConfig>;

/** The train/eval flags: name → field, in table order. */
export function runFlagFields(): { flag: string; field: RunFieldName; spec: FieldSpec }[] {
  return (Object.keys(RUN_FIELDS) as RunFieldName[]).flatMap((field) => {
    const spec: FieldSpec = RUN_FIELDS[field];
    return spec.flag ? [{ flag: spec.flag, field, spec }] : [];
  });
}

/** "expected an integer >= 1 (model width)": the one text a field's every failure shows. */
export function expectedText(name: RunFieldName): string {
  const f: FieldSpec = RUN_FIELDS[name];
  if (f.type === "mixer") return `expected one of ${MIXERS.join(", ")}`;
  if (f.type === "boolean") return `expected true or false (${f.what})`;
  if (f.type === "choice") return `expected one of ${f.choices!.join(", ")} (${f.what})`;
  const range = f.min !== undefined && f.max !== undefined && !f.exclusiveMin ? `in [${f.min}, ${f.max}]` : [
    f.min !== undefined ? `${f.exclusiveMin ? ">" : ">="} ${f.min}` : "",
    f.max !== undefined ? `<= ${f.max}` : "",
  ].filter(Boolean).join(" and ");
  return `expected ${f.type === "int" ? "an integer" : "a number"} ${range}${f.nullable ? " or null" : ""} (${f.what})`;
}

/** The strict schema of one field's value, every failure reported with expectedText. */
export function runFieldSchema<N extends RunFieldName>(name: N): z.ZodType<Exclude<RunConfig[N], undefined>> {
  const f: FieldSpec = RUN_FIELDS[name];
  const error = expectedText(name);
  let s: z.ZodType;
  if (f.type === "mixer") s = z.enum(MIXERS as [string, ...string[]], { error });
  else if (f.type === "boolean") s = z.boolean({ error });
  else if (f.type === "choice") s = z.enum(f.choices as [string, ...string[]], { error });
  else {
    let n = z.number({ error }).finite({ error });
    if (f.type === "int") n = n.int({ error }).max(Number.MAX_SAFE_INTEGER, { error });
    if (f.min !== undefined) n = f.exclusiveMin ? n.gt(f.min, { error }) : n.min(f.min, { error });
    if (f.max !== undefined) n = n.max(f.max, { error });
    s = n;
  }
  return (f.nullable ? s.nullable() : s) as z.ZodType<Exclude<RunConfig[N], undefined>>;
}

/** Every field optional and checked (a config file or flags, merged over the defaults); unknown fields rejected. */
export function runConfigInputSchema() {
  const shape = Object.fromEntries(
    (Object.keys(RUN_FIELDS) as RunFieldName[]).map((name) => [name, runFieldSchema(name).optional()]),
  );
  return z.strictObject(shape);
}

/**
 * A RunConfig as result records hold it: the types, not the ranges (records of other versions and mixers this build
 * does not know must still be readable), and extra fields pass through.
 */
export function runConfigRecordSchema() {
  const shape = Object.fromEntries((Object.keys(RUN_FIELDS) as RunFieldName[]).map((name) => {
    const f: FieldSpec = RUN_FIELDS[name];
    const base = f.type === "mixer" || f.type === "choice"
      ? z.string()
      : f.type === "boolean"
      ? z.boolean()
      : z.number();
    const typed = f.nullable ? base.nullable() : base;
    return [name, f.optional ? typed.optional() : typed];
  }));
  return z.looseObject(shape);
}
