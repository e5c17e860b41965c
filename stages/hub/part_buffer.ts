/**
 * Where one download part lands: the part's bytes are laid out in advance as the pieces the
 * converter will get (at most `chunkSize`, never across a range) and the dropped gaps between
 * ranges, in reused buffers, and the fetcher copies what it reads straight into them: no network
 * chunk is queued, and no piece is gathered afterwards.
 *
 * @module
 */
import type { RangeChunk } from "../../pipeline/source.ts";
import type { BytePool } from "../byte_pool.ts";
import type { RangePart } from "./range_parts.ts";

/** Where a part's bytes land: the fetcher writes into the views it hands out, in order. */
export interface PartSink {
  /** Offset within the part of the next byte wanted. */
  readonly position: number;
  /** A view for the bytes at {@linkcode position}; not empty while the part is short. */
  space(): Uint8Array;
  /** Records that the first `n` bytes of the last {@linkcode space} were written. */
  filled(n: number): void;
}

interface _Segment {
  /** Offset within the part. */
  readonly start: number;
  readonly length: number;
  /** The range the bytes belong to, or -1 for a gap between ranges (dropped). */
  readonly rangeIndex: number;
  readonly rangeOffset: number;
  /** Whether the buffer comes from the pool (a piece big enough), else its own allocation. */
  readonly pooled: boolean;
  buffer: ArrayBuffer | null;
  filled: number;
}

/** What the consumer gets next from a part. */
export type PartOutput = { readonly chunk: RangeChunk } | { readonly gap: number } | null;

/** The landing buffers of one part: a {@linkcode PartSink} for the fetcher, pieces for the reader. */
export class PartBuffer implements PartSink {
  readonly #segments: _Segment[] = [];
  readonly #pool: BytePool;
  readonly #onBytes: (delta: number) => void;
  /** Segment being filled. */
  #filling = 0;
  /** Next segment for the consumer. */
  #taken = 0;

  /**
   * @param onBytes told of the bytes of every write.
   */
  constructor(part: RangePart, pool: BytePool, onBytes: (delta: number) => void) {
    this.#pool = pool;
    this.#onBytes = onBytes;
    let at = part.start;
    const add = (end: number, rangeIndex: number, rangeOffset: number) => {
      const length = end - at;
      this.#segments.push({
        start: at - part.start,
        length,
        rangeIndex,
        rangeOffset,
        // Gaps are dropped, and small pieces would pin a whole pooled buffer.
        pooled: rangeIndex >= 0 && length >= pool.capacity / 4,
        buffer: null,
        filled: 0,
      });
      at = end;
    };
    for (const slice of part.slices) {
      if (slice.fileStart > at) add(slice.fileStart, -1, 0);
      while (at < slice.fileEnd) {
        add(
          Math.min(slice.fileEnd, at + pool.capacity),
          slice.rangeIndex,
          slice.rangeOffset + at - slice.fileStart,
        );
      }
    }
    if (part.end > at) add(part.end, -1, 0);
  }

  get position(): number {
    const seg = this.#segments[this.#filling];
    return seg ? seg.start + seg.filled : this.#size();
  }

  space(): Uint8Array {
    const at = this.position;
    const seg = this.#segments[this.#filling];
    if (!seg) throw new RangeError(`Cannot take more bytes: the part is complete at ${at}`);
    seg.buffer ??= seg.pooled ? this.#pool.acquire() : new ArrayBuffer(seg.length);
    return new Uint8Array(seg.buffer, seg.filled, seg.length - seg.filled);
  }

  filled(n: number): void {
    const seg = this.#segments[this.#filling];
    if (!seg || seg.buffer === null || n < 0 || seg.filled + n > seg.length) {
      throw new RangeError(`Cannot record ${n} bytes beyond the last space`);
    }
    seg.filled += n;
    this.#onBytes(n);
    if (seg.filled === seg.length) this.#filling++;
  }

  /** The next piece or gap once it has fully arrived, in order; null while it has not. */
  next(): PartOutput {
    const seg = this.#segments[this.#taken];
    if (!seg || seg.filled < seg.length) return null;
    this.#taken++;
    const buffer = seg.buffer!;
    seg.buffer = null;
    if (seg.rangeIndex < 0) return { gap: seg.length };
    const bytes = new Uint8Array(buffer, 0, seg.length);
    const chunk = { rangeIndex: seg.rangeIndex, offset: seg.rangeOffset, bytes };
    return { chunk: seg.pooled ? { ...chunk, release: this.#pool.releaser(buffer) } : chunk };
  }

  /** Every segment was handed on. */
  get drained(): boolean {
    return this.#taken === this.#segments.length;
  }

  #size(): number {
    const last = this.#segments.at(-1);
    return last ? last.start + last.length : 0;
  }
}
