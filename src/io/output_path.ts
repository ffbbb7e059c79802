/**
 * Output paths checked before any work: a command that trains for an hour must not find out at the end that its
 * `--out` is a directory, a device or an unwritable place. Each check names the flag, the path and what is allowed.
 */
import { dirname, resolve } from "node:path";

/** An output path that cannot be used: printed as one line by the CLI, exit code 2. */
export class OutputPathError extends Error {
  override name = "OutputPathError";
}

async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    // NotADirectory: an ancestor is a file; the ancestor walk reports it.
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
    throw e;
  }
}

/** "a directory", "a character device", ... for messages. */
export function describeKind(info: Deno.FileInfo): string {
  if (info.isFile) return "a regular file";
  if (info.isDirectory) return "a directory";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  if (info.isFifo) return "a named pipe";
  if (info.isSocket) return "a socket";
  return "not a regular file";
}

/** Creates and removes a probe file in `dir`, so an unwritable directory fails now rather than after the work. */
async function probeWritable(flag: string, path: string, dir: string): Promise<void> {
  const probe = `${dir}/.mqar-write-check-${Deno.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    const f = await Deno.open(probe, { write: true, createNew: true });
    f.close();
  } catch (e) {
    throw new OutputPathError(
      `${flag}: "${path}": cannot create files in ${dir} (${(e as Error).message.replace(/:.*$/, "")}); ` +
        `choose a writable location`,
    );
  }
  await Deno.remove(probe).catch(() => {});
}

/** The nearest existing ancestor of `path` must be a writable directory (the rest is created on demand). */
async function checkCreatable(flag: string, path: string, start: string): Promise<void> {
  let dir = resolve(start);
  for (;;) {
    const info = await statOrNull(dir);
    if (info) {
      if (!info.isDirectory) {
        throw new OutputPathError(
          `${flag}: "${path}": ${dir} is ${describeKind(info)}, not a directory, so nothing can be created under it`,
        );
      }
      return await probeWritable(flag, path, dir);
    }
    const parent = dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}

export interface OutputFileOptions {
  /**
   * Called when `path` already exists as a regular file: returns null when replacing it loses nothing the user wants
   * (e.g. an earlier output of the same kind), else the reason it must be kept (the check then fails with it).
   */
  existing?: (path: string) => Promise<string | null>;
}

/**
 * Checks that `path` can be written as a regular file (through a temporary file and a rename in its directory).
 * Returns whether it exists already.
 */
export async function checkOutputFile(flag: string, path: string, opts: OutputFileOptions = {}): Promise<boolean> {
  if (path === "" || path.endsWith("/")) {
    throw new OutputPathError(`${flag}: "${path}": expected a file path, not a directory`);
  }
  const info = await statOrNull(path);
  if (info && !info.isFile) {
    throw new OutputPathError(`${flag}: "${path}" is ${describeKind(info)}; expected a regular file path`);
  }
  if (info && opts.existing) {
    const keep = await opts.existing(path);
    if (keep) {
      throw new OutputPathError(`${flag}: "${path}" exists and ${keep}; choose another path or move it away first`);
    }
  }
  await checkCreatable(flag, path, dirname(path));
  return info !== null;
}

/** Checks that `path` is (or can be created as) a writable directory. */
export async function checkOutputDir(flag: string, path: string): Promise<void> {
  const info = await statOrNull(path);
  if (info && !info.isDirectory) {
    throw new OutputPathError(
      `${flag}: "${path}" is ${describeKind(info)}; expected a directory (it is created if missing)`,
    );
  }
  await checkCreatable(flag, path, info ? path : dirname(path));
}
