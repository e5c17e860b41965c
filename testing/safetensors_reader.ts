/**
 * Reads the F32/F16/BF16 tensors of safetensors files, single or sharded, into float32 arrays for
 * test oracles. Whole files are read into memory, which suits fixture-sized models only.
 *
 * @module
 */
import { bf16BitsToF32, f16BitsToF32 } from "./half_floats.ts";

/** One decoded tensor. */
export interface DecodedTensor {
  /** The dtype it was stored as. */
  readonly dtype: "F32" | "F16" | "BF16";
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Row-major values, widened exactly to float32. */
  readonly data: Float32Array;
}

interface _HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

function _decode(name: string, entry: _HeaderEntry, bytes: Uint8Array): DecodedTensor {
  const shape = entry.shape;
  const count = shape.reduce((a, b) => a * b, 1);
  const copy = bytes.slice();
  switch (entry.dtype) {
    case "F32":
      if (copy.length !== count * 4) break;
      return { dtype: "F32", shape, data: new Float32Array(copy.buffer) };
    case "F16":
      if (copy.length !== count * 2) break;
      return { dtype: "F16", shape, data: f16BitsToF32(new Uint16Array(copy.buffer)) };
    case "BF16":
      if (copy.length !== count * 2) break;
      return { dtype: "BF16", shape, data: bf16BitsToF32(new Uint16Array(copy.buffer)) };
    default:
      throw new TypeError(`Cannot decode tensor ${name} as dtype ${entry.dtype} is not supported`);
  }
  throw new RangeError(
    `Cannot decode tensor ${name} as its ${bytes.length} bytes do not fit shape [${shape}]`,
  );
}

/**
 * Reads every tensor of one safetensors file.
 *
 * @throws {SyntaxError} when the header is not valid JSON.
 * @throws {TypeError} for a dtype other than F32, F16 or BF16.
 * @throws {RangeError} when a tensor's byte range does not match its shape or leaves the file.
 */
export async function readSafetensors(path: string): Promise<Map<string, DecodedTensor>> {
  const file = await Deno.readFile(path);
  const headerLength = Number(new DataView(file.buffer).getBigUint64(0, true));
  if (8 + headerLength > file.length) {
    throw new RangeError(`Cannot read ${path} as its header length ${headerLength} is too large`);
  }
  const header: Record<string, _HeaderEntry> = JSON.parse(
    new TextDecoder().decode(file.subarray(8, 8 + headerLength)),
  );
  const dataStart = 8 + headerLength;
  const out = new Map<string, DecodedTensor>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const [start, end] = entry.data_offsets;
    if (dataStart + end > file.length || start > end) {
      throw new RangeError(`Cannot read tensor ${name} of ${path} as it leaves the file`);
    }
    out.set(name, _decode(name, entry, file.subarray(dataStart + start, dataStart + end)));
  }
  return out;
}

/**
 * Reads all weights of a Hugging Face model folder: the shards listed in
 * `model.safetensors.index.json` when it exists, else `model.safetensors`.
 *
 * @throws {Deno.errors.NotFound} when the folder has neither file.
 * @throws {TypeError} when the index maps a tensor to a shard that lacks it.
 */
export async function readModelWeights(dir: string): Promise<Map<string, DecodedTensor>> {
  let index: { weight_map: Record<string, string> } | null = null;
  try {
    index = JSON.parse(await Deno.readTextFile(`${dir}/model.safetensors.index.json`));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (index === null) return await readSafetensors(`${dir}/model.safetensors`);
  const out = new Map<string, DecodedTensor>();
  for (const shard of new Set(Object.values(index.weight_map))) {
    for (const [name, tensor] of await readSafetensors(`${dir}/${shard}`)) out.set(name, tensor);
  }
  for (const [name, shard] of Object.entries(index.weight_map)) {
    if (!out.has(name)) {
      throw new TypeError(`Cannot read tensor ${name} as shard ${shard} does not hold it`);
    }
  }
  return out;
}
