/**
 * The records that flow between the converter's stages.
 *
 * @module
 */
import type { SafetensorsDtype } from "../pipeline/safetensors_header.ts";

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
}

/** Output bytes of one tensor, in file order. */
export interface EncodedPiece {
  readonly tensor: number;
  readonly bytes: Uint8Array;
}
