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
import { fp4Bytes, fp4Format, type Fp4Weighting } from "../gpu/fp4/formats.ts";
import { Fp4InputError } from "../gpu/fp4/input_error.ts";
import type { Fp4SearchMode } from "../gpu/fp4/search_options.ts";
import { type PlannedTensor, tensorElements } from "../pipeline/plan.ts";
import { findNonFinite, findNonFiniteHalf } from "./encode/finite.ts";
import { decodeFloats, encodeBf16, encodeF16, floatDtypeBytes } from "./encode/float_codecs.ts";
import { encodeQ8_0FromBytes, q8_0Bytes } from "./encode/q8_0.ts";
import { EncoderPool } from "./encode/encoder_pool.ts";
import { fp4Settings } from "./encode/fp4_settings.ts";
import { GpuOuterScales } from "./encode/gpu_outer_scale.ts";
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
  /** Workers for Q8_0. @default one per core beyond the main thread (1..4) */
  workers?: number;
  /**
   * Workers started by the caller (who closes them), so they are up before the first piece;
   * otherwise the stage starts its own at the first big CPU encode.
   */
  pool?: EncoderPool;
  /**
   * GPU bytes for outer-scaled tensors kept on the GPU until their last piece is in, so their
   * outer scale needs no second read (stages/encode/gpu_outer_scale.ts); larger tensors use the
   * pre-pass. @default 2 GiB on a hardware GPU, 0 (the pre-pass) on a software adapter
   */
  gpuOuterScaleBytes?: number;
  /** Per-column importance for a tensor (length ne[0]), or null. */
  imatrixFor?: (tensor: PlannedTensor) => Float32Array | null;
}

/**
 * Encodes in flight at once, so GPU uploads, kernels and read-backs overlap: each GPU call costs
 * Deno ≥ 10 ms of map latency, and 8 pieces of 8 MiB keep an H200 busy (measured with
 * bench/gpu_check.ts: 4 Mi elements × 3 in flight 1.7 GB/s, × 8 in flight 2.4 GB/s).
 */
const IN_FLIGHT = 8;

/**
 * Encoded bytes that pieces kept on the GPU (outer scale found there) may hold in flight besides:
 * they hold no input, and their tensor's pieces are encoded in a few calls at once. More keeps
 * more read-backs (and their staging buffers) alive: on an H100 (bench/gpu_convert.ts 20, two
 * runs) 32 MiB ran at 1.81–1.83 GB/s with 398–413 MiB peak RSS, 64 MiB at 1.68–1.71 GB/s with
 * 561–568 MiB, 16–24 MiB at 1.56–1.90 GB/s and 8 MiB at 1.30 GB/s.
 */
const KEPT_BYTES = 32 << 20;

/**
 * Elements of a tensor below which its pieces are encoded here unless workers already run:
 * starting the first one blocks this thread 12–38 ms, about what Q8_0 of 4 Mi elements costs
 * here (a small token_embd before a GPU run, say).
 */
const POOL_MIN_TENSOR = 4 << 20;

/**
 * Knobs for benches (bench/gpu_convert.ts) and tests, not callers: the defaults are the measured
 * best.
 */
export const encodeStreamTuning = {
  inFlight: IN_FLIGHT,
  keptBytes: KEPT_BYTES,
  poolMinTensor: POOL_MIN_TENSOR,
};

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

/** A piece being encoded. */
interface _Job {
  readonly result: Promise<EncodedPiece>;
  settled: boolean;
  /**
   * Its work was handed to a device. Not yet for a piece of a tensor whose outer scale is found
   * on the GPU: that waits for the tensor's later pieces, which only new input brings.
   */
  started: boolean;
  /** Its input's buffer is given back by the encode itself (FP4: once read or uploaded). */
  readonly released?: boolean;
  /** For a piece kept on the GPU, the encoded bytes it will hold. */
  readonly kept?: number;
}

