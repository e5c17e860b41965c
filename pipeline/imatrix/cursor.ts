/**
 * A bounds-checked little-endian reader over the bytes of an imatrix file. Running past the end
 * throws an {@linkcode ImatrixError} that says what was being read, where, and how long the file is.
 *
 * @module
 */
import { ImatrixError, imatrixSubject } from "./errors.ts";

const decoder = new TextDecoder("utf-8", { fatal: false });

/** Reads fields in order; `entry` names the entry being read, for messages. */
export class ImatrixCursor {
  readonly bytes: Uint8Array;
  readonly file: string;
  entry: string | null = null;
  #pos = 0;
  readonly #view: DataView;

  constructor(bytes: Uint8Array, file: string) {
    this.bytes = bytes;
    this.file = file;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Current byte offset. */
  get pos(): number {
    return this.#pos;
  }

  /** Bytes left after the current offset. */
  get remaining(): number {
    return this.bytes.length - this.#pos;
  }

  /** An error about the current entry (or the file). */
  fail(reason: string, state: string): ImatrixError {
    return new ImatrixError(
      this.file,
      this.entry,
      `Cannot read ${imatrixSubject(this.file, this.entry)} as ${reason}: ${state}`,
    );
  }

  /** Claims `n` bytes for `what` and returns their offset. */
  take(n: number, what: string): number {
    if (!Number.isSafeInteger(n) || n < 0 || n > this.remaining) {
      throw this.fail(
        "it is truncated",
        `${what} needs ${n} bytes at offset ${this.#pos}, the file has ${this.bytes.length}`,
      );
    }
    const at = this.#pos;
    this.#pos += n;
    return at;
  }

  i32(what: string): number {
    return this.#view.getInt32(this.take(4, what), true);
  }
  u32(what: string): number {
    return this.#view.getUint32(this.take(4, what), true);
  }
  f32At(offset: number): number {
    return this.#view.getFloat32(offset, true);
  }
  /** A u64 as a number; larger than 2^53 is an error (no real file gets near it). */
  u64(what: string): number {
    const v = this.#view.getBigUint64(this.take(8, what), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw this.fail(`${what} is out of range`, `${v}`);
    }
    return Number(v);
  }

  /** `n` float32 values. */
  f32s(n: number, what: string): Float32Array {
    const at = this.take(n * 4, what);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.#view.getFloat32(at + 4 * i, true);
    return out;
  }

  /** `n` bytes as text, cut at the first NUL like a C string. */
  cText(n: number, what: string): string {
    const at = this.take(n, what);
    const raw = this.bytes.subarray(at, at + n);
    const nul = raw.indexOf(0);
    return decoder.decode(nul < 0 ? raw : raw.subarray(0, nul));
  }

  /** A GGUF string: u64 length, then UTF-8 bytes. */
  ggufString(what: string): string {
    const n = this.u64(`the length of ${what}`);
    const at = this.take(n, what);
    return decoder.decode(this.bytes.subarray(at, at + n));
  }
}
