/** `mqar params`: exact parameter counts with a per-module breakdown, the paper's Table 4, and the full per-L table. */
import { type ArchName, ARCHS, makeArchConfig, mixerHelp } from "../model/config.ts";
import { checkTable4, paramBreakdown, paramCount } from "../model/param_count.ts";
import { stateSize } from "../model/state_size.ts";
import { type Command, numberFlag, parseFlags, printJson, UsageError } from "./_common.ts";

const TABLE_DS = [64, 128, 256, 512];
const TABLE_LS = [128, 256, 512, 1024, 2048];

const USAGE = `Usage:
  mqar params --mixer M --d-model D --seq-len L [--vocab-size V] [--json]   one model, per-module breakdown
  mqar params --table4 [--json]     the paper's Table 4, recomputed (each cell at the L that reproduces it)
  mqar params --table [--json]      every architecture × d ∈ {64,128,256,512} × L ∈ {128,...,2048}

Architectures:
${mixerHelp("  ", true)}`;

function fmt(n: number): string {
  return n.toLocaleString("en-US");
}

export const paramsCommand: Command = {
  name: "params",
  summary: "exact parameter counts per module; the paper's Table 4 and the full per-L table",
  usage: USAGE,
  run(args) {
    const { values } = parseFlags("params", args, {
      mixer: { type: "string" },
      "d-model": { type: "string" },
      "seq-len": { type: "string" },
      "vocab-size": { type: "string" },
      table4: { type: "boolean" },
      table: { type: "boolean" },
      json: { type: "boolean" },
    });
    if (values.table4) {
      const rows = checkTable4();
      if (values.json) printJson(rows);
      else {
        console.log("Table 4 (paper) vs computed; L is the sequence length whose position table reproduces the cell");
        console.log(
          `${"column".padEnd(14)}${"d".padStart(5)}${"L".padStart(6)}${"paper".padStart(12)}${"ours".padStart(12)}`,
        );
        for (const r of rows) {
          console.log(
            `${r.column.padEnd(14)}${String(r.d).padStart(5)}${String(r.L).padStart(6)}` +
              `${fmt(r.params).padStart(12)}${fmt(r.computed).padStart(12)}  ${r.matches ? "match" : "DIFFERS"}`,
          );
        }
      }
      return Promise.resolve(rows.every((r) => r.matches) ? 0 : 1);
    }
    if (values.table) {
      const rows = ARCHS.flatMap((arch) =>
        TABLE_DS.map((d) => ({
          arch,
          d,
          params: Object.fromEntries(
            TABLE_LS.map((L) => [L, paramCount(makeArchConfig({ mixer: arch, dModel: d, seqLen: L }))]),
          ),
        }))
      );
      if (values.json) printJson(rows);
      else {
        console.log(`${"arch".padEnd(20)}${"d".padStart(5)}${TABLE_LS.map((L) => `L=${L}`.padStart(12)).join("")}`);
        for (const r of rows) {
          console.log(
            `${r.arch.padEnd(20)}${String(r.d).padStart(5)}${
              TABLE_LS.map((L) => fmt(r.params[L]).padStart(12)).join("")
            }`,
          );
        }
      }
      return Promise.resolve(0);
    }
    if (!values.mixer) {
      throw new UsageError(`--mixer is required (one of ${ARCHS.join(", ")}), or use --table4/--table`);
    }
    if (!(ARCHS as readonly string[]).includes(values.mixer)) {
      throw new UsageError(`--mixer: got "${values.mixer}", expected one of ${ARCHS.join(", ")}`);
    }
    const dModel = numberFlag("d-model", values["d-model"], { integer: true, min: 1 });
    const seqLen = numberFlag("seq-len", values["seq-len"], { integer: true, min: 1 });
    if (dModel === undefined) throw new UsageError("--d-model is required (e.g. 64)");
    if (seqLen === undefined) throw new UsageError("--seq-len is required (e.g. 256): it sizes the position table");
    const vocabSize = numberFlag("vocab-size", values["vocab-size"], { integer: true, min: 2 });
    const cfg = makeArchConfig({ mixer: values.mixer as ArchName, dModel, seqLen, vocabSize });
    const b = paramBreakdown(cfg);
    const state = stateSize(cfg);
    if (values.json) printJson({ ...b, stateFloats: state });
    else {
      console.log(`${b.arch}  d_model=${b.dModel}  seq_len=${b.seqLen}  vocab=${b.vocabSize}`);
      for (const r of b.rows) console.log(`  ${r.module.padEnd(36)}${fmt(r.params).padStart(12)}`);
      console.log(`  ${"total".padEnd(36)}${fmt(b.total).padStart(12)}`);
      console.log(`  (${b.tie})`);
      const show = (n: number | null) => (n === null ? "–" : fmt(n));
      console.log(
        `  recurrent state per sequence at L=${seqLen}: ${state.perLayer.map(show).join(" + ")} = ${
          show(state.total)
        } ` +
          "floats (softmax attention: its KV cache)",
      );
    }
    return Promise.resolve(0);
  },
};
