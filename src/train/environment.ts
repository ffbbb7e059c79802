/** What a result record needs to be reproducible: code version, Deno version, OS. */
import type { RunResult } from "./result.ts";

export const MQAR_VERSION = "0.1.0";

let cachedCommit: Promise<string | null> | undefined;

/** The git commit of this checkout (with "-dirty" when there are local changes), or null outside a git checkout. */
export function gitCommit(): Promise<string | null> {
  cachedCommit ??= (async () => {
    try {
      const cwd = new URL("../../", import.meta.url);
      if (cwd.protocol !== "file:") return null;
      const run = async (args: string[]) => {
        const out = await new Deno.Command("git", { args, cwd, stdout: "piped", stderr: "null" }).output();
        return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
      };
      const head = await run(["rev-parse", "HEAD"]);
      if (!head) return null;
      const dirty = await run(["status", "--porcelain", "--untracked-files=no"]);
      return dirty ? `${head}-dirty` : head;
    } catch {
      return null;
    }
  })();
  return cachedCommit;
}

export async function runEnvironment(): Promise<RunResult["env"]> {
  const denoNs = (globalThis as { Deno?: typeof Deno }).Deno;
  if (!denoNs) {
    // The page of `mqar serve`: no Deno, no git; the browser identifies itself instead.
    return {
      deno: "none (browser)",
      os: `browser: ${navigator.userAgent}`,
      gitCommit: null,
      mqarVersion: MQAR_VERSION,
    };
  }
  return {
    deno: Deno.version.deno,
    os: `${Deno.build.os}-${Deno.build.arch}`,
    gitCommit: await gitCommit(),
    mqarVersion: MQAR_VERSION,
  };
}
