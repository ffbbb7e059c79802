import {
  DataInputError,
  exampleLine,
  mqarExamples,
  parseExampleLine,
  parseExamplesText,
} from "../../src/data/exchange.ts";
import { generateBatch, IGNORE_INDEX, type MqarConfig } from "../../src/data/mqar.ts";
import { assert, assertEquals, assertThrows } from "../_helpers/assert.ts";

const MQAR: MqarConfig = {
  vocabSize: 64,
  seqLen: 16,
  numKvPairs: 2,
  powerA: 0.01,
  randomNonQueries: false,
  dataSeed: 42,
  trainExamples: 32,
  testExamples: 8,
};
const shape = { seqLen: 16, vocabSize: 64 };

Deno.test("data exchange: lines round-trip the generator's examples exactly", () => {
  const examples = mqarExamples(MQAR, "test", 2, 5);
  const batch = generateBatch(MQAR, "test", [2, 3, 4, 5, 6]);
  examples.forEach((e, b) => {
    assertEquals(e.inputIds, batch.inputs.slice(b * 16, (b + 1) * 16));
    assertEquals(e.labels, batch.targets.slice(b * 16, (b + 1) * 16));
    const back = parseExampleLine(exampleLine(e), b + 1, "x.jsonl", shape);
    assertEquals(back, e);
    assertEquals(JSON.parse(exampleLine(e)).labels.filter((x: number) => x !== IGNORE_INDEX).length, 2);
  });
  assertEquals(parseExamplesText(examples.map(exampleLine).join("\n") + "\n\n", "f", shape).length, 5);
});

Deno.test("data exchange: every kind of bad line names the line, the field and what was expected", () => {
  const good = JSON.parse(exampleLine(mqarExamples(MQAR, "test", 0, 1)[0]));
  const line = (v: unknown) => JSON.stringify(v);
  const cases: [string, RegExp][] = [
    ["not json", /f:3: not JSON .*expected \{"input_ids"/],
    ["[1, 2]", /f:3: expected an object/],
    [line({ ...good, extra: 1 }), /f:3: unknown field extra; allowed: input_ids, labels/],
    [line({ labels: good.labels }), /f:3: input_ids: expected a list of 16 integers/],
    [line({ ...good, input_ids: good.input_ids.slice(1) }), /f:3: input_ids: 15 tokens, expected seqLen = 16/],
    [line({ ...good, labels: [...good.labels, -100] }), /f:3: labels: 17 tokens, expected seqLen = 16/],
    [
      line({ ...good, input_ids: [64, ...good.input_ids.slice(1)] }),
      /input_ids\[0\]: got 64, expected a token id in \[0, 63\]/,
    ],
    [line({ ...good, input_ids: [1.5, ...good.input_ids.slice(1)] }), /input_ids\[0\]: got 1\.5/],
    [line({ ...good, labels: [-1, ...good.labels.slice(1)] }), /labels\[0\]: got -1, expected -100 \(unlabelled\) or/],
    [line({ ...good, labels: good.labels.map(() => -100) }), /f:3: labels: no labelled position/],
  ];
  for (const [text, pattern] of cases) {
    const err = (() => {
      try {
        parseExamplesText(`${line(good)}\n\n${text}\n`, "f", shape);
      } catch (e) {
        return e as Error;
      }
    })();
    assert(err instanceof DataInputError && pattern.test(err.message), `${text.slice(0, 40)}: ${err?.message}`);
  }
  assertThrows(() => parseExamplesText("\n\n", "empty.jsonl", shape), /empty\.jsonl: no examples/);
});
