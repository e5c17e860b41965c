/**
 * Writes safetensors files for test fixtures: one file, or a sharded set with
 * `model.safetensors.index.json` the way `transformers`' `save_pretrained` lays it out.
 *
 * Tensors are declared first (name, dtype, shape) and their values are pulled one piece at a time
 * while writing, so a multi-gigabyte model never has to sit in memory. Values come as float32 and
 * are rounded to the stored dtype with round-to-nearest-even.
 *
 * File layout: an 8-byte little-endian header length, a JSON header (`__metadata__` and one
 * `{dtype, shape, data_offsets}` entry per tensor, padded with spaces to a multiple of 8 bytes),
 * then the tensor bytes back to back in declaration order.
 *
 * @module
 */
import { f32ToBf16Bits, f32ToF16Bits } from "./half_floats.ts";

/** A dtype the fixtures can store. */
export type SafetensorsDtype = "F32" | "F16" | "BF16";

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = { F32: 4, F16: 2, BF16: 2 };

/** One tensor to write. */
export interface SafetensorsEntry {
  /** Tensor name, e.g. `model.layers.0.self_attn.q_proj.weight`. */
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  /** Dimensions, outermost first (PyTorch order). */
  readonly shape: readonly number[];
  /**
   * Row-major float32 values: the whole tensor, or a function that yields it in consecutive pieces
   * when the writer reaches this tensor.
   */
  readonly data: Float32Array | (() => Iterable<Float32Array>);
}

/** Options for {@linkcode writeSafetensors}. */
export interface WriteSafetensorsOptions {
  /** String pairs for the header's `__metadata__`. @default {format: "pt"} */
  metadata?: Readonly<Record<string, string>>;
}

/** Options for {@linkcode writeSafetensorsModel}. */
export interface WriteSafetensorsModelOptions extends WriteSafetensorsOptions {
  /**
   * Largest shard in tensor bytes. Tensors are packed greedily in order, and a tensor larger than
   * this gets a shard of its own. Without it everything goes to `model.safetensors`.
   */
  maxShardBytes?: number;
}

/** Bytes buffered before each write to the file. */
const WRITE_BUFFER_BYTES = 1 << 20;

/** Number of elements of a shape (1 for a scalar). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Stored bytes of one entry. */
export function entryBytes(entry: Pick<SafetensorsEntry, "dtype" | "shape">): number {
  return elementCount(entry.shape) * DTYPE_BYTES[entry.dtype];
}

function _checkEntries(entries: readonly SafetensorsEntry[]): void {
  const names = new Set<string>();
  for (const e of entries) {
    if (e.name === "__metadata__" || names.has(e.name)) {
      throw new TypeError(`Cannot write tensor ${e.name} as the name is taken`);
    }
    names.add(e.name);
    for (const d of e.shape) {
      if (!Number.isSafeInteger(d) || d < 0) {
        throw new RangeError(`Cannot write tensor ${e.name} as its shape [${e.shape}] is invalid`);
      }
    }
  }
}

