/**
 * Examples as JSON Lines, one per line: {"input_ids": [L ints], "labels": [L ints, -100 where unlabelled]} — the
 * layout of the reference's (inputs, targets) pairs (spec §1.2: targets[t] is the label at input position t), so the
 * same examples can be fed to this tool and to PyTorch. Pure: no GPU.
 */
import { generateBatch, IGNORE_INDEX, type MqarBatch, type MqarConfig, type MqarSplit } from "./mqar.ts";

/** A malformed data line: the message names the file, the line, the field and what was expected. */
export class DataInputError extends Error {
  override name = "DataInputError";
}

export interface Example {
  inputIds: Uint32Array;
  /** IGNORE_INDEX where unlabelled. */
  labels: Int32Array;
}

/** One example's line (no newline). */
export function exampleLine(e: Example): string {
  return JSON.stringify({ input_ids: [...e.inputIds], labels: [...e.labels] });
}

/** Examples start .. start+count of an MQAR split, in order. */
export function mqarExamples(cfg: MqarConfig, split: MqarSplit, start: number, count: number): Example[] {
  const L = cfg.seqLen;
  const batch = generateBatch(cfg, split, Uint32Array.from({ length: count }, (_, i) => start + i));
  return Array.from({ length: count }, (_, b) => ({
    inputIds: batch.inputs.slice(b * L, (b + 1) * L),
    labels: batch.targets.slice(b * L, (b + 1) * L),
  }));
}

export interface ExampleShape {
  seqLen: number;
  vocabSize: number;
}

/** Parses line `lineNo` (1-based) of `source`; throws DataInputError naming the field and what was expected. */
export function parseExampleLine(line: string, lineNo: number, source: string, shape: ExampleShape): Example {
  const where = `${source}:${lineNo}`;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    throw new DataInputError(
      `${where}: not JSON (${(e as Error).message}); expected {"input_ids": [...], "labels": [...]}`,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new DataInputError(`${where}: expected an object {"input_ids": [...], "labels": [...]}`);
  }
  const v = value as Record<string, unknown>;
  const extra = Object.keys(v).filter((k) => k !== "input_ids" && k !== "labels");
  if (extra.length) throw new DataInputError(`${where}: unknown field ${extra[0]}; allowed: input_ids, labels`);
  const list = (field: "input_ids" | "labels", ok: (x: number) => boolean, allowed: string): number[] => {
    const a = v[field];
    if (!Array.isArray(a)) throw new DataInputError(`${where}: ${field}: expected a list of ${shape.seqLen} integers`);
    if (a.length !== shape.seqLen) {
      throw new DataInputError(
        `${where}: ${field}: ${a.length} tokens, expected seqLen = ${shape.seqLen} (the checkpoint's L)`,
      );
    }
    a.forEach((x, i) => {
      if (typeof x !== "number" || !Number.isInteger(x) || !ok(x)) {
        throw new DataInputError(`${where}: ${field}[${i}]: got ${JSON.stringify(x)}, expected ${allowed}`);
      }
    });
    return a as number[];
  };
  const V = shape.vocabSize;
  const inputIds = list("input_ids", (x) => x >= 0 && x < V, `a token id in [0, ${V - 1}] (vocabSize ${V})`);
  const labels = list(
    "labels",
    (x) => x === IGNORE_INDEX || (x >= 0 && x < V),
    `${IGNORE_INDEX} (unlabelled) or a token id in [0, ${V - 1}]`,
  );
  if (!labels.some((x) => x !== IGNORE_INDEX)) {
    throw new DataInputError(`${where}: labels: no labelled position (all ${IGNORE_INDEX}); expected at least one`);
  }
  return { inputIds: Uint32Array.from(inputIds), labels: Int32Array.from(labels) };
}

/** Parses a whole data file (blank lines skipped); every bad line is an error with its number. */
export function parseExamplesText(text: string, source: string, shape: ExampleShape): Example[] {
  const out: Example[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() !== "") out.push(parseExampleLine(line, i + 1, source, shape));
  });
  if (out.length === 0) throw new DataInputError(`${source}: no examples (expected one JSON object per line)`);
  return out;
}

/** Labelled positions of an example. */
export function labelCount(e: Example): number {
  let n = 0;
  for (const x of e.labels) if (x !== IGNORE_INDEX) n++;
  return n;
}

/** Examples with the same number of labels as one batch (the graph's fixed shape). */
export function batchOf(examples: readonly Example[], seqLen: number): MqarBatch {
  const B = examples.length;
  const inputs = new Uint32Array(B * seqLen), targets = new Int32Array(B * seqLen);
  examples.forEach((e, b) => {
    inputs.set(e.inputIds, b * seqLen);
    targets.set(e.labels, b * seqLen);
  });
  const positions: number[] = [];
  for (let t = 0; t < targets.length; t++) if (targets[t] !== IGNORE_INDEX) positions.push(t);
  return {
    inputs,
    targets,
    labelPositions: Uint32Array.from(positions),
    labelTargets: Uint32Array.from(positions, (t) => targets[t]),
  };
}
