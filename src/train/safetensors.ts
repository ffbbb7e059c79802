/**
 * The safetensors format (F32 only), written and read without dependencies, plus the mapping between our parameter
 * maps and the reference PyTorch state_dict.
 *
 * Layout: u64 little-endian N | N bytes of UTF-8 JSON header, space-padded so the data starts 8-byte aligned |
 * tensor bytes. The header maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the
 * start of the data section) and may carry "__metadata__": a string-to-string map.
 */
import { writeBytesAtomic } from "../io/atomic.ts";
import type { ModelConfig } from "../model/config.ts";
import { LM_HEAD, numel, paramSpec, stateDictExtras, TIE_METADATA, WORD_EMBEDDINGS } from "../model/param_spec.ts";

export interface TensorData {
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsContents {
  tensors: Map<string, TensorData>;
  metadata: Record<string, string>;
}

/** A malformed or unexpected checkpoint: the message says which file/tensor and what was expected. */
export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

const METADATA_KEY = "__metadata__";
const HEADER_ALIGN = 8;
/** Same cap as the reference implementation: refuses absurd header lengths before allocating. */
const MAX_HEADER_BYTES = 100_000_000;
const F32_BYTES = 4;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** Serialises tensors (in map order) and metadata to safetensors bytes. */
export function encodeSafetensors(
  tensors: ReadonlyMap<string, TensorData>,
  metadata: Readonly<Record<string, string>> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== "string") {
      throw new SafetensorsError(`metadata "${key}" must be a string, got ${typeof value}`);
    }
  }
  if (Object.keys(metadata).length > 0) header[METADATA_KEY] = { ...metadata };
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === METADATA_KEY) throw new SafetensorsError(`tensor name "${METADATA_KEY}" is reserved`);
    if (!t.shape.every((n) => Number.isSafeInteger(n) && n >= 0)) {
      throw new SafetensorsError(`tensor ${name}: shape ${shapeText(t.shape)} must hold non-negative integers`);
    }
    if (numel(t.shape) !== t.data.length) {
      throw new SafetensorsError(
        `tensor ${name}: shape ${shapeText(t.shape)} has ${numel(t.shape)} elements but the data has ${t.data.length}`,
      );
    }
    const end = offset + t.data.length * F32_BYTES;
    header[name] = { dtype: "F32", shape: [...t.shape], data_offsets: [offset, end] };
    offset = end;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLen = Math.ceil((8 + json.length) / HEADER_ALIGN) * HEADER_ALIGN - 8;
  const bytes = new Uint8Array(8 + headerLen + offset);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(headerLen), true);
  bytes.set(json, 8);
  bytes.fill(0x20, 8 + json.length, 8 + headerLen);
  let at = 8 + headerLen;
  for (const t of tensors.values()) {
    writeF32(bytes, at, t.data);
    at += t.data.length * F32_BYTES;
  }
  return bytes;
}

