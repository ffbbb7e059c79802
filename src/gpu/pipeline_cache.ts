/** Compiles each (kernel file, entry point, defines) once and reuses the pipeline. */
import { type Defines, loadKernelSource, preprocessWgsl } from "./wgsl.ts";
import { optionalEnv } from "./env.ts";

/**
 * MQAR_PIPELINE_LOG=FILE appends one line per created pipeline, "<ms>\t<kernel|defines|entry>". Mesa's software
 * adapters generate the machine code at the first dispatch, so there this times only creation; it counts how many
 * specialisations a run makes.
 */
let compileLog: string | null | undefined;
function compileLogPath(): string | null {
  if (compileLog === undefined) compileLog = optionalEnv("MQAR_PIPELINE_LOG") ?? null;
  return compileLog;
}

export class PipelineCache {
  readonly #pipelines = new Map<string, GPUComputePipeline>();
  readonly #modules = new Map<string, GPUShaderModule>();

  constructor(readonly device: GPUDevice, readonly enables: readonly string[] = []) {}

  get size(): number {
    return this.#pipelines.size;
  }

  /** Returns the compute pipeline for `entry` in `kernels/<kernel>.wgsl` compiled with `defines`. */
  get(kernel: string, entry: string, defines: Defines = {}): GPUComputePipeline {
    const defKey = Object.entries(defines).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${v}`).join(
      ",",
    );
    const moduleKey = `${kernel}|${defKey}`;
    const key = `${moduleKey}|${entry}`;
    let pipeline = this.#pipelines.get(key);
    if (pipeline) return pipeline;
    let module = this.#modules.get(moduleKey);
    if (!module) {
      const code = preprocessWgsl(loadKernelSource(kernel), defines, this.enables);
      module = this.device.createShaderModule({ label: moduleKey, code });
      this.#modules.set(moduleKey, module);
    }
    const log = compileLogPath();
    const start = log ? performance.now() : 0;
    pipeline = this.device.createComputePipeline({
      label: key,
      layout: "auto",
      compute: { module, entryPoint: entry },
    });
    if (log) Deno.writeTextFileSync(log, `${(performance.now() - start).toFixed(1)}\t${key}\n`, { append: true });
    this.#pipelines.set(key, pipeline);
    return pipeline;
  }
}
