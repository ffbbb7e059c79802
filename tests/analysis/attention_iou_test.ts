import { iouVariants, meanOverHeads, queryTargets, softIou, top1Iou } from "../../src/analysis/attention_iou.ts";
import { assertAlmostEquals, assertEquals, assertThrows } from "../_helpers/assert.ts";

// L = 6: context k0 v0 k1 v1 (positions 0..3), queries at 4 (asks for k1 → value position 3) and 5 (k0 → 1).
const L = 6;
const inputs = [10, 20, 11, 21, 11, 10];
const labels = [-100, -100, -100, -100, 21, 20];

function matrix(cells: [number, number, number][]): Float64Array {
  const m = new Float64Array(L * L);
  for (const [i, j, v] of cells) m[i * L + j] = v;
  return m;
}

Deno.test("IoU: ground truth of an MQAR example (value and key positions of the queried pairs)", () => {
  const t = queryTargets(inputs, labels, 2);
  assertEquals(t, { rows: [4, 5], value: [3, 1], key: [2, 0], context: 4 });
  assertThrows(() => queryTargets([10, 20, 11, 21, 12, 0], [-100, -100, -100, -100, 1, -100], 2), /no key/);
});

Deno.test("IoU on hand-built matrices: identical, disjoint, partial overlap", () => {
  const t = queryTargets(inputs, labels, 2);
  const identical = matrix([[4, 3, 1], [5, 1, 1]]);
  assertEquals(iouVariants(identical, L, t), { "soft-value": 1, "soft-key": 0, "top1-value": 1, "top1-key": 0 });
  const disjoint = matrix([[4, 0, 1], [5, 2, 1]]);
  assertEquals(softIou(disjoint, L, t.rows, t.value, t.context), 0);
  assertEquals(top1Iou(disjoint, L, t.rows, t.value, t.context), 0);
  // Row 4 puts half its weight on the target, half elsewhere; row 5 is exact: Σmin = 0.5 + 1, Σmax = 1 + 0.5 + 1.
  const partial = matrix([[4, 3, 0.5], [4, 0, 0.5], [5, 1, 1]]);
  assertAlmostEquals(softIou(partial, L, t.rows, t.value, t.context), 1.5 / 2.5, 1e-12);
  // Top-1 ties go to the lowest column (0, wrong) for row 4; row 5 right: 1 hit, |Pred ∪ G| = 2·2 − 1 = 3.
  assertAlmostEquals(top1Iou(partial, L, t.rows, t.value, t.context), 1 / 3, 1e-12);
  // Weight outside the crop (the query region, columns ≥ 2N) does not count.
  const outside = matrix([[4, 3, 1], [4, 4, 5], [5, 1, 1]]);
  assertEquals(softIou(outside, L, t.rows, t.value, t.context), 1);
  assertEquals(meanOverHeads([identical, disjoint])[4 * L + 3], 0.5);
});
