/** An environment variable, or undefined where there is none to read (no env permission, or no Deno: a browser). */
export function optionalEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}
