/**
 * A minimal GGUF v2/v3 reader for imatrix files: every key-value pair (string arrays kept, other
 * arrays skipped) and every tensor's info with its data range. It applies the structural checks of
 * ggml's `gguf_init_from_file` that matter here — version, duplicate keys and tensor names,
 * dimensions, types, alignment, offsets packed in order — and checks every range against the file.
 *
 * @module
 */
import { alignUp, GGUF_ALIGNMENT } from "../gguf_header.ts";
import { GGUF_VALUE_TYPE } from "../gguf_metadata.ts";
import { ggmlTypeById, type GgmlTypeInfo, tensorBytes } from "../ggml_types.ts";
import type { ImatrixCursor } from "./cursor.ts";

/** "GGUF" read as a little-endian u32. */
export const GGUF_MAGIC = 0x46554747;
/** ggml's `GGML_MAX_NAME`. */
const MAX_NAME_BYTES = 64;
/** ggml's `GGML_MAX_DIMS`. */
const MAX_DIMS = 4;

/** A GGUF value type name (`string`, `u32`, …). */
export type GgufTypeName = keyof typeof GGUF_VALUE_TYPE;

const TYPE_NAMES = new Map<number, GgufTypeName>(
  Object.entries(GGUF_VALUE_TYPE).map(([name, id]) => [id, name as GgufTypeName]),
);

const SCALAR_BYTES: Partial<Record<GgufTypeName, number>> = {
  u8: 1,
  i8: 1,
  bool: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  f32: 4,
  u64: 8,
  i64: 8,
  f64: 8,
};

/** One key-value pair. Arrays of anything but strings keep only their item type. */
export interface GgufKv {
  readonly type: GgufTypeName;
  /** Item type of an array, else null. */
  readonly itemType: GgufTypeName | null;
  /** u32 as a number, a string, a string array; null for every other type. */
  readonly value: number | string | readonly string[] | null;
}

/** One tensor's info with where its data lies in the file. */
export interface GgufTensorEntry {
  readonly name: string;
  readonly ne: readonly number[];
  readonly type: GgmlTypeInfo;
  /** Absolute offset of the data in the file. */
  readonly dataOffset: number;
  /** Exact data bytes. */
  readonly dataBytes: number;
}

/** What {@linkcode readGgufStructure} found. */
export interface GgufStructure {
  readonly version: number;
  readonly kv: ReadonlyMap<string, GgufKv>;
  readonly tensors: readonly GgufTensorEntry[];
}

function _typeName(cur: ImatrixCursor, id: number, key: string): GgufTypeName {
  const name = TYPE_NAMES.get(id);
  if (name === undefined || name === "array") {
    throw cur.fail(`key ${key} has an invalid value type`, `type id ${id}`);
  }
  return name;
}

function _readKv(cur: ImatrixCursor, key: string): GgufKv {
  const typeId = cur.u32(`the type of key ${key}`);
  if (typeId === GGUF_VALUE_TYPE.array) {
    const itemType = _typeName(cur, cur.u32(`the item type of key ${key}`), key);
    const n = cur.u64(`the length of key ${key}`);
    if (itemType === "string") {
      const items: string[] = [];
      for (let i = 0; i < n; i++) items.push(cur.ggufString(`item ${i} of key ${key}`));
      return { type: "array", itemType, value: items };
    }
    cur.take(n * SCALAR_BYTES[itemType]!, `the ${n} items of key ${key}`);
    return { type: "array", itemType, value: null };
  }
  const type = _typeName(cur, typeId, key);
  if (type === "string") return { type, itemType: null, value: cur.ggufString(`key ${key}`) };
  if (type === "u32") return { type, itemType: null, value: cur.u32(`key ${key}`) };
  cur.take(SCALAR_BYTES[type]!, `key ${key}`);
  return { type, itemType: null, value: null };
}

