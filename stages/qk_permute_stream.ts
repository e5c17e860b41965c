/**
 * Reorders Q/K rows of LLaMA-family models from Hugging Face's rotate-half layout to llama.cpp's
 * interleaved rope pairs (gpu/rope_rows.ts). Works on raw rows of any dtype; pieces arrive
 * whole-head aligned. Tensors the caller names are left to their encoder, which reads the rows in
 * rope order itself (the FP4 kernel does, saving a copy of every byte on this thread): their
 * pieces pass unchanged, marked with `ropeHeadRows`.
 *
 * @module
 */
import type { PlannedTensor } from "../pipeline/plan.ts";
import type { TensorPiece } from "./tensor_piece.ts";
import { BytePool } from "./byte_pool.ts";
import { permuteRopeRows } from "../gpu/rope_rows.ts";

/**
 * Applies each tensor's rope permutation; other tensors pass through untouched. Permuted pieces
 * go into reused buffers (given back by whichever stage releases the piece): a fresh 8 MiB buffer
 * per piece costs its page faults and zeroing on every piece.
 */
export class QkPermuteStream extends TransformStream<TensorPiece, TensorPiece> {
  /** @param leftToEncoder tensors whose pieces leave with `ropeHeadRows` set instead. */
  constructor(
    tensors: readonly PlannedTensor[],
    leftToEncoder: (t: PlannedTensor) => boolean = () => false,
  ) {
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
        const headRows = outer / t.permutation.heads;
        // No origin either way: the bytes are not the output's.
        const { origin: _, ...rest } = piece;
        if (leftToEncoder(t)) {
          controller.enqueue({ ...rest, ropeHeadRows: headRows });
          return;
        }
        const rowBytes = (end - start) / outer;
        // Sized by the biggest piece so far: pieces are the source's chunks, cut at rows.
        if (pool === null || pool.capacity < piece.bytes.length) {
          pool = new BytePool(piece.bytes.length);
        }
        const target = pool.take(piece.bytes.length);
        permuteRopeRows(piece.bytes, rowBytes, headRows, target.bytes);
        piece.release?.();
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
