/**
 * Dropout without a stored mask (kernels/dropout.wgsl): the mask is a hash of (seed, stream, element index), so backward
 * recomputes it. Forward and backward share one uniform; `setSeed` rewrites its seed word with queue.writeBuffer
 * (no readback). Call setSeed before submitting a step's forward and do not change it until that step's backward has
 * been submitted: writeBuffer lands before the next submit.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import { dropoutScale, dropoutThreshold } from "../reference/dropout.ts";
import { ceilDiv, type Dispatch, grid1d, makeDispatch, makeUniform } from "./_dispatch.ts";

const WG = 256;
/** Byte offset of `seed` in the Params uniform. */
const SEED_OFFSET = 4;

export interface DropoutForwardArgs {
  x: Tensor;
  /** Output; may be x itself (in place). */
  y: Tensor;
  /** Drop probability in [0, 1]; p = 0 is the identity. */
  p: number;
  /** Elements (default: y's length). */
  n?: number;
  /** Initial seed (u32); later steps call setSeed. */
  seed?: number;
  /** Fixed per dropout site (e.g. a layer id) so sites sharing a step seed draw independent masks. */
  stream?: number;
}

export interface DropoutForward extends Dispatch {
  readonly p: number;
  readonly n: number;
  readonly stream: number;
  /** The uniform {n, seed, stream, threshold, scale}, shared with the backward dispatch. */
  readonly params: GPUBuffer;
  /** The seed the next submitted dispatches will use. */
  readonly seed: number;
  setSeed(seed: number): void;
}

export interface DropoutBackwardArgs {
  /** The forward op: its uniform (p, n, seed) is reused, so both always see the same mask. */
  forward: DropoutForward;
  dy: Tensor;
  /** Overwritten, or accumulated into with `accumulate`; may be dy itself (in place, no accumulate). */
  dx: Tensor;
  accumulate?: boolean;
}

function checkSeed(seed: number): number {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new Error(`dropout seed must be a u32, got ${seed}`);
  }
  return seed;
}

function applyDispatch(
  gpu: Gpu,
  label: string,
  params: GPUBuffer,
  input: Tensor,
  output: Tensor,
  n: number,
  accumulate: boolean,
): Dispatch {
  if (input.length < n) throw new Error(`${label}: ${input.label} has ${input.length} elements, needs ${n}`);
  if (output.length < n) throw new Error(`${label}: ${output.label} has ${output.length} elements, needs ${n}`);
  const workgroups = grid1d(gpu, ceilDiv(n, WG));
  if (input.buffer === output.buffer) {
    if (accumulate) throw new Error(`${label}: cannot accumulate in place`);
    return makeDispatch(gpu, label, "dropout", "apply_inplace", {}, [params, output], workgroups);
  }
  return makeDispatch(gpu, label, "dropout", "apply", { ACCUMULATE: accumulate }, [params, input, output], workgroups);
}

export function createDropoutForward(gpu: Gpu, label: string, args: DropoutForwardArgs): DropoutForward {
  const n = args.n ?? args.y.length;
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`${label}: bad element count ${n}`);
  const stream = checkSeed(args.stream ?? 0);
  let seed = checkSeed(args.seed ?? 0);
  const params = makeUniform(gpu, `${label}.params`, [
    ["u32", n],
    ["u32", seed],
    ["u32", stream],
    ["u32", dropoutThreshold(args.p)],
    ["f32", dropoutScale(args.p)],
  ]);
  const dispatch = applyDispatch(gpu, label, params, args.x, args.y, n, false);
  return {
    label,
    p: args.p,
    n,
    stream,
    params,
    get seed() {
      return seed;
    },
    setSeed(next: number) {
      seed = checkSeed(next);
      gpu.device.queue.writeBuffer(params, SEED_OFFSET, Uint32Array.of(seed));
    },
    encode: (pass) => dispatch.encode(pass),
  };
}

export function createDropoutBackward(gpu: Gpu, label: string, args: DropoutBackwardArgs): Dispatch {
  const f = args.forward;
  return applyDispatch(gpu, label, f.params, args.dy, args.dx, f.n, Boolean(args.accumulate));
}