function _readTensorInfo(cur: ImatrixCursor, index: number, names: Set<string>) {
  const name = cur.ggufString(`the name of tensor ${index}`);
  if (new TextEncoder().encode(name).length >= MAX_NAME_BYTES) {
    throw cur.fail(`the name of tensor ${index} is too long`, `${name}`);
  }
  if (names.has(name)) throw cur.fail("a tensor name repeats", name);
  names.add(name);
  const nDims = cur.u32(`the dimension count of tensor ${name}`);
  if (nDims > MAX_DIMS) throw cur.fail(`tensor ${name} has too many dimensions`, `${nDims}`);
  const ne: number[] = [];
  for (let d = 0; d < nDims; d++) ne.push(cur.u64(`dimension ${d} of tensor ${name}`));
  const typeId = cur.u32(`the type of tensor ${name}`);
  const type = ggmlTypeById(typeId);
  if (type === null) {
    throw cur.fail(`tensor ${name} has a ggml type an imatrix never holds`, `type id ${typeId}`);
  }
  if ((ne[0] ?? 1) % type.blockSize !== 0) {
    throw cur.fail(
      `tensor ${name} has rows that are not whole ${type.name} blocks`,
      `ne[0] = ${ne[0]}`,
    );
  }
  const offset = cur.u64(`the data offset of tensor ${name}`);
  return { name, ne, type, offset };
}

/**
 * Reads the header of a GGUF file whose magic the cursor is at.
 *
 * @throws {ImatrixError} when the file is truncated or the header is malformed.
 */
export function readGgufStructure(cur: ImatrixCursor): GgufStructure {
  if (cur.u32("the magic") !== GGUF_MAGIC) throw cur.fail("it is not GGUF", "bad magic");
  const version = cur.u32("the GGUF version");
  if (version !== 2 && version !== 3) {
    throw cur.fail("its GGUF version is not supported", `version ${version}, expected 2 or 3`);
  }
  const nTensors = cur.u64("the tensor count");
  const nKv = cur.u64("the key-value count");

  const kv = new Map<string, GgufKv>();
  for (let i = 0; i < nKv; i++) {
    const key = cur.ggufString(`key ${i}`);
    if (key === "") throw cur.fail(`key ${i} is empty`, "a key needs a name");
    if (kv.has(key)) throw cur.fail("a key repeats", key);
    kv.set(key, _readKv(cur, key));
  }
  const alignKv = kv.get("general.alignment");
  let alignment = GGUF_ALIGNMENT;
  if (alignKv !== undefined) {
    if (alignKv.type !== "u32" || typeof alignKv.value !== "number") {
      throw cur.fail("general.alignment is not a u32", `type ${alignKv.type}`);
    }
    alignment = alignKv.value;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) {
      throw cur.fail("general.alignment is not a power of 2", `${alignment}`);
    }
  }

  const names = new Set<string>();
  const infos = [];
  for (let i = 0; i < nTensors; i++) infos.push(_readTensorInfo(cur, i, names));
  const dataStart = alignUp(cur.pos, alignment);
  let expected = 0;
  const tensors = infos.map((t): GgufTensorEntry => {
    if (t.offset !== expected) {
      throw cur.fail(
        `tensor ${t.name} is not where the one before it ends`,
        `data offset ${t.offset}, expected ${expected}`,
      );
    }
    const dataBytes = tensorBytes(t.type, t.ne);
    expected += alignUp(dataBytes, alignment);
    const dataOffset = dataStart + t.offset;
    if (dataOffset + dataBytes > cur.bytes.length) {
      throw cur.fail(
        "it is truncated",
        `tensor ${t.name} needs bytes ${dataOffset}..${dataOffset + dataBytes}, ` +
          `the file has ${cur.bytes.length}`,
      );
    }
    return { name: t.name, ne: t.ne, type: t.type, dataOffset, dataBytes };
  });
  return { version, kv, tensors };
}
