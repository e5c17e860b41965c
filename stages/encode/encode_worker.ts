/**
 * Worker side of `EncoderPool`: Q8_0 of pieces off the main thread, which keeps reading and
 * writing.
 *
 * @module
 */
import type { FloatDtype } from "./float_codecs.ts";
import { encodeQ8_0FromBytes, q8_0Bytes } from "./q8_0.ts";

/** A job for the worker: Q8_0-encode whole rows. */
export interface EncodeJob {
  readonly id: number;
  readonly dtype: FloatDtype;
  readonly bytes: Uint8Array;
}

/** The worker's answer: the encoded bytes and the first non-finite element or -1 in `value`. */
export type EncodeReply =
  | { readonly id: number; readonly out: Uint8Array; readonly value: number }
  | { readonly id: number; readonly error: string };

function _run(job: EncodeJob): { out: Uint8Array; value: number } {
  const out = new Uint8Array(q8_0Bytes(job.bytes.length / (job.dtype === "F32" ? 4 : 2)));
  return { out, value: encodeQ8_0FromBytes(job.dtype, job.bytes, out) };
}

// deno-lint-ignore no-explicit-any
const scope = self as any as {
  onmessage: ((e: MessageEvent<EncodeJob>) => void) | null;
  postMessage(message: EncodeReply, transfer?: Transferable[]): void;
};
scope.onmessage = (e) => {
  try {
    const { out, value } = _run(e.data);
    scope.postMessage({ id: e.data.id, out, value }, [out.buffer as ArrayBuffer]);
  } catch (error) {
    scope.postMessage({ id: e.data.id, error: (error as Error).message });
  }
};
