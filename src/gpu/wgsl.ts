/** Loads WGSL from `kernels/` and preprocesses it: injected constants and `#if`/`#else`/`#endif` blocks. */

export type Defines = Readonly<Record<string, number | boolean>>;

const kernelDir = new URL("../../kernels/", import.meta.url);

/** A kernel file is missing: a broken install (e.g. a binary compiled without `--include kernels`), not a bug. */
export class KernelSourceError extends Error {
  override name = "KernelSourceError";
}
const sourceCache = new Map<string, string>();

/**
 * Provides kernel sources up front, by name (without .wgsl): a browser has no file system, so the page of `mqar serve`
 * registers the files the server sent before it builds anything.
 */
export function registerKernelSources(sources: Readonly<Record<string, string>>): void {
  for (const [name, text] of Object.entries(sources)) sourceCache.set(name, text);
}

/**
 * Reads `kernels/<name>.wgsl` (once; or the registered source). Paths resolve against this module, so a `deno compile` binary built with
 * `--include kernels` reads them from its embedded file system.
 */
export function loadKernelSource(name: string): string {
  let src = sourceCache.get(name);
  if (src === undefined) {
    try {
      src = Deno.readTextFileSync(new URL(`${name}.wgsl`, kernelDir));
    } catch (e) {
      throw new KernelSourceError(
        `kernel source kernels/${name}.wgsl could not be read (${(e as Error).message}); a binary must be built ` +
          "with `deno task compile`, which embeds kernels/",
      );
    }
    sourceCache.set(name, src);
  }
  return src;
}

function formatConstant(value: number | boolean): string {
  if (typeof value === "boolean") return String(value);
  if (!Number.isFinite(value)) throw new Error(`WGSL constant must be finite, got ${value}`);
  if (Number.isInteger(value)) return String(value);
  const s = String(value);
  return s.includes(".") || s.includes("e") ? s : `${s}.0`;
}

/**
 * Preprocesses WGSL text:
 * - lines `#if NAME`, `#if !NAME`, `#else`, `#endif` keep or drop blocks (NAME is true when defined and not 0/false);
 * - every define becomes `const NAME = value;` at the top (abstract numeric constants adapt to i32/u32/f32 uses);
 * - `enables` become `enable X;` lines (e.g. f16).
 */
export function preprocessWgsl(source: string, defines: Defines = {}, enables: readonly string[] = []): string {
  const out: string[] = [];
  const stack: { active: boolean; taken: boolean; line: number }[] = [];
  const isActive = () => stack.every((s) => s.active);
  const lines = source.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const directive = line.trim().match(/^#(if|else|endif)\b\s*(!?)\s*([A-Za-z_][A-Za-z0-9_]*)?\s*$/);
    if (!directive) {
      if (line.trim().startsWith("#")) {
        throw new Error(`WGSL preprocessor: unknown directive at line ${i + 1}: ${line}`);
      }
      if (isActive()) out.push(line);
      continue;
    }
    const [, kind, negate, name] = directive;
    if (kind === "if") {
      if (!name) throw new Error(`WGSL preprocessor: #if without a name at line ${i + 1}`);
      const v = defines[name];
      const truthy = v !== undefined && v !== false && v !== 0;
      const cond = negate ? !truthy : truthy;
      stack.push({ active: cond, taken: cond, line: i + 1 });
    } else if (kind === "else") {
      const top = stack.at(-1);
      if (!top) throw new Error(`WGSL preprocessor: #else without #if at line ${i + 1}`);
      top.active = !top.taken;
      top.taken = true;
    } else {
      if (!stack.pop()) throw new Error(`WGSL preprocessor: #endif without #if at line ${i + 1}`);
    }
    out.push(""); // keep line numbers stable for compiler messages
  }
  if (stack.length) throw new Error(`WGSL preprocessor: #if at line ${stack.at(-1)!.line} is never closed`);
  const header = [
    ...enables.map((e) => `enable ${e};`),
    ...Object.entries(defines).map(([k, v]) => `const ${k} = ${formatConstant(v)};`),
  ];
  return [...header, ...out].join("\n");
}
