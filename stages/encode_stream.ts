/**
 * Encodes tensor pieces into their output type: a checked byte copy when the source dtype is the
 * output type; otherwise decode to float32 and encode (F32, F16, BF16, Q8_0, or an FP4 format on
 * the GPU or its CPU twin, optionally quantized and dequantized back to floats for `--simulate`).
 * Several encodes may be in flight (GPU read-backs are slow to start); results leave in order.
 * Non-finite weights are an error naming the tensor, never silently written.
 *
 * @module
 */
import type { DeviceChoice } from "../gpu/device.ts";
import { decodeFp4 } from "../gpu/fp4/decode.ts";
import { createFp4Encoder, type Fp4Encoder } from "../gpu/fp4/encode.ts";
import { fp4Format, type Fp4Weighting } from "../gpu/fp4/formats.ts";
import { Fp4InputError } from "../gpu/fp4/input_error.ts";
import type { Fp4SearchMode } from "../gpu/fp4/search_options.ts";
import type { PlannedTensor } from "../pipeline/plan.ts";
import { findNonFinite, findNonFiniteHalf } from "./encode/finite.ts";
import { decodeFloats, encodeBf16, encodeF16, floatDtypeBytes } from "./encode/float_codecs.ts";
import { encodeQ8_0FromBytes, q8_0Bytes } from "./encode/q8_0.ts";
import { EncoderPool } from "./encode/encoder_pool.ts";
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

/** FP4 encoder settings shared by every FP4 tensor of a run. */
export interface EncodeOptions {
  /** Scale search (`window` measured best by KLD: `deno task bench quality`). @default "window" */
  mode?: Fp4SearchMode;
  /** Half-width of the `window` search. @default 12 */
  window?: number;
  /** Also try mapping the block max to 4 (Four-over-Six). @default false */
  fourOverSix?: boolean;
  /**
   * How the imatrix weighs the search: per input column (llama.cpp PR #25153), or llama.cpp's
   * K-quant rule imatrix·sqrt(σ²+x²) (`row-sigma`). @default the format's own rule
   */
  weighting?: Fp4Weighting;
  /** Where FP4 kernels run. @default "auto" */
  device?: DeviceChoice;
  /** Workers for Q8_0 and NaN scans. @default one per core beyond the main thread (1..4) */
  workers?: number;
  /** Per-column importance for a tensor (length ne[0]), or null. */
  imatrixFor?: (tensor: PlannedTensor) => Float32Array | null;
}

/**
 * Encodes in flight at once, so GPU uploads, kernels and read-backs overlap: each GPU call costs
 * Deno ≥ 10 ms of map latency, and 8 pieces of 8 MiB keep an H200 busy (measured with
 * bench/gpu_check.ts: 4 Mi elements × 3 in flight 1.7 GB/s, × 8 in flight 2.4 GB/s).
 */
const IN_FLIGHT = 8;

const PASSTHROUGH: Record<string, string> = { F32: "F32", F16: "F16", BF16: "BF16" };

/** Pieces smaller than this are cheaper on the main thread than a round trip to a worker. */
const POOL_MIN_BYTES = 256 << 10;

function _source(t: PlannedTensor): string {
  return t.origin.kind === "checkpoint"
    ? `${t.origin.entry.name} in ${t.origin.file}`
    : "generated";
}

function _rowElements(t: PlannedTensor): number {
  return t.origin.kind === "checkpoint"
    ? t.origin.entry.shape.slice(1).reduce((a, b) => a * b, 1)
    : 1;
}

/** Writes float32 values as a float output type; returns the first bad index or -1. */
function _encodeFloat(type: string, values: Float32Array): { out: Uint8Array; bad: number } {
  switch (type) {
    case "F32":
      return { out: new Uint8Array(values.buffer), bad: findNonFinite(values) };
    case "F16": {
      const out = new Uint8Array(values.length * 2);
      return { out, bad: encodeF16(values, out) };
    }
    case "BF16": {
      const out = new Uint8Array(values.length * 2);
      return { out, bad: encodeBf16(values, out) };
    }
  }
  throw new TypeError(`Cannot write floats as ${type}`);
}

