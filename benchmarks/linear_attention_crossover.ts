/**
 * Where the chunked O(L) linear attention overtakes the adapter's exact parallel variant (the numbers behind
 * CHUNKED_FROM_SEQ_LEN in src/ops/linear_attention.ts): forward + backward time per token for each sequence length,
 * at a fixed number of tokens per step.
 *
 *   deno run -A benchmarks/linear_attention_crossover.ts [--value-dim=5] [--seq-lens=256,512,1024,2048]
 *     [--kernel=rebased] [--tokens=2048] [--repeats=7] [--json]
 *
 * H = 12 heads of f = 16 features (the paper's layout). Each cell is the median of `repeats` timed submits (each one
 * forward + backward and a wait for the GPU).
 */
import { parseArgs } from "node:util";
import { writeTensor } from "../src/gpu/device.ts";
import { submit } from "../src/ops/_dispatch.ts";
import {
  linearAttentionBackward,
  linearAttentionForward,
  type LinearAttentionKernel,
  type LinearAttentionVariant,
  parallelLinearAttentionVariant,
} from "../src/ops/linear_attention.ts";
import { benchGpu, median, randomValues } from "./_setup.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    "value-dim": { type: "string", default: "5" },
    "seq-lens": { type: "string", default: "256,512,1024,2048" },
    kernel: { type: "string", default: "rebased" },
    tokens: { type: "string", default: "2048" },
    repeats: { type: "string", default: "7" },
    json: { type: "boolean", default: false },
  },
});
const dv = Number(flags["value-dim"]), tokens = Number(flags.tokens), repeats = Number(flags.repeats);
const kernel = flags.kernel as LinearAttentionKernel;
const seqLens = flags["seq-lens"]!.split(",").map(Number);
for (
  const [name, v] of [
    ["value-dim", dv],
    ["tokens", tokens],
    ["repeats", repeats],
    ...seqLens.map((L) => ["seq-lens", L]),
  ]
) {
  if (!Number.isInteger(v) || (v as number) < 1) {
    console.error(`linear_attention_crossover: --${name} must be a positive integer, got ${v}`);
    Deno.exit(2);
  }
}
if (kernel !== "based" && kernel !== "rebased") {
  console.error(`linear_attention_crossover: --kernel must be based or rebased, got ${kernel}`);
  Deno.exit(2);
}

const gpu = await benchGpu();
const H = 12, f = 16;
const parallel = parallelLinearAttentionVariant(gpu);
const rows: { seqLen: number; batch: number; variant: LinearAttentionVariant; microsPerToken: number }[] = [];

async function timePerToken(L: number, B: number, variant: LinearAttentionVariant): Promise<number> {
  const a = gpu.allocator;
  const n = B * L;
  const t = {
    q: a.tensor("q", [n, H * f], "activations"),
    k: a.tensor("k", [n, H * f], "activations"),
    v: a.tensor("v", [n, H * dv], "activations"),
    y: a.tensor("y", [n, H * dv], "activations"),
    zinv: a.tensor("zinv", [n, H], "activations"),
    dy: a.tensor("dy", [n, H * dv], "activations"),
    dq: a.tensor("dq", [n, H * f], "activations"),
    dk: a.tensor("dk", [n, H * f], "activations"),
    dv: a.tensor("dv", [n, H * dv], "activations"),
    dz: a.tensor("dz", [n, H], "workspace"),
  };
  (["q", "k", "v", "dy"] as const).forEach((name, i) => {
    writeTensor(gpu, t[name], randomValues(t[name].length, 7 + i).map((x) => 0.3 * x));
  });
  const cfg = { batch: B, seqLen: L, heads: H, featureDim: f, valueDim: dv, kernel, variant };
  const step = [
    linearAttentionForward(gpu, "fwd", { ...cfg, ...t }),
    linearAttentionBackward(gpu, "bwd", { ...cfg, ...t }),
  ];
  submit(gpu, step);
  await gpu.device.queue.onSubmittedWorkDone();
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    submit(gpu, step);
    await gpu.device.queue.onSubmittedWorkDone();
    times.push(performance.now() - t0);
  }
  Object.values(t).forEach((x) => a.free(x));
  return (median(times) * 1000) / n;
}

if (!flags.json) {
  console.log(`adapter: ${gpu.info.description} (${gpu.info.backend}${gpu.info.software ? ", software" : ""})`);
  console.log(`${kernel}, H=${H}, f=${f}, dv=${dv}, ~${tokens} tokens per step: forward + backward µs per token`);
}
for (const L of seqLens) {
  const B = Math.max(1, Math.round(tokens / L));
  const cells: string[] = [];
  for (const variant of [parallel, "chunked"] as LinearAttentionVariant[]) {
    const microsPerToken = await timePerToken(L, B, variant);
    rows.push({ seqLen: L, batch: B, variant, microsPerToken });
    cells.push(`${variant} ${microsPerToken.toFixed(1)}`);
  }
  if (!flags.json) console.log(`L=${L} B=${B}: ${cells.join(", ")}`);
}
if (flags.json) console.log(JSON.stringify({ adapter: gpu.info, kernel, heads: H, featureDim: f, valueDim: dv, rows }));
