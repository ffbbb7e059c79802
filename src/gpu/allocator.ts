/** Buffer allocator that accounts every byte by category, since WebGPU has no memory query. */

export const CATEGORIES = ["params", "grads", "optimizer", "activations", "workspace"] as const;
export type Category = typeof CATEGORIES[number];

export type ByteCounts = Record<Category, number> & { total: number };

/** A GPU buffer with the shape and category it was allocated for. */
export interface Tensor {
  readonly buffer: GPUBuffer;
  readonly label: string;
  readonly category: Category;
  /** Number of 4-byte elements. */
  readonly length: number;
  readonly bytes: number;
  readonly shape: readonly number[];
}

const zeroCounts = (): ByteCounts => ({
  params: 0,
  grads: 0,
  optimizer: 0,
  activations: 0,
  workspace: 0,
  total: 0,
});

/** Pure byte ledger (no GPU): current and peak bytes, per category and in total. */
export class ByteLedger {
  #current = zeroCounts();
  #peak = zeroCounts();

  add(category: Category, bytes: number): void {
    this.#current[category] += bytes;
    this.#current.total += bytes;
    this.#peak[category] = Math.max(this.#peak[category], this.#current[category]);
    this.#peak.total = Math.max(this.#peak.total, this.#current.total);
  }

  remove(category: Category, bytes: number): void {
    if (bytes > this.#current[category]) {
      throw new Error(`ByteLedger: freeing ${bytes} B of ${category} but only ${this.#current[category]} B are live`);
    }
    this.#current[category] -= bytes;
    this.#current.total -= bytes;
  }

  current(): ByteCounts {
    return { ...this.#current };
  }

  /** Peak per category is the max of that category alone; `total` is the peak of the sum (not the sum of peaks). */
  peak(): ByteCounts {
    return { ...this.#peak };
  }

  resetPeak(): void {
    this.#peak = { ...this.#current };
  }
}

/** Storage buffers must be multiples of 4 bytes; we round every allocation up to 16 so vec4 loads stay in bounds. */
export function paddedBytes(elements: number): number {
  return Math.max(16, Math.ceil((elements * 4) / 16) * 16);
}

/** A buffer larger than the adapter's binding limit: raised at allocation instead of a silent validation error. */
export class BufferTooLargeError extends Error {
  override name = "BufferTooLargeError";
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

export class BufferAllocator {
  readonly ledger = new ByteLedger();
  readonly #live = new Map<GPUBuffer, Tensor>();

  /** `maxBindingBytes`: the largest buffer a storage binding takes (a larger one would fail validation silently). */
  constructor(readonly device: GPUDevice, readonly maxBindingBytes = Infinity) {}

  /** Allocates a zero-initialised f32/u32/i32 storage buffer of `shape`. */
  tensor(label: string, shape: readonly number[], category: Category, extraUsage = 0): Tensor {
    for (const dim of shape) {
      if (!Number.isInteger(dim) || dim < 0) throw new Error(`tensor ${label}: bad shape [${shape.join(", ")}]`);
    }
    const length = shape.reduce((a, b) => a * b, 1);
    const bytes = paddedBytes(length);
    if (bytes > this.maxBindingBytes) {
      throw new BufferTooLargeError(
        `tensor ${label} [${shape.join(", ")}]: ${mib(bytes)} is more than this adapter binds in one buffer ` +
          `(${mib(this.maxBindingBytes)}); use a smaller configuration`,
      );
    }
    const buffer = this.device.createBuffer({
      label,
      size: bytes,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | extraUsage,
    });
    const t: Tensor = { buffer, label, category, length, bytes, shape: [...shape] };
    this.#live.set(buffer, t);
    this.ledger.add(category, bytes);
    return t;
  }

  /** Allocates a uniform buffer (counted as workspace). */
  uniform(label: string, bytes: number): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    const buffer = this.device.createBuffer({ label, size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.#live.set(buffer, { buffer, label, category: "workspace", length: size / 4, bytes: size, shape: [size / 4] });
    this.ledger.add("workspace", size);
    return buffer;
  }

  free(t: Tensor | GPUBuffer): void {
    const buffer = "buffer" in t ? t.buffer : t;
    const entry = this.#live.get(buffer);
    if (!entry) throw new Error(`free: buffer ${buffer.label} is not live in this allocator`);
    this.#live.delete(buffer);
    this.ledger.remove(entry.category, entry.bytes);
    buffer.destroy();
  }

  /**
   * Marks the allocations made from now on; the returned function frees exactly those (a run's graph, in a process that
   * runs many: sweeps, the demo), leaving earlier buffers alone.
   */
  scope(): () => void {
    const before = new Set(this.#live.keys());
    return () => {
      for (const buffer of [...this.#live.keys()]) if (!before.has(buffer)) this.free(buffer);
    };
  }

  freeAll(): void {
    for (const buffer of [...this.#live.keys()]) this.free(buffer);
  }

  current(): ByteCounts {
    return this.ledger.current();
  }

  peak(): ByteCounts {
    return this.ledger.peak();
  }

  liveCount(): number {
    return this.#live.size;
  }
}
