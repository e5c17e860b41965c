/**
 * Reorders Q/K rows of LLaMA-family models from Hugging Face's rotate-half layout to llama.cpp's
 * interleaved rope pairs: within each head of `hd` rows, new row `2i + p` is old row
 * `p·hd/2 + i`. Works on raw rows of any dtype; pieces arrive whole-head aligned.
 *
 * @module
 */
import type { PlannedTensor } from "../pipeline/plan.ts";
import type { TensorPiece } from "./tensor_piece.ts";
import { BytePool } from "./byte_pool.ts";

/**
 * Permutes the rows of one head-aligned piece into `out` (a new buffer by default).
 * @param rowBytes bytes of one outer row
 * @param headRows rows per head (even)
 */
export function permuteRopeRows(
  bytes: Uint8Array,
  rowBytes: number,
  headRows: number,
  out: Uint8Array = new Uint8Array(bytes.length),
): Uint8Array {
  const half = headRows / 2;
  const headBytes = rowBytes * headRows;
  for (let h = 0; h < bytes.length; h += headBytes) {
    for (let i = 0; i < half; i++) {
      for (let p = 0; p < 2; p++) {
        const from = h + (p * half + i) * rowBytes;
        out.set(bytes.subarray(from, from + rowBytes), h + (2 * i + p) * rowBytes);
      }
    }
  }
  return out;
}

/**
 * Applies each tensor's rope permutation; other tensors pass through untouched. Permuted pieces
 * go into reused buffers (given back by whichever stage releases the piece): a fresh 8 MiB buffer
 * per piece costs its page faults and zeroing on every piece.
 */
export class QkPermuteStream extends TransformStream<TensorPiece, TensorPiece> {
  constructor(tensors: readonly PlannedTensor[]) {
    let pool: BytePool | null = null;
    super({
      transform(piece, controller) {
        const t = tensors[piece.tensor]!;
        if (!t.permutation || t.origin.kind !== "checkpoint") {
          controller.enqueue(piece);
          return;
        }
        const { shape, start, end } = t.origin.entry;
        const outer = shape[0]!;
        const rowBytes = (end - start) / outer;
        // Sized by the biggest piece so far: pieces are the source's chunks, cut at rows.
        if (pool === null || pool.capacity < piece.bytes.length) {
          pool = new BytePool(piece.bytes.length);
        }
        const target = pool.take(piece.bytes.length);
        permuteRopeRows(piece.bytes, rowBytes, outer / t.permutation.heads, target.bytes);
        piece.release?.();
        // No origin: the bytes no longer match the file.
        controller.enqueue({
          tensor: piece.tensor,
          dtype: piece.dtype,
          firstRow: piece.firstRow,
          bytes: target.bytes,
          release: target.release,
        });
      },
    });
  }
}
