/**
 * Encodes tensor pieces into their output type: a checked byte copy when the source dtype is the
 * output type, otherwise decode to float32 and encode (F32, F16, BF16, Q8_0). Non-finite weights
 * are an error naming the tensor, never silently written.
 *
 * @module
 */
import type { PlannedTensor } from "../pipeline/plan.ts";
import { findNonFinite, findNonFiniteHalf } from "./encode/finite.ts";
import { decodeFloats, encodeBf16, encodeF16, floatDtypeBytes } from "./encode/float_codecs.ts";
import { encodeQ8_0FromBytes, q8_0Bytes } from "./encode/q8_0.ts";
import type { EncodedPiece, TensorPiece } from "./tensor_piece.ts";

/** A weight that is NaN or infinite, or does not fit the output type. */
export class NonFiniteWeightError extends RangeError {
  readonly tensor: string;
  readonly index: number;
  constructor(tensor: string, source: string, index: number, message: string) {
    super(`Cannot convert tensor ${tensor} (${source}) as element ${index} ${message}`);
    this.name = "NonFiniteWeightError";
    this.tensor = tensor;
    this.index = index;
  }
}

const PASSTHROUGH: Record<string, string> = { F32: "F32", F16: "F16", BF16: "BF16" };

/** Encodes pieces; output pieces keep the tensor order of the input. */
export class EncodeStream extends TransformStream<TensorPiece, EncodedPiece> {
  constructor(tensors: readonly PlannedTensor[]) {
    super({
      transform(piece, controller) {
        const t = tensors[piece.tensor]!;
        const source = t.origin.kind === "checkpoint"
          ? `${t.origin.entry.name} in ${t.origin.file}`
          : "generated";
        const elemBytes = floatDtypeBytes(piece.dtype);
        const firstElement = piece.firstRow *
          (t.origin.kind === "checkpoint"
            ? t.origin.entry.shape.slice(1).reduce((a, b) => a * b, 1)
            : 1);
        const fail = (i: number, why: string): never => {
          throw new NonFiniteWeightError(t.name, source, firstElement + i, why);
        };
        if (PASSTHROUGH[piece.dtype] === t.type.name) {
          const bad = piece.dtype === "F32"
            ? findNonFinite(_f32View(piece.bytes))
            : findNonFiniteHalf(piece.bytes, piece.dtype);
          if (bad >= 0) fail(bad, "is NaN or infinite");
          controller.enqueue({ tensor: piece.tensor, bytes: piece.bytes });
          return;
        }
        if (t.type.name === "Q8_0") {
          // One pass from source bytes, without a full float32 copy.
          const out = new Uint8Array(q8_0Bytes(piece.bytes.length / elemBytes));
          const bad = encodeQ8_0FromBytes(piece.dtype, piece.bytes, out);
          if (bad >= 0) fail(bad, "is NaN or infinite");
          controller.enqueue({ tensor: piece.tensor, bytes: out });
          return;
        }
        const values = new Float32Array(piece.bytes.length / elemBytes);
        decodeFloats(piece.dtype, piece.bytes, values);
        let out: Uint8Array;
        let bad: number;
        switch (t.type.name) {
          case "F32":
            bad = findNonFinite(values);
            out = new Uint8Array(values.buffer);
            break;
          case "F16":
            out = new Uint8Array(values.length * 2);
            bad = encodeF16(values, out);
            break;
          case "BF16":
            out = new Uint8Array(values.length * 2);
            bad = encodeBf16(values, out);
            break;
          default:
            throw new TypeError(`Cannot encode ${t.name} as ${t.type.name} yet`);
        }
        if (bad >= 0) {
          fail(
            bad,
            Number.isFinite(values[bad]!)
              ? `(${values[bad]}) does not fit ${t.type.name}`
              : "is NaN or infinite",
          );
        }
        controller.enqueue({ tensor: piece.tensor, bytes: out });
      },
    });
  }
}

/** A float32 view of bytes, copying only when they are not 4-byte aligned. */
function _f32View(bytes: Uint8Array): Float32Array {
  if (bytes.byteOffset % 4 === 0) {
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  }
  return new Float32Array(bytes.slice().buffer);
}