function writeF32(bytes: Uint8Array, at: number, data: Float32Array): void {
  if (LITTLE_ENDIAN_HOST) {
    bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
    return;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  for (let i = 0; i < data.length; i++) view.setFloat32(at + i * F32_BYTES, data[i], true);
}

function readF32(bytes: Uint8Array, begin: number, end: number): Float32Array {
  // Copy: the data section need not be 4-byte aligned in files from other writers.
  if (LITTLE_ENDIAN_HOST) return new Float32Array(bytes.slice(begin, end).buffer);
  const out = new Float32Array((end - begin) / F32_BYTES);
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(begin + i * F32_BYTES, true);
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Parses and validates safetensors bytes; `source` names the file in errors. */
export function decodeSafetensors(bytes: Uint8Array, source = "safetensors data"): SafetensorsContents {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${source}: ${msg}`);
  };
  if (bytes.length < 8) fail(`truncated: ${bytes.length} bytes, shorter than the 8-byte header length field`);
  const headerLen64 = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
  if (headerLen64 > BigInt(MAX_HEADER_BYTES)) fail(`header length ${headerLen64} exceeds ${MAX_HEADER_BYTES} bytes`);
  const headerLen = Number(headerLen64);
  if (8 + headerLen > bytes.length) {
    fail(`truncated: header length is ${headerLen} bytes but only ${bytes.length - 8} bytes follow the length field`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    return fail("header is not valid UTF-8");
  }
  if (!text.startsWith("{")) {
    fail(`header must be a JSON object starting with "{", got ${JSON.stringify(text.slice(0, 20))}`);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    return fail(`header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(header)) return fail("header must be a JSON object");

  const metadata: Record<string, string> = {};
  if (METADATA_KEY in header) {
    const raw = header[METADATA_KEY];
    if (!isPlainObject(raw)) return fail(`"${METADATA_KEY}" must be an object of strings`);
    for (const [k, v] of Object.entries(raw)) {
      if (typeof v !== "string") fail(`"${METADATA_KEY}"."${k}" must be a string, got ${JSON.stringify(v)}`);
      metadata[k] = v as string;
    }
  }

  const dataStart = 8 + headerLen, dataLen = bytes.length - dataStart;
  const spans: { name: string; begin: number; end: number; shape: number[] }[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === METADATA_KEY) continue;
    if (!isPlainObject(entry)) return fail(`tensor ${name}: entry must be an object with dtype, shape, data_offsets`);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (dtype !== "F32") fail(`tensor ${name}: unsupported dtype ${JSON.stringify(dtype)} (only "F32" is supported)`);
    if (!Array.isArray(shape) || !shape.every((n) => Number.isSafeInteger(n) && n >= 0)) {
      return fail(`tensor ${name}: shape ${JSON.stringify(shape)} must be an array of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((n) => Number.isSafeInteger(n) && n >= 0)
    ) {
      return fail(`tensor ${name}: data_offsets ${JSON.stringify(offsets)} must be two non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataLen) {
      fail(`tensor ${name}: data_offsets [${begin}, ${end}] out of range (data section is ${dataLen} bytes)`);
    }
    const expected = numel(shape) * F32_BYTES;
    if (end - begin !== expected) {
      fail(
        `tensor ${name}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but F32 ${
          shapeText(shape)
        } needs ${expected}`,
      );
    }
    spans.push({ name, begin, end, shape });
  }

  // The format requires the tensors to tile the data section exactly: no overlaps, holes or trailing bytes.
  const sorted = [...spans].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0, previous = "";
  for (const s of sorted) {
    if (s.begin < covered) {
      fail(`tensor ${s.name}: data overlaps tensor ${previous} (starts at ${s.begin} < ${covered})`);
    }
    if (s.begin > covered) fail(`data bytes [${covered}, ${s.begin}) before tensor ${s.name} belong to no tensor`);
    covered = s.end;
    previous = s.name;
  }
  if (covered !== dataLen) fail(`data section has ${dataLen} bytes but the tensors cover only ${covered}`);

  const tensors = new Map<string, TensorData>();
  for (const s of spans) {
    tensors.set(s.name, { shape: s.shape, data: readF32(bytes, dataStart + s.begin, dataStart + s.end) });
  }
  return { tensors, metadata };
}

/**
 * Writes a safetensors file atomically: the bytes go to a temporary file in the same directory, which is flushed and
 * then renamed over `path`, so readers see either the old file or the complete new one.
 */
export async function writeSafetensors(
  path: string,
  tensors: ReadonlyMap<string, TensorData>,
  metadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  await writeBytesAtomic(path, encodeSafetensors(tensors, metadata));
}

/** Reads and validates a safetensors file. */
export async function readSafetensors(path: string): Promise<SafetensorsContents> {
  return decodeSafetensors(await Deno.readFile(path), path);
}

/**
 * Our parameters as the reference state_dict (same names, PyTorch shapes). The data arrays are shared, not copied.
 * The tied LM head is not stored; the metadata records the tie.
 */
export function toStateDict(
  cfg: ModelConfig,
  params: ReadonlyMap<string, Float32Array>,
): SafetensorsContents {
  const spec = paramSpec(cfg);
  const tensors = new Map<string, TensorData>();
  for (const entry of spec) {
    const data = params.get(entry.name);
    if (!data) throw new SafetensorsError(`toStateDict: missing parameter ${entry.name} for mixer ${cfg.mixer}`);
    if (data.length !== numel(entry.shape)) {
      throw new SafetensorsError(
        `toStateDict: parameter ${entry.name} has ${data.length} elements, expected ${numel(entry.shape)} ` +
          `(shape ${shapeText(entry.shape)})`,
      );
    }
    tensors.set(entry.name, { shape: [...entry.shape], data });
  }
  const known = new Set(spec.map((e) => e.name));
  for (const name of params.keys()) {
    if (!known.has(name)) throw new SafetensorsError(`toStateDict: ${name} is not a parameter of mixer ${cfg.mixer}`);
  }
  // Copies of shared parameters and fixed buffers, as PyTorch's state_dict lists them.
  for (const extra of stateDictExtras(cfg)) {
    const data = "alias" in extra ? params.get(extra.alias)! : extra.values;
    tensors.set(extra.name, { shape: [...extra.shape], data });
  }
  return { tensors, metadata: { ...TIE_METADATA } };
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

/**
 * Checks a loaded state_dict against the model's spec and returns its parameters by name (in spec order). Accepts an
 * `lm_head.weight` only if it is bit-identical to the word embeddings (the head is tied); rejects anything else that is
 * not a parameter of this mixer, which catches a checkpoint of another mixer or size.
 */
export function fromStateDict(
  cfg: ModelConfig,
  tensors: ReadonlyMap<string, TensorData>,
  metadata: Readonly<Record<string, string>> = {},
): Map<string, Float32Array> {
  const spec = paramSpec(cfg);
  if (metadata.tied !== undefined && metadata.tied !== TIE_METADATA.tied) {
    throw new SafetensorsError(
      `checkpoint metadata tied=${JSON.stringify(metadata.tied)} but this model ties ${TIE_METADATA.tied}`,
    );
  }
  const params = new Map<string, Float32Array>();
  for (const entry of spec) {
    const t = tensors.get(entry.name);
    if (!t) {
      throw new SafetensorsError(
        `checkpoint is missing tensor ${entry.name} (expected shape ${shapeText(entry.shape)} for mixer ${cfg.mixer})`,
      );
    }
    if (t.shape.length !== entry.shape.length || t.shape.some((n, i) => n !== entry.shape[i])) {
      throw new SafetensorsError(
        `tensor ${entry.name} has shape ${shapeText(t.shape)}, expected ${shapeText(entry.shape)} ` +
          `(mixer ${cfg.mixer}, dModel ${cfg.dModel}, seqLen ${cfg.seqLen}, vocabSize ${cfg.vocabSize})`,
      );
    }
    if (t.data.length !== numel(entry.shape)) {
      throw new SafetensorsError(`tensor ${entry.name}: ${t.data.length} values for shape ${shapeText(t.shape)}`);
    }
    params.set(entry.name, t.data);
  }
  const head = tensors.get(LM_HEAD);
  if (head) {
    const word = params.get(WORD_EMBEDDINGS)!, wordShape = spec.find((e) => e.name === WORD_EMBEDDINGS)!.shape;
    if (head.shape.length !== 2 || head.shape[0] !== wordShape[0] || head.shape[1] !== wordShape[1]) {
      throw new SafetensorsError(
        `${LM_HEAD} has shape ${shapeText(head.shape)} but is tied to ${WORD_EMBEDDINGS} ${shapeText(wordShape)}`,
      );
    }
    if (!sameBits(head.data, word)) {
      throw new SafetensorsError(
        `${LM_HEAD} differs from ${WORD_EMBEDDINGS}: this model ties the LM head to the word embeddings ` +
          `and cannot load an untied head`,
      );
    }
  }
  // PyTorch's copies of a shared parameter must equal it; its fixed buffers must be the ones this model computes.
  const extras = new Map(stateDictExtras(cfg).map((e) => [e.name, e]));
  for (const [name, extra] of extras) {
    const t = tensors.get(name);
    if (!t) continue;
    if (t.shape.length !== extra.shape.length || t.shape.some((n, i) => n !== extra.shape[i])) {
      throw new SafetensorsError(`tensor ${name} has shape ${shapeText(t.shape)}, expected ${shapeText(extra.shape)}`);
    }
    if ("alias" in extra && !sameBits(t.data, params.get(extra.alias)!)) {
      throw new SafetensorsError(`${name} differs from ${extra.alias}: they are one shared parameter`);
    }
    if ("values" in extra && t.data.some((v, i) => Math.abs(v - extra.values[i]) > 1e-6 * Math.max(1, Math.abs(v)))) {
      throw new SafetensorsError(`${name} holds other values than the fixed buffer this model computes`);
    }
  }
  const unexpected = [...tensors.keys()].filter((name) => name !== LM_HEAD && !params.has(name) && !extras.has(name));
  if (unexpected.length > 0) {
    const shown = unexpected.slice(0, 5).join(", ") +
      (unexpected.length > 5 ? `, ... (${unexpected.length} in all)` : "");
    throw new SafetensorsError(
      `checkpoint has tensors that are not parameters of mixer ${cfg.mixer}: ${shown} (is it for another mixer?)`,
    );
  }
  return params;
}

/** Null when `path` holds a safetensors checkpoint (replacing it with a new one is what --save asks for); else why not. */
export async function notACheckpoint(path: string): Promise<string | null> {
  const file = await Deno.open(path, { read: true });
  try {
    const size = (await file.stat()).size;
    if (size === 0) return null;
    const head = new Uint8Array(Math.min(size, 8 + MAX_HEADER_BYTES));
    let got = 0;
    while (got < head.length) {
      const n = await file.read(head.subarray(got));
      if (n === null) break;
      got += n;
    }
    if (got < 8) return "is not a safetensors checkpoint";
    const headerLen = Number(new DataView(head.buffer).getBigUint64(0, true));
    if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > got) return "is not a safetensors checkpoint";
    try {
      const header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(head.subarray(8, 8 + headerLen)));
      return isPlainObject(header) ? null : "is not a safetensors checkpoint";
    } catch {
      return "is not a safetensors checkpoint";
    }
  } finally {
    file.close();
  }
}
