/**
 * One optimizer step of the MQAR model as a static graph: the training graph at the micro-batch size, AdamW over every
 * parameter, and the loss scaling that makes the gradient the mean over all labelled positions of the step (the
 * reference's loss / accum_steps with exactly N labels per example). The trainer, the bench rig and the jax-js peer
 * all drive this object, so the step they time or train is the same step.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import type { MqarBatch } from "../data/mqar.ts";
import { mixSeed } from "../data/rng.ts";
import { submit } from "../ops/_dispatch.ts";
import { type AdamWOp, createAdamW } from "../ops/adamw.ts";
import type { ModelConfig } from "../model/config.ts";
import { buildModelGraph, type ModelGraph } from "../model/graph.ts";
import type { ParamStore } from "../model/parameters.ts";

export interface TrainStepOptions {
  /** Examples per micro-batch (the graph's batch). */
  microBatch: number;
  /** Micro-batches per optimizer step (gradient accumulation); default 1. */
  accumulation?: number;
  labelsPerExample: number;
  weightDecay?: number;
  /** Shares activation buffers with an eval graph that never runs at the same time. */
  arena?: Map<string, Tensor>;
  /** Parameters AdamW leaves alone (no update, no weight decay): e.g. a conv fixed to the previous token. */
  frozen?: ReadonlySet<string>;
  /** GraphOptions.variants. */
  variants?: Readonly<Record<string, string>>;
}

export interface TrainStep {
  readonly graph: ModelGraph;
  readonly adamw: AdamWOp;
  readonly accumulation: number;
  /** Tokens of one optimizer step. */
  readonly tokensPerStep: number;
  /**
   * Encodes and submits optimizer step `step` (1-based) at learning rate `lr`: for each micro-batch m, its upload, its
   * dropout seed mixSeed(seed, step − 1, m), forward + backward; then AdamW (which also zeroes the gradients). No
   * readback.
   */
  run(step: number, lr: number, microBatches: (m: number) => MqarBatch, seed: number): void;
}

export function createTrainStep(gpu: Gpu, cfg: ModelConfig, params: ParamStore, opts: TrainStepOptions): TrainStep {
  const accumulation = opts.accumulation ?? 1;
  const graph = buildModelGraph(gpu, cfg, params, {
    training: true,
    batch: opts.microBatch,
    labelsPerExample: opts.labelsPerExample,
    arena: opts.arena,
    variants: opts.variants,
  });
  const adamw = createAdamW(gpu, "adamw", {
    tensors: params.slots.filter((s) => !opts.frozen?.has(s.spec.name))
      .map((s) => ({ param: s.param, grad: s.grad, m: s.m, v: s.v })),
    weightDecay: opts.weightDecay,
    zeroGrad: true,
  });
  graph.xent.setGradScale(1 / (opts.microBatch * accumulation * opts.labelsPerExample));
  // Frozen parameters still receive gradients (the graph computes them all); clear them so they never grow.
  const frozenGrads = params.slots.filter((s) => opts.frozen?.has(s.spec.name)).map((s) => s.grad.buffer);
  return {
    graph,
    adamw,
    accumulation,
    tokensPerStep: opts.microBatch * accumulation * cfg.seqLen,
    run(step, lr, microBatches, seed) {
      for (let m = 0; m < accumulation; m++) {
        graph.upload(microBatches(m));
        graph.setSeed(mixSeed(seed, step - 1, m));
        graph.run();
      }
      adamw.setStep(step, lr);
      submit(gpu, adamw.dispatches);
      if (frozenGrads.length) {
        const encoder = gpu.device.createCommandEncoder();
        for (const g of frozenGrads) encoder.clearBuffer(g);
        gpu.device.queue.submit([encoder.finish()]);
      }
    },
  };
}
