/**
 * The `deno compile` binary's code path without a denort to build it: `deno compile --include kernels main.ts` embeds
 * the module graph and the included directories under one root, keeping their paths relative to the project, and the
 * binary's modules see `import.meta.url` inside that root. These tests rebuild that layout from only what the compile
 * task embeds (main.ts, src/, deno.json, the --include directories), run it from an unrelated working directory, and
 * check that every runtime file read through `import.meta.url` lands in an embedded path.
 */
import { dirname, join, relative } from "node:path";
import { assert, assertEquals } from "../_helpers/assert.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** The directories `deno task compile` passes to `--include` (read from src/cli/compile.ts, so they cannot drift). */
function includedDirs(): string[] {
  const source = Deno.readTextFileSync(join(ROOT, "src/cli/compile.ts"));
  const args = /args:\s*\[([^\]]*)\]/.exec(source)?.[1] ?? "";
  const words = [...args.matchAll(/"([^"]+)"/g)].map((m) => m[1]);
  const dirs = words.flatMap((w, i) => (w === "--include" ? [words[i + 1]] : []));
  assert(dirs.length > 0, "compile.ts passes no --include");
  return dirs;
}

function copyTree(from: string, to: string) {
  Deno.mkdirSync(to, { recursive: true });
  for (const e of Deno.readDirSync(from)) {
    if (e.isDirectory) copyTree(join(from, e.name), join(to, e.name));
    else if (e.isFile) Deno.copyFileSync(join(from, e.name), join(to, e.name));
  }
}

/** What the binary embeds, laid out as in its virtual file system (a root named after the binary). */
async function embeddedLayout(withIncludes = true): Promise<{ root: string; elsewhere: string; cleanup(): void }> {
  const tmp = await Deno.makeTempDir({ prefix: "mqar-compile-layout-" });
  const root = join(tmp, "deno-compile-mqar");
  copyTree(join(ROOT, "src"), join(root, "src"));
  for (const f of ["main.ts", "deno.json", "deno.lock"]) Deno.copyFileSync(join(ROOT, f), join(root, f));
  if (withIncludes) { for (const dir of includedDirs()) copyTree(join(ROOT, dir), join(root, dir)); }
  // npm packages are part of the binary too; link them rather than install them again.
  Deno.symlinkSync(join(ROOT, "node_modules"), join(root, "node_modules"));
  const elsewhere = join(tmp, "cwd");
  Deno.mkdirSync(elsewhere);
  return { root, elsewhere, cleanup: () => Deno.removeSync(tmp, { recursive: true }) };
}

async function mqar(root: string, cwd: string, args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", join(root, "deno.json"), join(root, "main.ts"), ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout), err: dec.decode(out.stderr) };
}

Deno.test("compile layout: every file src/ reads through import.meta.url is a module or under an --include dir", () => {
  const included = includedDirs();
  const problems: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      const path = join(dir, e.name);
      if (e.isDirectory) walk(path);
      else if (e.name.endsWith(".ts")) {
        const text = Deno.readTextFileSync(path);
        for (const m of text.matchAll(/new URL\(\s*"([^"]+)"\s*,\s*import\.meta\.url\s*\)/g)) {
          const target = relative(ROOT, join(dirname(path), m[1]));
          const isModule = /\.ts$/.test(target);
          const isRoot = target === "";
          const inIncluded = included.some((d) => target === d || target.startsWith(`${d}/`));
          // The project root is used only as a working directory (git describe, compile's own cwd).
          if (!isModule && !isRoot && !inIncluded) problems.push(`${relative(ROOT, path)}: ${m[1]} → ${target}`);
        }
      }
    }
  };
  walk(join(ROOT, "src"));
  assertEquals(problems, []);
  // Every kernel family the ops name exists in an included directory.
  const kernels = new Set([...Deno.readDirSync(join(ROOT, "kernels"))].map((e) => e.name));
  for (const e of Deno.readDirSync(join(ROOT, "src/ops"))) {
    const text = Deno.readTextFileSync(join(ROOT, "src/ops", e.name));
    for (const m of text.matchAll(/kernels\/([a-z_]+)\.wgsl/g)) assert(kernels.has(`${m[1]}.wgsl`), m[0]);
  }
});

Deno.test({
  name: "compile layout: the embedded tree finds its kernels from another working directory; without them it says so",
  sanitizeResources: false,
  async fn() {
    const full = await embeddedLayout();
    try {
      const doctor = await mqar(full.root, full.elsewhere, ["doctor", "--json"]);
      assertEquals(doctor.code, 0, doctor.err);
      assert(JSON.parse(doctor.out).matmul.maxAbsError < 1e-3, doctor.out);
      // A training run compiles most kernel families (embedding, layer norm, conv, linear attention, LM head, AdamW).
      const out = join(full.elsewhere, "run.json");
      const train = await mqar(full.root, full.elsewhere, [
        "train",
        "--mixer",
        "rebased",
        "--d-model",
        "16",
        "--seq-len",
        "16",
        "--kv-pairs",
        "2",
        "--vocab-size",
        "64",
        "--train-examples",
        "64",
        "--test-examples",
        "32",
        "--batch-size",
        "32",
        "--epochs",
        "1",
        "--out",
        out,
      ]);
      assertEquals(train.code, 0, train.err);
      assertEquals(JSON.parse(Deno.readTextFileSync(out)).config.mixer, "rebased");
    } finally {
      full.cleanup();
    }
    const bare = await embeddedLayout(false);
    try {
      const r = await mqar(bare.root, bare.elsewhere, ["doctor"]);
      assert(r.code !== 0, r.out);
      assert(/kernel source kernels\/matmul\.wgsl could not be read/.test(r.err), r.err);
    } finally {
      bare.cleanup();
    }
  },
});
