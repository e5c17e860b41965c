/**
 * GGUF v3 header layout: metadata, tensor infos and every tensor's offset, computed from declared
 * sizes before any tensor byte exists. The sink then streams tensor data into the slots this
 * layout reserves and checks that each tensor fills its slot exactly.
 *
 * @module
 */
import { GGUF_VALUE_TYPE, type GgufMetadata, type GgufValue } from "./gguf_metadata.ts";
import { type GgmlTypeInfo, tensorBytes } from "./ggml_types.ts";

/** Default data alignment of GGUF (`GGUF_DEFAULT_ALIGNMENT`). */
export const GGUF_ALIGNMENT = 32;
/** ggml's `GGML_MAX_NAME`: tensor names must be shorter than this many bytes. */
const MAX_TENSOR_NAME_BYTES = 64;
/** ggml's `GGML_MAX_DIMS`. */
const MAX_DIMS = 4;

/** One tensor as declared in the header. */
export interface GgufTensorInfo {
  /** GGUF tensor name, e.g. `blk.0.attn_q.weight`. */
  readonly name: string;
  /** Dimensions, ne[0] (the contiguous one) first. */
  readonly ne: readonly number[];
  readonly type: GgmlTypeInfo;
}

/** Where everything goes in the file. */
export interface GgufLayout {
  /** Magic through the padding before the data section. */
  readonly header: Uint8Array;
  /** Absolute file offset of each tensor's data, in tensor order. */
  readonly tensorOffsets: readonly number[];
  /** Exact data bytes of each tensor (without padding). */
  readonly tensorSizes: readonly number[];
  /** Total file size, with every tensor padded to the alignment. */
  readonly fileSize: number;
}

/** Rounds `n` up to a multiple of `alignment`. */
export function alignUp(n: number, alignment: number = GGUF_ALIGNMENT): number {
  return Math.ceil(n / alignment) * alignment;
}

const _NUMBER_SIZE: Record<string, number> = {
  u8: 1,
  i8: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  f32: 4,
  f64: 8,
};

class _ByteWriter {
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  length = 0;
  readonly #encoder = new TextEncoder();

  #reserve(n: number): number {
    if (this.length + n > this.#buf.length) {
      let size = this.#buf.length * 2;
      while (size < this.length + n) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.#buf.subarray(0, this.length));
      this.#buf = next;
      this.#view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }
  u8(v: number): void {
    const at = this.#reserve(1);
    this.#view.setUint8(at, v);
  }
  u32(v: number): void {
    const at = this.#reserve(4);
    this.#view.setUint32(at, v, true);
  }
  u64(v: number | bigint): void {
    const at = this.#reserve(8);
    this.#view.setBigUint64(at, BigInt(v), true);
  }
  number(type: string, v: number): void {
    const size = _NUMBER_SIZE[type];
    if (size === undefined) throw new TypeError(`Cannot write GGUF number of type ${type}`);
    // Reserve before reading this.#view: reserving may replace the buffer and its view.
    const at = this.#reserve(size);
    const view = this.#view;
    switch (type) {
      case "u8":
        return view.setUint8(at, v);
      case "i8":
        return view.setInt8(at, v);
      case "u16":
        return view.setUint16(at, v, true);
      case "i16":
        return view.setInt16(at, v, true);
      case "u32":
        return view.setUint32(at, v, true);
      case "i32":
        return view.setInt32(at, v, true);
      case "f32":
        return view.setFloat32(at, v, true);
      default:
        return view.setFloat64(at, v, true);
    }
  }
  string(s: string): void {
    const bytes = this.#encoder.encode(s);
    this.u64(bytes.length);
    const at = this.#reserve(bytes.length);
    this.#buf.set(bytes, at);
  }
  zeros(n: number): void {
    this.#buf.fill(0, this.#reserve(n), this.length);
  }
  bytes(): Uint8Array {
    return this.#buf.slice(0, this.length);
  }
}

function _checkInteger(key: string, type: string, v: number): void {
  const ranges: Record<string, [number, number]> = {
    u8: [0, 0xff],
    i8: [-0x80, 0x7f],
    u16: [0, 0xffff],
    i16: [-0x8000, 0x7fff],
    u32: [0, 0xffffffff],
    i32: [-0x80000000, 0x7fffffff],
  };
  const range = ranges[type];
  if (range && !(Number.isInteger(v) && v >= range[0] && v <= range[1])) {
    throw new RangeError(`Cannot write metadata ${key} as ${type}: value ${v} is out of range`);
  }
}

function _writeValue(w: _ByteWriter, key: string, value: GgufValue): void {
  switch (value.type) {
    case "string":
      return w.string(value.value);
    case "bool":
      return w.u8(value.value ? 1 : 0);
    case "u64":
    case "i64":
      return w.u64(BigInt.asUintN(64, value.value));
    case "array": {
      w.u32(GGUF_VALUE_TYPE[value.itemType]);
      w.u64(value.value.length);
      if (value.itemType === "string") {
        for (const s of value.value as readonly string[]) w.string(s);
      } else if (value.itemType === "bool") {
        for (const b of value.value as readonly boolean[]) w.u8(b ? 1 : 0);
      } else {
        const items = value.value as ArrayLike<number>;
        for (let i = 0; i < items.length; i++) {
          _checkInteger(key, value.itemType, items[i]!);
          w.number(value.itemType, items[i]!);
        }
      }
      return;
    }
    default:
      _checkInteger(key, value.type, value.value);
      return w.number(value.type, value.value);
  }
}

/**
 * Lays out a GGUF v3 file: header bytes and every tensor's offset and size.
 *
 * @throws {RangeError} for a tensor name of 64 bytes or more, more than 4 dims, a row length that
 *   is not a multiple of the type's block size, or a metadata integer out of its type's range.
 * @throws {TypeError} for duplicate tensor names.
 */
export function layoutGguf(
  metadata: GgufMetadata,
  tensors: readonly GgufTensorInfo[],
  alignment: number = GGUF_ALIGNMENT,
): GgufLayout {
  const w = new _ByteWriter();
  w.u32(0x46554747); // "GGUF"
  w.u32(3);
  w.u64(tensors.length);
  w.u64(metadata.size);
  for (const [key, value] of metadata) {
    w.string(key);
    w.u32(GGUF_VALUE_TYPE[value.type]);
    _writeValue(w, key, value);
  }
  const names = new Set<string>();
  const tensorSizes: number[] = [];
  const relative: number[] = [];
  let dataBytes = 0;
  for (const t of tensors) {
    if (new TextEncoder().encode(t.name).length >= MAX_TENSOR_NAME_BYTES) {
      throw new RangeError(`Cannot write tensor ${t.name} as its name is 64 bytes or longer`);
    }
    if (names.has(t.name)) throw new TypeError(`Cannot write tensor ${t.name} twice`);
    names.add(t.name);
    if (t.ne.length < 1 || t.ne.length > MAX_DIMS) {
      throw new RangeError(`Cannot write tensor ${t.name} with ${t.ne.length} dims`);
    }
    w.string(t.name);
    w.u32(t.ne.length);
    for (const d of t.ne) w.u64(d);
    w.u32(t.type.id);
    w.u64(dataBytes);
    const size = tensorBytes(t.type, t.ne);
    tensorSizes.push(size);
    relative.push(dataBytes);
    dataBytes += alignUp(size, alignment);
  }
  const dataStart = alignUp(w.length, alignment);
  w.zeros(dataStart - w.length);
  return {
    header: w.bytes(),
    tensorOffsets: relative.map((r) => dataStart + r),
    tensorSizes,
    fileSize: dataStart + dataBytes,
  };
}