/** Encodes pieces; output pieces keep the order of the input. */
export class EncodeStream extends TransformStream<TensorPiece, EncodedPiece> {
  /**
   * @param gpuOuterScales tensors (plan indices) whose outer scale is found here on the GPU
   * rather than by the pre-pass (see `planGpuOuterScales`).
   */
  constructor(
    tensors: readonly PlannedTensor[],
    options: EncodeOptions = {},
    gpuOuterScales: ReadonlySet<number> = new Set(),
  ) {
    const pending: _Job[] = [];
    const gpuScales = gpuOuterScales.size > 0
      ? new GpuOuterScales(tensors, options, gpuOuterScales)
      : null;
    let pool: EncoderPool | null = null;
    const workers = (): EncoderPool => options.pool ?? (pool ??= new EncoderPool(options.workers));
    const closePool = () => {
      pool?.close();
      pool = null;
      gpuScales?.close();
    };
    let encoderTensor = -1;
    let encoder: Promise<Fp4Encoder> | null = null;

    const fp4EncoderFor = (index: number): Promise<Fp4Encoder> => {
      if (index !== encoderTensor || encoder === null) {
        const { format, nPerRow, options: settings } = fp4Settings(tensors[index]!, options);
        encoderTensor = index;
        encoder = createFp4Encoder(format, nPerRow, settings);
      }
      return encoder;
    };

    const failer = (t: PlannedTensor, firstRow: number) => (i: number, why: string): never => {
      throw new NonFiniteWeightError(t.name, _source(t), firstRow * _rowElements(t) + i, why);
    };

    /**
     * An FP4 piece from its encoded bytes: errors named, `--simulate` decoded back. Takes the
     * piece's place, not its bytes: a piece waiting on the GPU must not keep them in host memory.
     */
    const fp4Piece = async (
      at: { tensor: number; firstRow: number; elements: number },
      encoded: () => Promise<Uint8Array>,
    ): Promise<EncodedPiece> => {
      const t = tensors[at.tensor]!;
      const fp4 = t.fp4!;
      let bytes: Uint8Array;
      try {
        bytes = await encoded();
      } catch (e) {
        if (e instanceof Fp4InputError) failer(t, at.firstRow)(e.index, "is NaN or infinite");
        throw e;
      }
      if (!fp4.simulate) return { tensor: at.tensor, bytes };
      const back = decodeFp4(fp4Format(fp4.format), bytes, at.elements, {
        outerScale: fp4.outerScale?.[0] ?? 1,
      });
      return { tensor: at.tensor, bytes: _encodeFloat(t.type.name, back).out };
    };

    const encode = async (piece: TensorPiece): Promise<EncodedPiece> => {
      const t = tensors[piece.tensor]!;
      const fail = failer(t, piece.firstRow);
      if (piece.ropeHeadRows && t.fp4 === null) {
        throw new Error(`Cannot encode ${t.name} as only FP4 encodes reorder rows for rope`);
      }
      if (PASSTHROUGH[piece.dtype] === t.type.name && t.fp4 === null) {
        // On this thread: a scan is cheaper than copying the piece to a worker.
        const bad = piece.dtype === "F32"
          ? findNonFinite(_f32View(piece.bytes))
          : findNonFiniteHalf(piece.bytes, piece.dtype);
        if (bad >= 0) fail(bad, "is NaN or infinite");
        // The same bytes go on: so do their origin (for kernel copies) and buffer release.
        return {
          tensor: piece.tensor,
          bytes: piece.bytes,
          ...(piece.origin ? { origin: piece.origin } : {}),
          ...(piece.release ? { release: piece.release } : {}),
        };
      }
      const elemBytes = floatDtypeBytes(piece.dtype);
      if (t.type.name === "Q8_0") {
        // One pass from source bytes, without a full float32 copy; big pieces on a worker.
        if (
          piece.bytes.length >= POOL_MIN_BYTES &&
          (workers().started || tensorElements(t) >= encodeStreamTuning.poolMinTensor)
        ) {
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
        const at = { tensor: piece.tensor, firstRow: piece.firstRow, elements: n };
        return await fp4Piece(at, async () => {
          try {
            const encoder = await fp4EncoderFor(piece.tensor);
            const headRows = piece.ropeHeadRows ?? 0;
            // The GPU widens BF16 itself: half the upload and no decode on this thread.
            if (piece.dtype === "BF16") return encoder.encodeBf16(piece.bytes, headRows);
            const values = new Float32Array(n);
            decodeFloats(piece.dtype, piece.bytes, values);
            return encoder.encode(values, headRows);
          } finally {
            // An encoder has read its input once the call returns (uploaded, or encoded on the
            // CPU): the buffer goes back now, not when the GPU answers, so the source reuses it
            // instead of allocating (and faulting in) a fresh one for every piece in flight.
            piece.release?.();
          }
        });
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

    const start = async (piece: TensorPiece): Promise<_Job> => {
      if (gpuScales?.has(piece.tensor)) {
        const { bytes, submitted } = await gpuScales.add(piece);
        piece.release?.(); // uploaded
        const elements = piece.bytes.length / floatDtypeBytes(piece.dtype);
        const at = { tensor: piece.tensor, firstRow: piece.firstRow, elements };
        const result = fp4Piece(at, () => bytes);
        const kept = fp4Bytes(fp4Format(tensors[piece.tensor]!.fp4!.format), elements);
        const job: _Job = { result, settled: false, started: false, released: true, kept };
        submitted.then(() => job.started = true);
        return job;
      }
      // A generated tensor (an outer scale) is read once every piece before it is encoded: an
      // outer scale found on the GPU is known only then.
      const t = tensors[piece.tensor]!;
      const result = t.origin.kind === "generated" && gpuScales !== null
        ? Promise.allSettled(pending.map((j) => j.result)).then(() => encode(piece))
        : encode(piece);
      // FP4 encodes give their input back themselves (see `encode`).
      const released = t.fp4 !== null;
      return { result, settled: false, started: true, released };
    };

    super({
      async transform(piece, controller) {
        try {
          const job = await start(piece);
          // Encoded: the input's buffer can be reused (a passthrough piece hands it on; one kept
          // on the GPU was given back at upload, and its job must not hold it until the tensor
          // is complete).
          const release = job.released ? undefined : piece.release;
          // Awaited below, in order; meanwhile a rejection must not count as unhandled.
          job.result.then((out) => {
            job.settled = true;
            if (out.release === undefined) release?.();
          }, () => job.settled = true);
          pending.push(job);
          // Pass on what is done (CPU encodes finish at once); wait only when too much is in
          // flight, and never on a piece that waits for later input (its tensor's last piece).
          await Promise.resolve();
          while (pending.length > 0) {
            const head = pending[0]!;
            if (!head.settled) {
              let count = 0, kept = 0;
              for (const j of pending) {
                if (!j.started) continue;
                if (j.kept === undefined) count++;
                else kept += j.kept;
              }
              const { inFlight, keptBytes } = encodeStreamTuning;
              const over = head.started ? 1 : 2;
              if (count < over * inFlight && kept < over * keptBytes) break;
            }
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
