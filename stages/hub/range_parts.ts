/**
 * Turns the ordered byte ranges a converter asks for into download parts: neighbouring ranges of
 * one file share a request, big ranges are split so one large tensor still downloads over several
 * connections. Parts keep the order of the ranges.
 *
 * @module
 */
import type { ByteRange } from "../../pipeline/source.ts";

/** The bytes of one range that a part carries. */
export interface PartSlice {
  /** Index of the range in the list given to `readRanges`. */
  readonly rangeIndex: number;
  /** Offset of `fileStart` from the start of the range. */
  readonly rangeOffset: number;
  readonly fileStart: number;
  readonly fileEnd: number;
}

/** One request's worth of a file: bytes `[start, end)`; the slices cover it, except gaps. */
export interface RangePart {
  readonly path: string;
  readonly start: number;
  readonly end: number;
  /** In file order; bytes between slices (small gaps) are downloaded and dropped. */
  readonly slices: readonly PartSlice[];
}

/** Options for {@linkcode planParts}. */
export interface PartPlanOptions {
  /** Largest part in bytes. */
  partSize: number;
  /** Largest gap between two ranges that still share a part, in bytes. */
  coalesceGap: number;
}

interface _OpenPart {
  path: string;
  start: number;
  end: number;
  slices: PartSlice[];
}

/**
 * Splits and merges `ranges` into parts of at most `partSize` bytes, in range order. Empty ranges
 * produce no part.
 *
 * @throws {RangeError} for a range whose bounds are not integers with `0 <= start <= end`.
 *
 * @example Two neighbouring tensors share a part; a big one is split
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { planParts } from "./range_parts.ts";
 * const parts = planParts([
 *   { path: "a", start: 0, end: 10 },
 *   { path: "a", start: 10, end: 20 },
 *   { path: "a", start: 20, end: 100 },
 * ], { partSize: 40, coalesceGap: 0 });
 * strictEqual(parts.length, 3);
 * strictEqual(parts[0]!.slices.length, 3);
 * ```
 */
export function planParts(ranges: readonly ByteRange[], options: PartPlanOptions): RangePart[] {
  const { partSize, coalesceGap } = options;
  if (!Number.isSafeInteger(partSize) || partSize <= 0) {
    throw new RangeError(
      `Cannot plan download parts as partSize is not a positive integer: ${partSize}`,
    );
  }
  const parts: _OpenPart[] = [];
  let open: _OpenPart | null = null;
  ranges.forEach((range, rangeIndex) => {
    const { path, start, end } = range;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      throw new RangeError(
        `Cannot read range ${rangeIndex} as its bounds are not integers with 0 <= start <= end: ${path} ${start}..${end}`,
      );
    }
    let pos = start;
    while (pos < end) {
      const fits = open !== null && open.path === path && pos >= open.end &&
        pos - open.end <= coalesceGap && pos < open.start + partSize;
      if (!fits) {
        open = { path, start: pos, end: pos, slices: [] };
        parts.push(open);
      }
      const part = open!;
      const stop = Math.min(end, part.start + partSize);
      part.slices.push({ rangeIndex, rangeOffset: pos - start, fileStart: pos, fileEnd: stop });
      part.end = stop;
      pos = stop;
    }
  });
  return parts;
}
