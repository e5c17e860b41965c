/**
 * Per-format lookup tables shared by the CPU twin and the WGSL kernel, built once per format:
 *
 * - rtn thresholds: for each code c, the float32 bits of the smallest amax whose rtn code is at
 *   least c. Every rtn rule rises monotonically with amax, so the rtn code of a block is the
 *   largest c whose threshold is ≤ amax's bits (positive floats order like their bits). This
 *   replaces the division, log2f and float rounding of the rules by integer compares that any GPU
 *   does exactly.
 * - half scales H = S/2 of every code as sig·2^exp (sig in [1, 2), at most 4 significant bits),
 *   so the kernel can build any scale relative to a block's exponent without ever forming a
 *   subnormal number.
 * - float32 reciprocals of sig, for ROCmFP4's `x·fl(1/H)` element rule
 *   (fl(1/H) = fl(1/sig)·2^-exp exactly).
 * - the top usable level of each code: the highest level whose value level·H is finite in
 *   float32. Only E8M0 codes 253 and 254 lose levels (12·2^125 overflows); ggml's distance to such
 *   a level is inf, so it is never chosen, and a decoder would produce inf.
 *
 * @module
 */
import type { Fp4Format, Fp4FormatName } from "./formats.ts";
import { type Fp4RtnTarget, rtnScaleCode } from "./rtn_rules.ts";
import { halfScaleParts } from "./scale_grid.ts";

/** Table entries per kind: one per byte value. */
export const FP4_CODES = 256;
/** Threshold meaning "no amax reaches this code". */
export const NO_THRESHOLD = 0xffffffff;
/** Bits of the smallest positive normal float32, 2^-126. */
const MIN_NORMAL_BITS = 0x00800000;
/** Bits of the largest finite float32. */
const MAX_FINITE_BITS = 0x7f7fffff;

/** The tables of one format. */
export interface Fp4Tables {
  /** rtn thresholds (float32 bits) aiming the block maximum at the top level. */
  readonly thresholdsTop: Uint32Array;
  /** rtn thresholds aiming it at level 4 (Four-over-Six). */
  readonly thresholdsFour: Uint32Array;
  /** Significand of H per code; 0 where the scale is zero or the code is never written. */
  readonly hSig: Float32Array;
  /** Exponent of H per code. */
  readonly hExp: Int32Array;
  /** fl(1/hSig) per code (0 where hSig is 0). */
  readonly rSig: Float32Array;
  /** Highest level index 0..7 whose value is finite at each code. */
  readonly topLevel: Uint32Array;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function fromBits(bits: number): number {
  u32[0] = bits;
  return f32[0]!;
}

function thresholds(format: Fp4Format, target: Fp4RtnTarget): Uint32Array {
  const out = new Uint32Array(FP4_CODES).fill(NO_THRESHOLD);
  const code = (bits: number) => rtnScaleCode(format, fromBits(bits), target);
  const floor = code(MIN_NORMAL_BITS);
  const ceiling = code(MAX_FINITE_BITS);
  for (let c = 0; c < FP4_CODES; c++) {
    if (c <= floor) {
      out[c] = 0;
      continue;
    }
    if (c > ceiling) break;
    // Smallest bits in (MIN_NORMAL_BITS, MAX_FINITE_BITS] with code ≥ c.
    let lo = MIN_NORMAL_BITS;
    let hi = MAX_FINITE_BITS;
    while (hi - lo > 1) {
      const mid = lo + Math.floor((hi - lo) / 2);
      if (code(mid) >= c) hi = mid;
      else lo = mid;
    }
    out[c] = hi;
  }
  return out;
}

function build(format: Fp4Format): Fp4Tables {
  const hSig = new Float32Array(FP4_CODES);
  const hExp = new Int32Array(FP4_CODES);
  const rSig = new Float32Array(FP4_CODES);
  const topLevel = new Uint32Array(FP4_CODES).fill(7);
  for (let c = 0; c <= format.maxCode; c++) {
    const parts = halfScaleParts(format.grid, c);
    if (parts === null) continue;
    hSig[c] = parts.sig;
    hExp[c] = parts.exp;
    rSig[c] = Math.fround(1 / parts.sig);
    let top = 7;
    while (top > 0 && format.levels[top]! * parts.sig * 2 ** parts.exp >= 2 ** 128) top--;
    topLevel[c] = top;
  }
  return {
    thresholdsTop: thresholds(format, "top"),
    thresholdsFour: thresholds(format, "four"),
    hSig,
    hExp,
    rSig,
    topLevel,
  };
}

const cache = new Map<Fp4FormatName, Fp4Tables>();

/** The tables of a format, built on first use. */
export function fp4Tables(format: Fp4Format): Fp4Tables {
  let tables = cache.get(format.name);
  if (tables === undefined) {
    tables = build(format);
    cache.set(format.name, tables);
  }
  return tables;
}

/**
 * The largest code whose threshold is ≤ `amaxBits`: the rtn code of a block whose amax has these
 * float32 bits. Thresholds never fall as the code rises, and code 0's is 0.
 */
export function lookupThreshold(table: Uint32Array, amaxBits: number): number {
  let lo = 0;
  let hi = FP4_CODES - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (table[mid]! <= amaxBits) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * The tables as one u32 array for the kernel: thresholdsTop, thresholdsFour, hSig bits, hExp,
 * rSig bits, topLevel, each {@link FP4_CODES} long.
 */
export function packFp4Tables(tables: Fp4Tables): Uint32Array<ArrayBuffer> {
  const out = new Uint32Array(FP4_CODES * 6);
  out.set(tables.thresholdsTop, 0);
  out.set(tables.thresholdsFour, FP4_CODES);
  out.set(new Uint32Array(tables.hSig.buffer), FP4_CODES * 2);
  out.set(new Uint32Array(tables.hExp.buffer), FP4_CODES * 3);
  out.set(new Uint32Array(tables.rSig.buffer), FP4_CODES * 4);
  out.set(tables.topLevel, FP4_CODES * 5);
  return out;
}
