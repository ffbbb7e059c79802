/** mqar-bench command-line entry point: `mqar <command> [flags]`. */
import { type Command, UsageError } from "./src/cli/_common.ts";
import { GpuUnavailableError } from "./src/gpu/device.ts";
import { COMMANDS } from "./src/cli/commands.ts";

function help(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "mqar-bench: train and evaluate sequence mixers on Multi-Query Associative Recall, on WebGPU.",
    "",
    "Usage: mqar <command> [flags]      (deno task mqar <command> ...)",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Run `mqar <command> --help` for the flags of one command.",
  ].join("\n");
}

export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    console.log(help());
    return name ? 0 : 2;
  }
  const command: Command | undefined = COMMANDS.find((c) => c.name === name);
  if (!command) {
    console.error(`mqar: unknown command "${name}"; valid commands: ${COMMANDS.map((c) => c.name).join(", ")}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(command.usage);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`mqar ${name}: ${e.message}`);
      return 2;
    }
    if (e instanceof GpuUnavailableError) {
      console.error(e.message);
      return 1;
    }
    // Errors whose class says they are about user input (config/data validation, unusable paths, a config too large
    // for the adapter) print without a stack.
    if (
      e instanceof Error &&
      /ConfigError|ValidationError|InputError|OutputPathError|TooLargeError|KernelSourceError/.test(e.name)
    ) {
      console.error(`mqar ${name}: ${e.message}`);
      return 2;
    }
    throw e;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
