/**
 * `deno task compile`: builds dist/mqar with the WGSL kernels embedded (`--include kernels`).
 * `deno compile` needs a `denort` runtime binary; without network access it must come from DENORT_BIN or Deno's cache.
 * When none is available we say so in one line instead of surfacing deno's download error.
 */

const root = new URL("../../", import.meta.url);
const out = Deno.args[0] ?? "dist/mqar";

function cachedDenort(): string | null {
  const home = Deno.env.get("DENO_DIR") ??
    (Deno.env.get("HOME") ? `${Deno.env.get("HOME")}/.cache/deno` : null);
  if (!home) return null;
  try {
    for (const entry of Deno.readDirSync(`${home}/dl`)) {
      if (entry.isDirectory && entry.name.startsWith("release")) {
        for (const f of Deno.readDirSync(`${home}/dl/${entry.name}`)) {
          if (f.name.startsWith("denort")) return `${home}/dl/${entry.name}/${f.name}`;
        }
      }
    }
  } catch {
    // no cache directory: fall through
  }
  return null;
}

const denort = Deno.env.get("DENORT_BIN");
if (denort) {
  try {
    Deno.statSync(denort);
  } catch {
    console.error(`compile: DENORT_BIN=${denort} does not exist; point it at a denort ${Deno.version.deno} binary.`);
    Deno.exit(1);
  }
} else if (!cachedDenort()) {
  console.error(
    `compile: no Deno runtime binary (denort ${Deno.version.deno}) is available offline. Download ` +
      `denort-${Deno.build.target}.zip for Deno ${Deno.version.deno} from the Deno releases on a connected machine, unzip ` +
      "it, and run again with DENORT_BIN=/path/to/denort deno task compile.",
  );
  Deno.exit(1);
}

const cmd = new Deno.Command(Deno.execPath(), {
  args: ["compile", "-A", "--include", "kernels", "--output", out, "main.ts"],
  cwd: root,
  stdout: "inherit",
  stderr: "piped",
});
const { code, stderr } = await cmd.output();
if (code !== 0) {
  const text = new TextDecoder().decode(stderr).trim().split("\n").filter((l) => !/^\s+at /.test(l));
  console.error(`compile: deno compile failed: ${text.slice(-3).join(" | ")}`);
  Deno.exit(code);
}
console.log(`compile: wrote ${out} (kernels embedded). Try: ${out} doctor`);
