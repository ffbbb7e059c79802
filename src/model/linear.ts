/** A PyTorch-style Linear layer (y = x·Wᵀ + b, W [out, in]) as forward/backward dispatches over fixed buffers. */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Dispatch } from "../ops/_dispatch.ts";
import { createColumnSum } from "../ops/elementwise.ts";
import { matmul } from "../ops/matmul.ts";
import type { ParamSlot } from "./parameters.ts";

export interface LinearArgs {
  x: Tensor;
  y: Tensor;
  weight: ParamSlot;
  bias?: ParamSlot;
  rows: number;
  inFeatures: number;
  outFeatures: number;
}

export interface LinearBackwardArgs {
  dy: Tensor;
  /** Input gradient; omitted when the input needs none (e.g. token data). */
  dx?: Tensor;
  /** dx += instead of dx = (several layers read the same input). */
  accumulateDx?: boolean;
}

export function linearForward(gpu: Gpu, label: string, a: LinearArgs): Dispatch {
  return matmul(gpu, `${label}.fwd`, {
    a: a.x,
    b: a.weight.param,
    bias: a.bias?.param,
    out: a.y,
    M: a.rows,
    N: a.outFeatures,
    K: a.inFeatures,
    transB: true,
  });
}

/** dW += dyᵀ·x, db += Σ rows of dy, dx (=|+=) dy·W. */
export function linearBackward(gpu: Gpu, label: string, a: LinearArgs, b: LinearBackwardArgs): Dispatch[] {
  const out: Dispatch[] = [
    matmul(gpu, `${label}.dw`, {
      a: b.dy,
      b: a.x,
      out: a.weight.grad,
      M: a.outFeatures,
      N: a.inFeatures,
      K: a.rows,
      transA: true,
      accumulate: true,
    }),
  ];
  if (a.bias) {
    out.push(createColumnSum(gpu, `${label}.db`, { input: b.dy, out: a.bias.grad, rows: a.rows, cols: a.outFeatures }));
  }
  if (b.dx) {
    out.push(matmul(gpu, `${label}.dx`, {
      a: b.dy,
      b: a.weight.param,
      out: b.dx,
      M: a.rows,
      N: a.inFeatures,
      K: a.outFeatures,
      accumulate: b.accumulateDx,
    }));
  }
  return out;
}
