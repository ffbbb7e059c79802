/**
 * JSON.parse that also rejects duplicate object keys (JSON.parse silently keeps the last one, so a config with "lr"
 * twice would run with whichever came last). Errors name the source, the key's path and its line.
 */

/** Text that is not the JSON a caller accepts: one line naming the source and the place. */
export class JsonInputError extends Error {
  override name = "JsonInputError";
  /** The message without the source prefix (for callers that name the source themselves). */
  constructor(readonly source: string, readonly detail: string, readonly line?: number) {
    super(`${source}${line ? `:${line}` : ""}: ${detail}`);
  }
}

/** Parses `text` as JSON; throws JsonInputError for a syntax error or a key that appears twice in one object. */
export function parseJsonStrict(text: string, source: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new JsonInputError(source, `not valid JSON (${(e as Error).message})`);
  }
  const duplicate = findDuplicateKey(text);
  if (duplicate) {
    throw new JsonInputError(
      source,
      `key ${JSON.stringify(duplicate.key)} appears twice in ${
        duplicate.path || "the top-level object"
      } (line ${duplicate.line}); give each field once`,
      duplicate.line,
    );
  }
  return value;
}

interface Duplicate {
  key: string;
  path: string;
  line: number;
}

/** Scans text that JSON.parse accepted; returns the first key repeated within one object, or null. */
export function findDuplicateKey(text: string): Duplicate | null {
  let i = 0;
  const skip = () => {
    while (i < text.length && (text[i] === " " || text[i] === "\t" || text[i] === "\n" || text[i] === "\r")) i++;
  };
  const lineAt = (pos: number) => {
    let line = 1;
    for (let k = 0; k < pos; k++) if (text.charCodeAt(k) === 10) line++;
    return line;
  };
  const readString = (): string => {
    const start = i;
    i++; // opening quote
    while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string): Duplicate | null => {
    skip();
    const c = text[i];
    if (c === "{") {
      i++;
      const seen = new Set<string>();
      skip();
      if (text[i] === "}") {
        i++;
        return null;
      }
      for (;;) {
        skip();
        const keyStart = i;
        const key = readString();
        const keyPath = path ? `${path}.${key}` : key;
        if (seen.has(key)) return { key, path: path || "", line: lineAt(keyStart) };
        seen.add(key);
        skip();
        i++; // colon
        const inner = value(keyPath);
        if (inner) return inner;
        skip();
        if (text[i++] === "}") return null; // else a comma
      }
    }
    if (c === "[") {
      i++;
      skip();
      if (text[i] === "]") {
        i++;
        return null;
      }
      for (let index = 0;; index++) {
        const inner = value(`${path}[${index}]`);
        if (inner) return inner;
        skip();
        if (text[i++] === "]") return null;
      }
    }
    if (c === '"') {
      readString();
      return null;
    }
    while (i < text.length && !",}] \t\r\n".includes(text[i])) i++; // number, true, false, null
    return null;
  };
  return value("");
}
