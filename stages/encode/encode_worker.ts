/**
 * Worker side of `EncoderPool`: encodes CPU-bound pieces (Q8_0) off the main thread, which keeps
 * reading and writing.
 *
 * @module
 */
import type { FloatDtype } from "./float_codecs.ts";
import { encodeQ8_0FromBytes, q8_0Bytes } from "./q8_0.ts";

/** A job for the worker. */
export type EncodeJob =
  | {
    readonly id: number;
    readonly kind: "q8_0";
    readonly dtype: FloatDtype;
    readonly bytes: Uint8Array;
  }
  | {
    readonly id: number;
    readonly kind: "scan";
    readonly dtype: FloatDtype;
    readonly bytes: Uint8Array;
  };

/** The worker's answer: encoded bytes and the first non-finite element or -1. */
export type EncodeReply =
  | { readonly id: number; readonly out: Uint8Array | null; readonly bad: number }
  | { readonly id: number; readonly error: string };

function _run(job: EncodeJob): { out: Uint8Array; bad: number } {
  const out = new Uint8Array(q8_0Bytes(job.bytes.length / (job.dtype === "F32" ? 4 : 2)));
  return { out, bad: encodeQ8_0FromBytes(job.dtype, job.bytes, out) };
}

// deno-lint-ignore no-explicit-any
const scope = self as any as {
  onmessage: ((e: MessageEvent<EncodeJob>) => void) | null;
  postMessage(message: EncodeReply, transfer?: Transferable[]): void;
};
scope.onmessage = (e) => {
  try {
    const { out, bad } = _run(e.data);
    scope.postMessage({ id: e.data.id, out, bad }, [out.buffer as ArrayBuffer]);
  } catch (error) {
    scope.postMessage({ id: e.data.id, error: (error as Error).message });
  }
};
