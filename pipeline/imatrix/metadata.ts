/**
 * The `quantize.imatrix.*` keys llama-quantize writes into a model quantized with an imatrix
 * (`tools/quantize/quantize.cpp`, through KV overrides, whose integers are stored as u32).
 *
 * @module
 */
import { type GgufMetadata, gv } from "../gguf_metadata.ts";

/** Override strings are copied into a 128-byte buffer: at most 127 bytes survive. */
const MAX_STRING_BYTES = 127;

/** What the keys are made from; an `Imatrix` has all of it. */
export interface ImatrixSummary {
  readonly file: string;
  readonly datasets: readonly string[];
  readonly chunkCount: number;
  readonly entries: { readonly size: number };
}

/** Cuts a string to 127 UTF-8 bytes, dropping a character the cut would split. */
function _cut(text: string): string {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length <= MAX_STRING_BYTES) return text;
  return new TextDecoder().decode(bytes.subarray(0, MAX_STRING_BYTES)).replace(/\uFFFD$/, "");
}

/**
 * `quantize.imatrix.file`, `quantize.imatrix.dataset` (the first dataset, when there is one),
 * `quantize.imatrix.entries_count` and `quantize.imatrix.chunks_count` (when positive), in that
 * order.
 */
export function imatrixMetadata(im: ImatrixSummary): GgufMetadata {
  const md: GgufMetadata = new Map([["quantize.imatrix.file", gv.str(_cut(im.file))]]);
  const dataset = im.datasets[0];
  if (dataset !== undefined) md.set("quantize.imatrix.dataset", gv.str(_cut(dataset)));
  md.set("quantize.imatrix.entries_count", gv.u32(im.entries.size));
  if (im.chunkCount > 0) md.set("quantize.imatrix.chunks_count", gv.u32(im.chunkCount));
  return md;
}
