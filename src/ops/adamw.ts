/**
 * AdamW (PyTorch semantics, decoupled weight decay applied first; spec §2.5) over several tensors: one dispatch per
 * tensor, all sharing one step uniform that `setStep` rewrites before each submit (no readback). A single packed
 * parameter buffer is simply one tensor here.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import { ADAMW_DEFAULTS } from "../reference/adamw.ts";
import {
  ceilDiv,
  type Dispatch,
  grid1d,
  makeDispatch,
  makeUniform,
  type UniformField,
  writeUniform,
} from "./_dispatch.ts";

export interface AdamWTensor {
  param: Tensor;
  grad: Tensor;
  /** First/second moment (same length as param). Allocated (zeroed, category optimizer) when omitted. */
  m?: Tensor;
  v?: Tensor;
}

export interface AdamWArgs {
  tensors: readonly AdamWTensor[];
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Applied to every tensor (the paper's single param group): default 0.1. */
  weightDecay?: number;
  /** Gradients are multiplied by clip.tensor[clip.index] (e.g. the grad-norm result, GRAD_NORM_SLOTS.clip). */
  clip?: { tensor: Tensor; index: number };
  /** Zero each gradient after using it (saves the trainer's zeroing pass). Default false. */
  zeroGrad?: boolean;
}

export interface AdamWOp {
  readonly dispatches: readonly Dispatch[];
  /** The moments actually used, in the order of `args.tensors` (for checkpoints). */
  readonly states: readonly { m: Tensor; v: Tensor }[];
  /** Writes the uniform for 1-based optimizer step `step` at learning rate `lr`; call before submitting. */
  setStep(step: number, lr: number): void;
  free(): void;
}

const WG = 256;

export function createAdamW(gpu: Gpu, label: string, args: AdamWArgs): AdamWOp {
  const beta1 = args.beta1 ?? ADAMW_DEFAULTS.beta1;
  const beta2 = args.beta2 ?? ADAMW_DEFAULTS.beta2;
  const eps = args.eps ?? ADAMW_DEFAULTS.eps;
  const weightDecay = args.weightDecay ?? ADAMW_DEFAULTS.weightDecay;
  const stepFields = (step: number, lr: number): UniformField[] => [
    ["f32", 1 - lr * weightDecay],
    ["f32", beta1],
    ["f32", beta2],
    ["f32", eps],
    ["f32", lr / (1 - beta1 ** step)],
    ["f32", Math.sqrt(1 - beta2 ** step)],
    ["u32", 0],
    ["u32", 0],
  ];
  const stepUniform = makeUniform(gpu, `${label}.step`, stepFields(1, 0));
  const owned: (Tensor | GPUBuffer)[] = [stepUniform];
  const defines = { WG, HAS_CLIP: Boolean(args.clip), ZERO_GRAD: Boolean(args.zeroGrad) };
  const states: { m: Tensor; v: Tensor }[] = [];
  const dispatches = args.tensors.map((t, k) => {
    const n = t.param.length;
    for (const [name, x] of [["grad", t.grad], ["m", t.m], ["v", t.v]] as const) {
      if (x && x.length !== n) throw new Error(`${label}: ${name} ${x.label} has ${x.length} elements, param ${n}`);
    }
    const alloc = (which: string) => {
      const x = gpu.allocator.tensor(`${label}.${t.param.label}.${which}`, t.param.shape, "optimizer");
      owned.push(x);
      return x;
    };
    const m = t.m ?? alloc("m"), v = t.v ?? alloc("v");
    states.push({ m, v });
    const tensorUniform = makeUniform(gpu, `${label}.tensor${k}`, [
      ["u32", n],
      ["u32", args.clip?.index ?? 0],
      ["u32", 0],
      ["u32", 0],
    ]);
    owned.push(tensorUniform);
    const bindings = [stepUniform, tensorUniform, t.param, t.grad, m, v, ...(args.clip ? [args.clip.tensor] : [])];
    return makeDispatch(
      gpu,
      `${label}.${t.param.label}`,
      "adamw",
      "adamw_step",
      defines,
      bindings,
      grid1d(gpu, ceilDiv(n, WG)),
    );
  });
  return {
    dispatches,
    states,
    setStep(step, lr) {
      if (!Number.isInteger(step) || step < 1) {
        throw new Error(`${label}: step must be a positive integer, got ${step}`);
      }
      writeUniform(gpu, stepUniform, stepFields(step, lr));
    },
    free() {
      for (const x of owned) gpu.allocator.free(x);
    },
  };
}
