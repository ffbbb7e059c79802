/**
 * Reference for the counter-based dropout of kernels/dropout.wgsl. The integer hash is reproduced bit-for-bit
 * (Math.imul and >>> 0 give WGSL's wrapping u32 arithmetic), so the mask here is exactly the GPU's.
 */

/** 32-bit finaliser, identical to `mix32` in kernels/dropout.wgsl. */
export function mix32(v: number): number {
  let h = v >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x21f0aaad);
  h ^= h >>> 15;
  h = Math.imul(h, 0x735a2d97);
  h ^= h >>> 15;
  return h >>> 0;
}

/** The per-element hash the kernel compares with the threshold. */
export function dropoutHash(seed: number, stream: number, index: number): number {
  const key = mix32((seed ^ mix32((stream ^ 0x9e3779b9) >>> 0)) >>> 0);
  return mix32((mix32((index ^ key) >>> 0) + key) >>> 0);
}

/** Elements with hash < threshold are dropped: threshold = round(p·2³²), clamped to u32. */
export function dropoutThreshold(p: number): number {
  if (!(p >= 0 && p <= 1)) throw new Error(`dropout probability must be in [0, 1], got ${p}`);
  return Math.min(0xffffffff, Math.round(p * 4294967296));
}

/** 1/(1 − p) rounded to f32 as the kernel uses it; 0 when p = 1 (everything dropped). */
export function dropoutScale(p: number): number {
  dropoutThreshold(p);
  return p >= 1 ? 0 : Math.fround(1 / (1 - p));
}

/** 1 where kept, 0 where dropped. */
export function dropoutMask(n: number, p: number, seed: number, stream = 0): Uint8Array {
  const threshold = dropoutThreshold(p);
  const mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) mask[i] = dropoutHash(seed, stream, i) >= threshold ? 1 : 0;
  return mask;
}

/** y = x·mask·scale. Backward is the same map applied to dy (the op is linear in x). */
export function dropoutRef(x: ArrayLike<number>, p: number, seed: number, stream = 0): Float64Array {
  const mask = dropoutMask(x.length, p, seed, stream);
  const scale = dropoutScale(p);
  return Float64Array.from(x, (v, i) => (mask[i] ? v * scale : 0));
}

/** dx = dy·mask·scale with the forward's mask. */
export function dropoutBackwardRef(dy: ArrayLike<number>, p: number, seed: number, stream = 0): Float64Array {
  return dropoutRef(dy, p, seed, stream);
}
