/**
 * A minimal reader for the protocol buffers wire format, enough to walk a message's fields
 * without a schema or generated code. Used to read SentencePiece's `tokenizer.model`.
 *
 * @module
 */

/** Wire types: varint, 64-bit, length-delimited, 32-bit (groups, 3 and 4, are not supported). */
export type WireType = 0 | 1 | 2 | 5;

/** One field of a message, in file order. Repeated fields appear once per value. */
export interface ProtoField {
  /** Field number from the schema. */
  readonly number: number;
  readonly wireType: WireType;
  /** Wire type 0: the value, exact up to 2^53. */
  readonly varint: number;
  /** Wire type 0: the low 32 bits as an unsigned integer (how int32 and enums are truncated). */
  readonly varintLow: number;
  /** Wire types 1, 2 and 5: the payload bytes (a view, not a copy). */
  readonly bytes: Uint8Array;
}

const NO_BYTES = new Uint8Array(0);
/** A varint has at most 10 bytes (64 bits, 7 a byte). */
const MAX_VARINT_BYTES = 10;

/**
 * Yields the fields of one message.
 * @param what names the message in errors, e.g. "tokenizer.model".
 * @throws {SyntaxError} for a truncated field, an overlong varint or an unsupported wire type.
 */
export function* protoFields(bytes: Uint8Array, what: string): Generator<ProtoField> {
  let pos = 0;
  const fail = (reason: string, at: number): never => {
    throw new SyntaxError(`Cannot parse ${what} as ${reason} at byte ${at}: ${bytes.length} bytes`);
  };
  const varint = (): [number, number] => {
    const start = pos;
    let value = 0;
    let low = 0;
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      if (pos >= bytes.length) fail("a varint runs past the end", start);
      const b = bytes[pos++]!;
      value += (b & 0x7f) * 2 ** (7 * i);
      if (i < 5) low = (low | ((b & 0x7f) << (7 * i))) >>> 0;
      if ((b & 0x80) === 0) return [value, low];
    }
    return fail("a varint is longer than 10 bytes", start);
  };
  const take = (n: number, at: number): Uint8Array => {
    if (n > bytes.length - pos) fail(`a ${n}-byte field runs past the end`, at);
    const out = bytes.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  while (pos < bytes.length) {
    const at = pos;
    const [key] = varint();
    const number = Math.floor(key / 8);
    const wireType = key % 8;
    if (number === 0) fail("a field has number 0", at);
    switch (wireType) {
      case 0: {
        const [value, low] = varint();
        yield { number, wireType, varint: value, varintLow: low, bytes: NO_BYTES };
        break;
      }
      case 1:
        yield { number, wireType, varint: 0, varintLow: 0, bytes: take(8, at) };
        break;
      case 2: {
        const [length] = varint();
        yield { number, wireType, varint: 0, varintLow: 0, bytes: take(length, at) };
        break;
      }
      case 5:
        yield { number, wireType, varint: 0, varintLow: 0, bytes: take(4, at) };
        break;
      default:
        fail(`field ${number} has unsupported wire type ${wireType}`, at);
    }
  }
}

function _expect(field: ProtoField, wireType: WireType, as: string): void {
  if (field.wireType !== wireType) {
    throw new TypeError(
      `Cannot read protobuf field ${field.number} as ${as}: it has wire type ${field.wireType}`,
    );
  }
}

/** An `int32` or enum field (negative values are sign-extended varints). */
export function protoInt32(field: ProtoField): number {
  _expect(field, 0, "int32");
  return field.varintLow | 0;
}

/** A `bool` field. */
export function protoBool(field: ProtoField): boolean {
  _expect(field, 0, "bool");
  return field.varint !== 0;
}

/** A `float` field. */
export function protoFloat(field: ProtoField): number {
  _expect(field, 5, "float");
  return new DataView(field.bytes.buffer, field.bytes.byteOffset, 4).getFloat32(0, true);
}

/** A `string` field (UTF-8). */
export function protoString(field: ProtoField): string {
  _expect(field, 2, "string");
  return new TextDecoder("utf-8", { fatal: true }).decode(field.bytes);
}
