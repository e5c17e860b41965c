/**
 * Byte comparison of encoded blocks for oracle tests: says how many blocks differ, which one is
 * first, and shows both byte strings of that block, so a failing quantizer test points straight
 * at the input that broke it.
 *
 * @module
 */

/** Hex of bytes, space-separated. */
export function hex(bytes: ArrayLike<number>): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** How two equally long encodings differ, counted in blocks. */
export interface BlockDiff {
  readonly blocks: number;
  readonly badBlocks: number;
  /** Index of the first differing block, -1 when none differ. */
  readonly firstBad: number;
}

/** Counts the blocks of `blockBytes` bytes (the last may be partial) where two encodings differ. */
export function compareBlocks(
  actual: Uint8Array,
  expected: Uint8Array,
  blockBytes: number,
): BlockDiff {
  const length = Math.max(actual.length, expected.length);
  const blocks = Math.ceil(length / blockBytes);
  let badBlocks = 0;
  let firstBad = -1;
  for (let b = 0; b < blocks; b++) {
    const end = Math.min(length, (b + 1) * blockBytes);
    for (let i = b * blockBytes; i < end; i++) {
      if (actual[i] !== expected[i]) {
        badBlocks++;
        if (firstBad < 0) firstBad = b;
        break;
      }
    }
  }
  return { blocks, badBlocks, firstBad };
}

/**
 * Throws an Error when two encodings differ: the number of bad blocks, the first bad block's index
 * and both of its byte strings, plus `context(firstBad)` (e.g. that block's source values).
 */
export function assertBlocksEqual(
  actual: Uint8Array,
  expected: Uint8Array,
  blockBytes: number,
  label: string,
  context?: (firstBad: number) => string,
): void {
  if (actual.length !== expected.length) {
    throw new Error(
      `${label}: lengths differ: ours ${actual.length} bytes, reference ${expected.length}`,
    );
  }
  const { blocks, badBlocks, firstBad } = compareBlocks(actual, expected, blockBytes);
  if (badBlocks === 0) return;
  const at = firstBad * blockBytes;
  const end = Math.min(actual.length, at + blockBytes);
  throw new Error(
    `${label}: ${badBlocks} of ${blocks} blocks differ; first bad block ${firstBad}\n` +
      `  ours:      ${hex(actual.subarray(at, end))}\n` +
      `  reference: ${hex(expected.subarray(at, end))}` +
      (context === undefined ? "" : `\n  ${context(firstBad)}`),
  );
}
