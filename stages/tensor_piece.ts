/**
 * The records that flow between the converter's stages.
 *
 * @module
 */
import type { SafetensorsDtype } from "../pipeline/safetensors_header.ts";

/** Where a piece's bytes lie, unchanged, in the model's files. */
export interface SourceBytes {
  /** File path relative to the model root, as in a `ByteRange`. */
  readonly path: string;
  /** Byte offset of the piece's first byte in that file. */
  readonly offset: number;
}

/**
 * Whole outer rows of one tensor in its source dtype. A "row" is one slice along the PyTorch
 * outermost dim: a matrix row of a 2-D weight, one element of a 1-D tensor.
 */
export interface TensorPiece {
  /** Index of the tensor in the plan. */
  readonly tensor: number;
  readonly dtype: SafetensorsDtype;
  /** First outer row of the piece. */
  readonly firstRow: number;
  readonly bytes: Uint8Array;
  /** Set while the bytes are exactly the file's; a stage that changes them drops it. */
  readonly origin?: SourceBytes;
  /** Gives `bytes`' buffer back for reuse (see `RangeChunk.release`); passed on with the bytes. */
  readonly release?: () => void;
  /**
   * Set when the rows are still in the checkpoint's rotate-half order and the encoder reorders
   * them within heads of this many rows (see `QkPermuteStream`).
   */
  readonly ropeHeadRows?: number;
}

/** Output bytes of one tensor, in file order. */
export interface EncodedPiece {
  readonly tensor: number;
  readonly bytes: Uint8Array;
  /** Set when the output bytes equal the source file's there, so the sink may copy file to file. */
  readonly origin?: SourceBytes;
  /** Gives `bytes`' buffer back for reuse once written (see `RangeChunk.release`). */
  readonly release?: () => void;
}