/** Encodes pieces; output pieces keep the order of the input. */
export class EncodeStream extends TransformStream<TensorPiece, EncodedPiece> {
  constructor(tensors: readonly PlannedTensor[], options: EncodeOptions = {}) {
    const pending: { result: Promise<EncodedPiece>; settled: boolean }[] = [];
    let pool: EncoderPool | null = null;
    const workers = (): EncoderPool => pool ??= new EncoderPool(options.workers);
    const closePool = () => {
      pool?.close();
      pool = null;
    };
    let encoderTensor = -1;
    let encoder: Promise<Fp4Encoder> | null = null;

    const fp4EncoderFor = (index: number): Promise<Fp4Encoder> => {
      if (index !== encoderTensor || encoder === null) {
        const t = tensors[index]!;
        const imatrix = options.imatrixFor?.(t) ?? null;
        encoderTensor = index;
        const base = fp4Format(t.fp4!.format);
        const format = options.weighting ? { ...base, weighting: options.weighting } : base;
        encoder = createFp4Encoder(format, t.ne[0]!, {
          mode: options.mode ?? "window",
          window: options.window ?? 12,
          fourOverSix: options.fourOverSix ?? false,
          device: options.device ?? "auto",
          imatrix,
          outerScale: t.fp4!.outerScale?.[0] ?? 1,
        });
      }
      return encoder;
    };

    const encode = async (piece: TensorPiece): Promise<EncodedPiece> => {
      const t = tensors[piece.tensor]!;
      const fail = (i: number, why: string): never => {
        throw new NonFiniteWeightError(
          t.name,
          _source(t),
          piece.firstRow * _rowElements(t) + i,
          why,
        );
      };
      if (PASSTHROUGH[piece.dtype] === t.type.name && t.fp4 === null) {
        // On this thread: a scan is cheaper than copying the piece to a worker.
        const bad = piece.dtype === "F32"
          ? findNonFinite(_f32View(piece.bytes))
          : findNonFiniteHalf(piece.bytes, piece.dtype);
        if (bad >= 0) fail(bad, "is NaN or infinite");
        return piece.origin
          ? { tensor: piece.tensor, bytes: piece.bytes, origin: piece.origin }
          : { tensor: piece.tensor, bytes: piece.bytes };
      }
      const elemBytes = floatDtypeBytes(piece.dtype);
      if (t.type.name === "Q8_0") {
        // One pass from source bytes, without a full float32 copy; big pieces on a worker.
        if (piece.bytes.length >= POOL_MIN_BYTES) {
          const { out, bad } = await workers().q8_0(piece.dtype, piece.bytes);
          if (bad >= 0) fail(bad, "is NaN or infinite");
          return { tensor: piece.tensor, bytes: out };
        }
        const out = new Uint8Array(q8_0Bytes(piece.bytes.length / elemBytes));
        const bad = encodeQ8_0FromBytes(piece.dtype, piece.bytes, out);
        if (bad >= 0) fail(bad, "is NaN or infinite");
        return { tensor: piece.tensor, bytes: out };
      }
      const n = piece.bytes.length / elemBytes;
      if (t.fp4 !== null) {
        let bytes: Uint8Array;
        try {
          const encoder = await fp4EncoderFor(piece.tensor);
          if (piece.dtype === "BF16") {
            // The GPU widens BF16 itself: half the upload and no decode on this thread.
            bytes = await encoder.encodeBf16(piece.bytes);
          } else {
            const values = new Float32Array(n);
            decodeFloats(piece.dtype, piece.bytes, values);
            bytes = await encoder.encode(values);
          }
        } catch (e) {
          if (e instanceof Fp4InputError) fail(e.index, "is NaN or infinite");
          throw e;
        }
        if (!t.fp4.simulate) return { tensor: piece.tensor, bytes };
        const back = decodeFp4(fp4Format(t.fp4.format), bytes, n, {
          outerScale: t.fp4.outerScale?.[0] ?? 1,
        });
        return { tensor: piece.tensor, bytes: _encodeFloat(t.type.name, back).out };
      }
      const values = new Float32Array(n);
      decodeFloats(piece.dtype, piece.bytes, values);
      const { out, bad } = _encodeFloat(t.type.name, values);
      if (bad >= 0) {
        fail(
          bad,
          Number.isFinite(values[bad]!)
            ? `(${values[bad]}) does not fit ${t.type.name}`
            : "is NaN or infinite",
        );
      }
      return { tensor: piece.tensor, bytes: out };
    };

    super({
      async transform(piece, controller) {
        const job = { result: encode(piece), settled: false };
        // Awaited below, in order; meanwhile a rejection must not count as unhandled.
        job.result.then(() => job.settled = true, () => job.settled = true);
        pending.push(job);
        // Pass on what is done (CPU encodes finish at once), wait only when too much is in flight.
        await Promise.resolve();
        try {
          while (pending[0]?.settled || pending.length >= IN_FLIGHT) {
            controller.enqueue(await pending.shift()!.result);
          }
        } catch (e) {
          closePool(); // the stream errors: no flush will come
          throw e;
        }
      },
      async flush(controller) {
        try {
          while (pending.length > 0) controller.enqueue(await pending.shift()!.result);
        } finally {
          closePool();
        }
      },
      cancel: closePool,
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
