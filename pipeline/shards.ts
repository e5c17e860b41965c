/**
 * Finds a checkpoint's shards (single file or `model.safetensors.index.json`) and reads each
 * shard's header with two small range reads: the 8-byte length, then the JSON.
 *
 * @module
 */
import {
  headerLength,
  parseSafetensorsHeader,
  SafetensorsError,
  type SafetensorsHeader,
} from "./safetensors_header.ts";
import type { ByteRange, ModelSource } from "./source.ts";

const INDEX_FILE = "model.safetensors.index.json";
const SINGLE_FILE = "model.safetensors";

/** A checkpoint whose files do not fit together. */
export class CheckpointError extends Error {
  readonly file: string;
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = "CheckpointError";
    this.file = file;
  }
}

async function _readAll(source: ModelSource, range: ByteRange): Promise<Uint8Array> {
  const out = new Uint8Array(range.end - range.start);
  for await (const piece of source.readRanges([range])) out.set(piece.bytes, piece.offset);
  return out;
}

/** Reads and validates one shard's header. */
export async function readShardHeader(
  source: ModelSource,
  file: string,
): Promise<SafetensorsHeader> {
  const size = await source.size(file);
  const prefix = await _readAll(source, { path: file, start: 0, end: Math.min(8, size) });
  const n = headerLength(file, prefix, size);
  const json = await _readAll(source, { path: file, start: 8, end: 8 + n });
  return parseSafetensorsHeader(file, json, size);
}

/**
 * Lists the shard files in order and reads their headers, checking that the index and the
 * shards agree.
 * @throws {CheckpointError} for a missing shard, a tensor the index places in a shard that lacks
 *   it, or a folder without safetensors.
 */
export async function readCheckpointHeaders(source: ModelSource): Promise<SafetensorsHeader[]> {
  const indexBytes = await source.readFile(INDEX_FILE);
  if (indexBytes === null) {
    try {
      await source.size(SINGLE_FILE);
    } catch {
      throw new CheckpointError(
        source.label,
        `Cannot find ${SINGLE_FILE} or ${INDEX_FILE} (only safetensors checkpoints are supported)`,
      );
    }
    return [await readShardHeader(source, SINGLE_FILE)];
  }
  let weightMap: Record<string, unknown>;
  try {
    weightMap = JSON.parse(new TextDecoder().decode(indexBytes)).weight_map;
  } catch (e) {
    throw new CheckpointError(INDEX_FILE, `Cannot parse: ${(e as Error).message}`);
  }
  if (typeof weightMap !== "object" || weightMap === null) {
    throw new CheckpointError(INDEX_FILE, "Cannot read weight_map");
  }
  const files: string[] = [];
  for (const [tensor, file] of Object.entries(weightMap)) {
    if (typeof file !== "string" || file.includes("..") || file.startsWith("/")) {
      throw new CheckpointError(INDEX_FILE, `Cannot use shard name ${file} for tensor ${tensor}`);
    }
    if (!files.includes(file)) files.push(file);
  }
  files.sort();
  const headers: SafetensorsHeader[] = [];
  for (const file of files) {
    try {
      await source.size(file);
    } catch {
      throw new CheckpointError(file, `Cannot open shard named in ${INDEX_FILE}: it is missing`);
    }
    headers.push(await readShardHeader(source, file));
  }
  for (const [tensor, file] of Object.entries(weightMap) as [string, string][]) {
    const header = headers.find((h) => h.file === file)!;
    if (!header.tensors.some((t) => t.name === tensor)) {
      throw new SafetensorsError(file, tensor, `Cannot find tensor named in ${INDEX_FILE}`);
    }
  }
  return headers;
}
