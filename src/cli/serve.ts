/**
 * `mqar serve`: a local page that trains MQAR in the browser's WebGPU with this checkout's own modules and kernels
 * (src/serve/app.ts, bundled here at start with `deno bundle`; the WGSL files are sent as they are).
 */
import { join } from "node:path";
import { type Command, numberFlag, parseFlags, UsageError } from "./_common.ts";
import { runningUnderDenoCli } from "./_flag_values.ts";
import { pageHtml } from "../serve/page.ts";

const USAGE = `Usage: mqar serve [--port N] [--host ADDRESS]

Serves a page that trains a small MQAR in the browser's WebGPU with the same WGSL kernels, model graph, trainer and
validation as the CLI: pick mixer, d, L, pairs, lr and seeds; live loss/accuracy curves and tokens/s; the runs export as
the result records \`mqar train\` writes (\`mqar report --results FILE\` reads them).

  --port N        port (default 8765; 0 picks a free one)
  --host ADDRESS  interface to listen on (default 127.0.0.1: this machine only)

Browsers: Chrome/Edge 113+, Safari 26+, Firefox 141+ (Windows) offer WebGPU. On a machine without a GPU, Chromium needs
--enable-unsafe-webgpu (it then uses SwiftShader); add ?compat to the URL for adapters that only offer compatibility
mode.`;

const ROOT = new URL("../../", import.meta.url);
const KERNELS = new URL("../../kernels/", import.meta.url);

/** Bundles the page's script for the browser; needs the deno that runs this checkout (not a compiled binary). */
async function bundleApp(): Promise<string> {
  const exe = Deno.execPath();
  if (!runningUnderDenoCli()) {
    throw new UsageError("serve bundles the page from the source checkout: run it with `deno task mqar serve`");
  }
  const dir = await Deno.makeTempDir({ prefix: "mqar-serve-" });
  try {
    const out = join(dir, "app.js");
    const r = await new Deno.Command(exe, {
      args: ["bundle", "--quiet", "--platform", "browser", "-o", out, new URL("src/serve/app.ts", ROOT).pathname],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) {
      const text = new TextDecoder().decode(r.stderr).trim().split("\n").filter((l) => !/^\s+at /.test(l));
      throw new Error(`serve: bundling the page failed: ${text.slice(-3).join(" | ")}`);
    }
    return await Deno.readTextFile(out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function kernelSources(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const e of Deno.readDir(KERNELS)) {
    if (e.isFile && e.name.endsWith(".wgsl")) {
      out[e.name.slice(0, -5)] = await Deno.readTextFile(new URL(e.name, KERNELS));
    }
  }
  return out;
}

export interface PageServer {
  url: string;
  close(): Promise<void>;
}

export async function startPageServer(opts: { port?: number; host?: string } = {}): Promise<PageServer> {
  const [app, kernels] = await Promise.all([bundleApp(), kernelSources()]);
  const html = pageHtml(), kernelsJson = JSON.stringify(kernels);
  const host = opts.host ?? "127.0.0.1";
  const types: Record<string, [string, string]> = {
    "/": [html, "text/html; charset=utf-8"],
    "/index.html": [html, "text/html; charset=utf-8"],
    "/app.js": [app, "text/javascript; charset=utf-8"],
    "/kernels.json": [kernelsJson, "application/json"],
  };
  let listening!: (addr: Deno.NetAddr) => void;
  const ready = new Promise<Deno.NetAddr>((r) => listening = r);
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({
      hostname: host,
      port: opts.port ?? 8765,
      onListen: (addr) => listening(addr as Deno.NetAddr),
    }, (req) => {
      const hit = types[new URL(req.url).pathname];
      if (!hit || req.method !== "GET") return new Response("not found", { status: 404 });
      return new Response(hit[0], { headers: { "content-type": hit[1], "cache-control": "no-store" } });
    });
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new UsageError(`--port: got ${opts.port}, which is in use; choose another (or 0 for a free one)`);
    }
    if (e instanceof Deno.errors.AddrNotAvailable || e instanceof Deno.errors.PermissionDenied) {
      throw new UsageError(`--host: got "${host}", which this machine cannot listen on (${(e as Error).message})`);
    }
    throw e;
  }
  const addr = await ready;
  const shown = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return { url: `http://${shown}:${addr.port}/`, close: () => server.shutdown() };
}

export const serveCommand: Command = {
  name: "serve",
  summary: "a local page that trains MQAR in the browser's WebGPU with the same kernels; exports result records",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("serve", args, { port: { type: "string" }, host: { type: "string" } });
    const port = numberFlag("port", values.port, { integer: true, min: 0, max: 65535 });
    if (values.host !== undefined && !values.host.trim()) throw new UsageError(`--host: got "", expected an address`);
    const server = await startPageServer({ port, host: values.host });
    console.log(`mqar serve: ${server.url} (Ctrl-C stops)`);
    if (values.host && !/^(127\.|localhost$|::1$)/.test(values.host)) {
      console.error(`warning: listening on ${values.host}: other machines can reach this page`);
    }
    await new Promise(() => {});
    return 0;
  },
};
