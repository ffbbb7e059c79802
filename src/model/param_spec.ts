/**
 * Parameter names, shapes and initialisers of every architecture, in PyTorch state_dict order of the reference code
 * (spec §4.1), so checkpoints use the reference names. Derived from the mixer descriptors (src/mixers/registry.ts):
 * the embeddings, each block's mixer (its descriptor's `params`) and norms, ln_f. Linear weights are [out, in]; the
 * LM head is tied to the word embeddings and is not a separate parameter.
 */
import { architecture } from "../mixers/registry.ts";
import {
  type InitDescriptor,
  ONES,
  ParamBuilder,
  type ParamEntry,
  type ParamShape,
  type StateDictExtra,
  weightInit,
} from "../mixers/descriptor.ts";
import { N_LAYERS } from "./arch_config.ts";
import { type ArchConfig, type ModelConfig, validateArchConfig, validateModelConfig } from "./config.ts";

export type { InitDescriptor, ParamShape } from "../mixers/descriptor.ts";

export interface ParamSpecEntry extends ParamShape {
  init: InitDescriptor;
}

export const WORD_EMBEDDINGS = "backbone.embeddings.word_embeddings.weight";
export const POSITION_EMBEDDINGS = "backbone.embeddings.position_embeddings.weight";
/** The tied LM head (logits = out @ WordEmb^T): never stored separately. */
export const LM_HEAD = "lm_head.weight";
export const TIE_METADATA: Readonly<Record<string, string>> = { tied: `${LM_HEAD}=${WORD_EMBEDDINGS}` };

/** Name prefix of layer `layer`'s mixer: TransformerBlocks wrap it in a Hybrid (`sequence_mixer.mixer`). */
export function mixerPrefix(cfg: Pick<ArchConfig, "mixer">, layer: number): string {
  const block = `backbone.layers.${layer}.`;
  return architecture(cfg.mixer).block === "mamba" ? `${block}mixer.` : `${block}sequence_mixer.mixer.`;
}

function buildEntries(cfg: ArchConfig): ParamEntry[] {
  const arch = architecture(cfg.mixer);
  const d = cfg.dModel, out: ParamEntry[] = [];
  const embeddings = (name: string, rows: number, module: string) =>
    new ParamBuilder(out, "", module).add(name, [rows, d], weightInit(name));
  embeddings(WORD_EMBEDDINGS, cfg.vocabSize, "embeddings.word");
  embeddings(POSITION_EMBEDDINGS, cfg.seqLen, "embeddings.position");
  for (let layer = 0; layer < N_LAYERS; layer++) {
    const block = `backbone.layers.${layer}.`;
    const mixer = arch.layers[layer];
    const module = `layers.${layer}.mixer (${mixer.label})`;
    mixer.params(new ParamBuilder(out, mixerPrefix(cfg, layer), module), cfg, layer);
    if (arch.block === "mamba") {
      // MambaBlock: the mixer directly under the block, then an RMSNorm (weight only).
      new ParamBuilder(out, block, `layers.${layer}.norm (RMSNorm)`).add("norm.weight", [d], ONES);
      continue;
    }
    // TransformerBlock registers sequence_mixer (a Hybrid wrapping `mixer`) before norm1 and norm2.
    new ParamBuilder(out, block, `layers.${layer}.norm1`).layerNorm("norm1", d);
    new ParamBuilder(out, block, `layers.${layer}.norm2`).layerNorm("norm2", d);
  }
  new ParamBuilder(out, "backbone.", "ln_f").layerNorm("ln_f", d);
  return out;
}

/** Ordered trainable parameters of a model, with initialisers (spec §2.4). */
export function paramSpec(cfg: ModelConfig): ParamSpecEntry[] {
  validateModelConfig(cfg);
  return buildEntries(cfg).map(({ name, shape, module, init }) => {
    if (init === null) throw new Error(`paramSpec: no initialiser for ${name} of ${cfg.mixer}`);
    if (init.kind === "values" && init.values.length !== numel(shape)) {
      throw new Error(`paramSpec: ${name} has ${init.values.length} init values for shape [${shape.join(", ")}]`);
    }
    return { name, shape, module, init };
  });
}

/** Names, shapes and modules of any architecture, including the count-only ones. */
export function paramShapes(cfg: ArchConfig): ParamShape[] {
  validateArchConfig(cfg);
  return buildEntries(cfg).map(({ name, shape, module }) => ({ name, shape, module }));
}

/** The state_dict entries that are not separate parameters (shared copies, buffers), with full names. */
export function stateDictExtras(cfg: ArchConfig): StateDictExtra[] {
  const arch = architecture(cfg.mixer);
  return arch.layers.flatMap((layer, i) =>
    (layer.stateDictExtras?.(cfg) ?? []).map((e) => {
      const prefix = mixerPrefix(cfg, i);
      return "alias" in e ? { ...e, name: prefix + e.name, alias: prefix + e.alias } : { ...e, name: prefix + e.name };
    })
  );
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
