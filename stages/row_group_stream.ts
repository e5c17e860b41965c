/**
 * Cuts the byte stream of a source into {@linkcode TensorPiece}s of whole rows (or whole heads
 * for Q/K permuted tensors), so later stages never see a row split across pieces. Pieces are
 * views into the source's chunks where they line up; only a partial row is copied.
 *
 * @module
 */
import type { PlannedTensor } from "../pipeline/plan.ts";
import { SAFETENSORS_DTYPE_BYTES } from "../pipeline/safetensors_header.ts";
import type { ByteRange, RangeChunk } from "../pipeline/source.ts";
import type { TensorPiece } from "./tensor_piece.ts";

/** The byte ranges to read for a plan, in output order (checkpoint tensors only). */
export function planRanges(tensors: readonly PlannedTensor[]): ByteRange[] {
  const ranges: ByteRange[] = [];
  for (const t of tensors) {
    if (t.origin.kind === "checkpoint") {
      ranges.push({ path: t.origin.file, start: t.origin.entry.start, end: t.origin.entry.end });
    }
  }
  return ranges;
}

interface _Geometry {
  tensor: number;
  rowBytes: number;
  /** Bytes of the smallest piece the next stages accept. */
  unitBytes: number;
}

function _geometry(t: PlannedTensor, index: number): _Geometry {
  if (t.origin.kind !== "checkpoint") throw new TypeError(`Tensor ${t.name} is not read`);
  const { shape, dtype } = t.origin.entry;
  const outer = shape[0] ?? 1;
  const rowBytes = shape.length === 0 ? SAFETENSORS_DTYPE_BYTES[dtype] : (t.origin.entry.end -
    t.origin.entry.start) / Math.max(outer, 1);
  const unitRows = t.permutation ? outer / t.permutation.heads : 1;
  return { tensor: index, rowBytes, unitBytes: rowBytes * unitRows };
}

/** Turns range chunks into whole-row tensor pieces; generated tensors follow at the end. */
export class RowGroupStream extends TransformStream<RangeChunk, TensorPiece> {
  constructor(tensors: readonly PlannedTensor[]) {
    const read: _Geometry[] = [];
    tensors.forEach((t, i) => {
      if (t.origin.kind === "checkpoint") read.push(_geometry(t, i));
    });
    let pending: Uint8Array | null = null;
    let pendingFrom = 0;
    let currentRange = -1;

    const emit = (
      controller: TransformStreamDefaultController<TensorPiece>,
      g: _Geometry,
      offset: number,
      bytes: Uint8Array,
      release?: () => void,
    ) => {
      const t = tensors[g.tensor]!;
      if (t.origin.kind !== "checkpoint") return;
      controller.enqueue({
        tensor: g.tensor,
        dtype: t.origin.entry.dtype,
        firstRow: offset / g.rowBytes,
        bytes,
        origin: { path: t.origin.file, offset: t.origin.entry.start + offset },
        ...(release ? { release } : {}),
      });
    };

    super({
      transform(chunk, controller) {
        const g = read[chunk.rangeIndex];
        if (!g) throw new RangeError(`Cannot place range ${chunk.rangeIndex}: not in the plan`);
        if (chunk.rangeIndex !== currentRange) {
          if (pending) {
            throw new RangeError(
              `Cannot finish tensor ${tensors[read[currentRange]!.tensor]!.name}: bytes missing`,
            );
          }
          currentRange = chunk.rangeIndex;
        }
        let bytes = chunk.bytes;
        let offset = chunk.offset;
        if (pending) {
          // Complete the partial unit first.
          const fill = Math.min(pending.length - pendingFrom, bytes.length);
          pending.set(bytes.subarray(0, fill), pendingFrom);
          pendingFrom += fill;
          bytes = bytes.subarray(fill);
          offset += fill;
          if (pendingFrom < pending.length) return chunk.release?.();
          emit(controller, g, offset - pending.length, pending);
          pending = null;
        }
        const whole = bytes.length - (bytes.length % g.unitBytes);
        if (whole < bytes.length) {
          pending = new Uint8Array(g.unitBytes);
          pendingFrom = bytes.length - whole;
          pending.set(bytes.subarray(whole));
        }
        // The one view of the chunk carries its release; without one, all of it was copied.
        if (whole > 0) emit(controller, g, offset, bytes.subarray(0, whole), chunk.release);
        else chunk.release?.();
      },
      flush(controller) {
        if (pending) {
          throw new RangeError(
            `Cannot finish tensor ${tensors[read[currentRange]!.tensor]!.name}: bytes missing`,
          );
        }
        tensors.forEach((t, i) => {
          if (t.origin.kind !== "generated") return;
          const v = t.origin.values;
          controller.enqueue({
            tensor: i,
            dtype: "F32",
            firstRow: 0,
            bytes: new Uint8Array(v.buffer, v.byteOffset, v.byteLength),
          });
        });
      },
    });
  }
}
