/** The contract between the model graph and a sequence mixer: fixed buffers in, forward/backward dispatches out. */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Dispatch } from "../ops/_dispatch.ts";
import type { ModelConfig } from "../model/config.ts";
import type { ParamSlot, ParamStore } from "../model/parameters.ts";
import type { LayerDescriptor } from "./descriptor.ts";
import type { LinearArgs } from "../model/linear.ts";

export interface MixerContext {
  gpu: Gpu;
  cfg: ModelConfig;
  /** The layer's descriptor (its `options` tell layers of one kind apart, e.g. a kernel and a q/k transform). */
  layer: LayerDescriptor;
  /** 0 or 1. */
  layerIndex: number;
  /** Examples per micro-batch. */
  batch: number;
  /** batch · seqLen token rows. */
  rows: number;
  /** e.g. "layers.1.mixer", for buffer labels. */
  label: string;
  /** Parameter slot by its name relative to the mixer (e.g. "proj_q.weight"). */
  param(name: string): ParamSlot;
  /** Input [rows, d] (the block's LN1 output), output [rows, d]. */
  input: Tensor;
  output: Tensor;
  /** Backward: gradient of the output (read) and of the input (overwritten). */
  dOutput: Tensor;
  dInput: Tensor;
  /** Whether the graph trains (dropout on, backward built). */
  training: boolean;
  /** Allocates an activation buffer owned by this mixer. */
  activation(name: string, shape: number[]): Tensor;
  /** Variants forced by op name (GraphOptions.variants); a mixer honours those of its ops. */
  variants?: Readonly<Record<string, string>>;
}

export interface MixerGraph {
  forward: Dispatch[];
  backward: Dispatch[];
  /** The variant each op of the layer runs (op → variant), for result records (e.g. { attn: "chunked" }). */
  variants?: Record<string, string>;
  /** Per-submit randomness (attention dropout): called with a fresh seed before each training micro-batch. */
  setSeed?(seed: number): void;
}

export type MixerBuilder = (ctx: MixerContext) => MixerGraph;

export function paramLookup(store: ParamStore, prefix: string): (name: string) => ParamSlot {
  return (name) => store.get(`${prefix}${name}`);
}

/** The LinearArgs of the mixer's Linear `name` ([out, in] weight `name.weight`, optional `name.bias`) over ctx.rows. */
export function mixerLinear(
  ctx: MixerContext,
  name: string,
  x: Tensor,
  y: Tensor,
  inFeatures: number,
  outFeatures: number,
  bias = false,
): LinearArgs {
  return {
    x,
    y,
    weight: ctx.param(`${name}.weight`),
    bias: bias ? ctx.param(`${name}.bias`) : undefined,
    rows: ctx.rows,
    inFeatures,
    outFeatures,
  };
}
