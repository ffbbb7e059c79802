/** GPU storage for a model's parameters: one param, grad and two AdamW moment tensors per state_dict entry. */
import type { Tensor } from "../gpu/allocator.ts";
import { type Gpu, readTensor, writeTensor } from "../gpu/device.ts";
import type { ModelConfig } from "./config.ts";
import { paramSpec, type ParamSpecEntry } from "./param_spec.ts";

export interface ParamSlot {
  spec: ParamSpecEntry;
  param: Tensor;
  grad: Tensor;
  /** AdamW first and second moments; absent for inference-only stores. */
  m?: Tensor;
  v?: Tensor;
}

export class ParamStore {
  readonly slots: ParamSlot[];
  readonly #byName = new Map<string, ParamSlot>();

  constructor(readonly gpu: Gpu, readonly cfg: ModelConfig, options: { optimizer?: boolean } = {}) {
    const alloc = gpu.allocator;
    this.slots = paramSpec(cfg).map((spec) => {
      const slot: ParamSlot = {
        spec,
        param: alloc.tensor(spec.name, spec.shape, "params"),
        grad: alloc.tensor(`${spec.name}.grad`, spec.shape, "grads"),
      };
      if (options.optimizer ?? true) {
        slot.m = alloc.tensor(`${spec.name}.adam_m`, spec.shape, "optimizer");
        slot.v = alloc.tensor(`${spec.name}.adam_v`, spec.shape, "optimizer");
      }
      this.#byName.set(spec.name, slot);
      return slot;
    });
  }

  get(name: string): ParamSlot {
    const slot = this.#byName.get(name);
    if (!slot) throw new Error(`no parameter ${name} in a ${this.cfg.mixer} model`);
    return slot;
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  /** Total number of scalar parameters. */
  count(): number {
    return this.slots.reduce((n, s) => n + s.param.length, 0);
  }

  /** Uploads values for every parameter (e.g. from initParams or a checkpoint). */
  upload(values: ReadonlyMap<string, Float32Array>): void {
    for (const slot of this.slots) {
      const v = values.get(slot.spec.name);
      if (!v) throw new Error(`missing value for parameter ${slot.spec.name}`);
      if (v.length !== slot.param.length) {
        throw new Error(`parameter ${slot.spec.name}: ${v.length} values for shape [${slot.spec.shape.join(", ")}]`);
      }
      writeTensor(this.gpu, slot.param, v);
    }
  }

  /** Reads every parameter back (a readback per tensor: for checkpoints, not for training steps). */
  async download(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const slot of this.slots) out.set(slot.spec.name, await readTensor(this.gpu, slot.param));
    return out;
  }

  /** Records zeroing of all gradients (once per optimizer step) into `encoder`. */
  encodeZeroGrads(encoder: GPUCommandEncoder): void {
    for (const slot of this.slots) encoder.clearBuffer(slot.grad.buffer);
  }
}
