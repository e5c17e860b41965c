/**
 * Parses and checks a safetensors header: 8-byte little-endian JSON length, then a JSON object of
 * tensor entries `{dtype, shape, data_offsets}` relative to the end of the header. Every entry is
 * validated before any tensor byte is read, so a corrupt shard fails at planning time.
 *
 * @module
 */

/** Largest header we accept. safetensors itself caps headers at 100 MB; real ones are < 10 MB. */
export const MAX_HEADER_BYTES = 100_000_000;
/** Most dims a tensor may have here (ggml's GGML_MAX_DIMS). */
const MAX_DIMS = 4;

/** Bytes per element of each safetensors dtype Sluice understands. */
export const SAFETENSORS_DTYPE_BYTES = {
  F32: 4,
  F16: 2,
  BF16: 2,
} as const;

/** A safetensors dtype Sluice can read. */
export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPE_BYTES;

/** One tensor of one shard. Offsets are absolute within the file. */
export interface SafetensorsTensor {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  /** PyTorch order (outermost first). */
  readonly shape: readonly number[];
  readonly start: number;
  readonly end: number;
}

/** The parsed header of one shard. */
export interface SafetensorsHeader {
  readonly file: string;
  /** `__metadata__`, string values only. */
  readonly metadata: Readonly<Record<string, string>>;
  readonly tensors: readonly SafetensorsTensor[];
}

/** A safetensors file whose header or layout is wrong. */
export class SafetensorsError extends SyntaxError {
  readonly file: string;
  readonly tensor: string | null;
  constructor(file: string, tensor: string | null, message: string) {
    super(`${file}${tensor === null ? "" : ` (tensor ${tensor})`}: ${message}`);
    this.name = "SafetensorsError";
    this.file = file;
    this.tensor = tensor;
  }
}

/**
 * Reads the JSON length from the first 8 bytes and checks it against the file size.
 * @throws {SafetensorsError} when the length is absurd or runs past the end of the file.
 */
export function headerLength(file: string, prefix: Uint8Array, fileSize: number): number {
  if (prefix.length < 8 || fileSize < 8) {
    throw new SafetensorsError(file, null, `Cannot read header as the file is ${fileSize} bytes`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(file, null, `Cannot read header of ${n} bytes (limit 100 MB)`);
  }
  if (8n + n > BigInt(fileSize)) {
    throw new SafetensorsError(
      file,
      null,
      `Cannot read header as its length ${n} runs past the end of the file (${fileSize} bytes)`,
    );
  }
  return Number(n);
}

function _isDim(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Parses the JSON header and validates every entry against the file size.
 * @param json the header bytes (without the 8-byte prefix)
 * @throws {SafetensorsError} naming the file and tensor for bad JSON, an unknown dtype, a shape
 *   whose element count does not match its byte range, or ranges that overlap or leave the file.
 */
export function parseSafetensorsHeader(
  file: string,
  json: Uint8Array,
  fileSize: number,
): SafetensorsHeader {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json));
  } catch (e) {
    throw new SafetensorsError(file, null, `Cannot parse header JSON: ${(e as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new SafetensorsError(file, null, "Cannot parse header as it is not a JSON object");
  }
  const dataStart = 8 + json.length;
  const dataBytes = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const tensors: SafetensorsTensor[] = [];
  for (const [name, entry] of Object.entries(parsed)) {
    if (name === "__metadata__") {
      if (typeof entry === "object" && entry !== null) {
        for (const [k, v] of Object.entries(entry)) if (typeof v === "string") metadata[k] = v;
      }
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== "object" || e === null) {
      throw new SafetensorsError(file, name, "Cannot read tensor entry as it is not an object");
    }
    if (typeof e.dtype !== "string" || !(e.dtype in SAFETENSORS_DTYPE_BYTES)) {
      throw new SafetensorsError(
        file,
        name,
        `Cannot read dtype ${JSON.stringify(e.dtype)}: supported are ${
          Object.keys(SAFETENSORS_DTYPE_BYTES).join(", ")
        }`,
      );
    }
    const dtype = e.dtype as SafetensorsDtype;
    if (!Array.isArray(e.shape) || !e.shape.every(_isDim) || e.shape.length > MAX_DIMS) {
      throw new SafetensorsError(file, name, `Cannot read shape ${JSON.stringify(e.shape)}`);
    }
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(_isDim) || offs[0]! > offs[1]!) {
      throw new SafetensorsError(file, name, `Cannot read data_offsets ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    if (end > dataBytes) {
      throw new SafetensorsError(
        file,
        name,
        `Cannot read bytes ${begin}..${end} as the data section has only ${dataBytes} bytes ` +
          `(file truncated?)`,
      );
    }
    const elements = (e.shape as number[]).reduce((a, b) => a * b, 1);
    if (elements * SAFETENSORS_DTYPE_BYTES[dtype] !== end - begin) {
      throw new SafetensorsError(
        file,
        name,
        `Cannot read shape [${e.shape}] ${dtype} (${
          elements * SAFETENSORS_DTYPE_BYTES[dtype]
        } bytes) from a range of ${end - begin} bytes`,
      );
    }
    tensors.push({
      name,
      dtype,
      shape: e.shape as number[],
      start: dataStart + begin,
      end: dataStart + end,
    });
  }
  const sorted = [...tensors].sort((a, b) => a.start - b.start || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!, cur = sorted[i]!;
    if (cur.start < prev.end) {
      throw new SafetensorsError(
        file,
        cur.name,
        `Cannot read tensor as its bytes overlap tensor ${prev.name}`,
      );
    }
  }
  return { file, metadata, tensors };
}