/** The header bytes: length prefix, JSON, space padding to a multiple of 8. */
function _header(
  entries: readonly SafetensorsEntry[],
  metadata: Readonly<Record<string, string>>,
): Uint8Array {
  const json: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const e of entries) {
    const size = entryBytes(e);
    json[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  const text = new TextEncoder().encode(JSON.stringify(json));
  const padded = Math.ceil(text.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(text, 8);
  return out;
}

function _encode(values: Float32Array, dtype: SafetensorsDtype): Uint8Array {
  switch (dtype) {
    case "F32":
      return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    case "F16":
      return new Uint8Array(f32ToF16Bits(values).buffer);
    case "BF16":
      return new Uint8Array(f32ToBf16Bits(values).buffer);
  }
}

/** Collects small writes into one buffer so that the file sees few large writes. */
class _BufferedFile {
  readonly #file: Deno.FsFile;
  readonly #buf = new Uint8Array(WRITE_BUFFER_BYTES);
  #used = 0;

  constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.#used + bytes.length > this.#buf.length) await this.flush();
    if (bytes.length >= this.#buf.length) {
      await _writeAll(this.#file, bytes);
      return;
    }
    this.#buf.set(bytes, this.#used);
    this.#used += bytes.length;
  }

  async flush(): Promise<void> {
    await _writeAll(this.#file, this.#buf.subarray(0, this.#used));
    this.#used = 0;
  }
}

async function _writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

/**
 * Writes one safetensors file.
 *
 * @param path Output file, replaced if it exists.
 * @param tensors Tensors in file order.
 * @returns The file size in bytes.
 * @throws {TypeError} for a duplicate tensor name.
 * @throws {RangeError} for an invalid shape, or when a tensor's pieces hold more or fewer values
 *   than its shape declares.
 *
 * @example Round trip of one tensor
 * ```ts
 * import { deepStrictEqual as assertEquals } from "node:assert/strict";
 * import { writeSafetensors } from "./safetensors_writer.ts";
 * const path = await Deno.makeTempFile({ suffix: ".safetensors" });
 * const size = await writeSafetensors(path, [
 *   { name: "w", dtype: "BF16", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
 * ]);
 * assertEquals(size, (await Deno.stat(path)).size);
 * ```
 */
export async function writeSafetensors(
  path: string,
  tensors: Iterable<SafetensorsEntry>,
  options: WriteSafetensorsOptions = {},
): Promise<number> {
  const entries = [...tensors];
  _checkEntries(entries);
  const header = _header(entries, options.metadata ?? { format: "pt" });
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const out = new _BufferedFile(file);
  await out.write(header);
  let size = header.length;
  for (const e of entries) {
    const expected = elementCount(e.shape);
    let written = 0;
    const pieces = e.data instanceof Float32Array ? [e.data] : e.data();
    for (const piece of pieces) {
      written += piece.length;
      if (written > expected) break;
      await out.write(_encode(piece, e.dtype));
    }
    if (written !== expected) {
      throw new RangeError(
        `Cannot write tensor ${e.name} as its data holds ${written}${
          written > expected ? " or more" : ""
        } values but shape [${e.shape}] declares ${expected}`,
      );
    }
    size += expected * DTYPE_BYTES[e.dtype];
  }
  await out.flush();
  return size;
}

/** Splits entries into shards greedily, in order. */
function _shards(entries: readonly SafetensorsEntry[], maxBytes: number): SafetensorsEntry[][] {
  const shards: SafetensorsEntry[][] = [];
  let current: SafetensorsEntry[] = [];
  let currentBytes = 0;
  for (const e of entries) {
    const size = entryBytes(e);
    if (current.length > 0 && currentBytes + size > maxBytes) {
      shards.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(e);
    currentBytes += size;
  }
  if (current.length > 0) shards.push(current);
  return shards;
}

/**
 * Writes a model's weights into a folder: `model.safetensors`, or, when `maxShardBytes` splits
 * them, `model-0000i-of-0000n.safetensors` files plus `model.safetensors.index.json`
 * (`metadata.total_size` and a `weight_map` from tensor name to file).
 *
 * @param dir Existing folder.
 * @param tensors Tensors in file order.
 * @returns The file names written, index last when there is one.
 * @throws {RangeError} for a `maxShardBytes` that is not a positive integer, and as
 *   {@linkcode writeSafetensors} does.
 */
export async function writeSafetensorsModel(
  dir: string,
  tensors: Iterable<SafetensorsEntry>,
  options: WriteSafetensorsModelOptions = {},
): Promise<string[]> {
  const entries = [...tensors];
  _checkEntries(entries);
  const max = options.maxShardBytes ?? Infinity;
  if (!(max === Infinity || (Number.isSafeInteger(max) && max > 0))) {
    throw new RangeError(`Cannot shard a model as maxShardBytes ${max} is not a positive integer`);
  }
  const fileOptions: WriteSafetensorsOptions = options.metadata === undefined
    ? {}
    : { metadata: options.metadata };
  const shards = _shards(entries, max);
  if (shards.length <= 1) {
    await writeSafetensors(`${dir}/model.safetensors`, entries, fileOptions);
    return ["model.safetensors"];
  }
  const names: string[] = [];
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  const count = String(shards.length).padStart(5, "0");
  for (const [i, shard] of shards.entries()) {
    const name = `model-${String(i + 1).padStart(5, "0")}-of-${count}.safetensors`;
    await writeSafetensors(`${dir}/${name}`, shard, fileOptions);
    for (const e of shard) {
      weightMap[e.name] = name;
      totalSize += entryBytes(e);
    }
    names.push(name);
  }
  const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
  await Deno.writeTextFile(
    `${dir}/model.safetensors.index.json`,
    JSON.stringify(index, null, 2) + "\n",
  );
  names.push("model.safetensors.index.json");
  return names;
}
