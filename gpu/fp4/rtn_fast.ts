/**
 * The fast CPU path of plain `rtn` (no Four-over-Six, outer scale 1): the same bytes as the
 * general twin (sub_block.ts), reduced to integer compares on float32 bits.
 *
 * Why it is the same. With amax's code c fixed, the twin's choice for an element depends only on
 * |x| (subnormal inputs read as 0), and it rises monotonically with |x|, so it is "how many of 7
 * per-code thresholds |x| exceeds", the thresholds being float32 bit patterns:
 *
 * - `nearest`: level k+1 over k exactly when |x'| > mid_k·d' (the twin's countAbove on the scaled
 *   midpoints), and scaling by 2^-E' is exact, so the threshold is mid_k·H (H = S/2), a value of at
 *   most 8 significant bits, exact in float32 or beyond the largest float (then never exceeded).
 *   The twin's flush of tiny |x'| changes nothing: every nonzero d' it uses is ≥ 2^-120·2^E', so
 *   mid_0·d' is far above the flush bound. Beyond the top usable level·H the twin computes ggml's
 *   float32 distances; when the top level is 7 and |x| ≤ 2^20·H those distances are exact enough
 *   that level 7 wins (their gaps, ≥ 4·d', exceed an ulp), which the compares give too. Elements
 *   past that bound (or past a lower top level) take {@link slowLevel}, the twin's loop verbatim.
 * - `reciprocal`: level k+1 over k exactly when fl(|x|·fl(1/H)) > mid_k (the twin computes the same
 *   real product in the scaled domain; rounding is monotone), i.e. when |x| exceeds the largest
 *   float32 whose rounded product is ≤ mid_k, found once per code by bisection.
 *
 * Thresholds are clamped to ≥ 0x007FFFFF so subnormal inputs count as 0. Sub-blocks whose amax
 * is subnormal or zero, or whose d' the twin treats as zero (k outside [LOW_K, HIGH_K] or a zero
 * scale), are written as all-zero codes, as the twin writes them.
 *
 * @module
 */
import type { Fp4Format, Fp4FormatName } from "./formats.ts";
import { MODE_RTN, type ResolvedFp4Search } from "./search_options.ts";
import { FLUSH_BELOW, HIGH_K, LOW_K } from "./sub_block.ts";
import { FP4_CODES, fp4Tables } from "./tables.ts";

/** Whether the fast path gives the twin's bytes for these options. */
export function rtnFastApplies(search: ResolvedFp4Search): boolean {
  return search.mode === MODE_RTN && !search.fourOverSix && search.invOuter === 1;
}

/** Per-format data of the fast path. */
interface RtnFastTables {
  /** thresholdsTop (float32 bits of the smallest amax per code). */
  readonly thresholds: Int32Array;
  /** First candidate code per amax exponent byte (amaxBits >>> 23). */
  readonly startCode: Uint8Array;
  /** Per code, 8 entries: 7 element thresholds (bits), then the slow-path bound (bits). */
  readonly perCode: Int32Array;
  /** Per code: exponent of H, or a sentinel (0x7fff) where the scale is zero. */
  readonly hExp: Int32Array;
  readonly hSig: Float64Array;
  readonly topLevel: Uint8Array;
  readonly levels: Float64Array;
}

const SUBNORMAL_TOP = 0x007fffff;
const MAX_FINITE = 0x7f7fffff;
const NO_SCALE = 0x7fff;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Float32 bits of a non-negative value exact in float32, or the largest finite past it. */
function bitsOfExact(v: number): number {
  if (v > 3.4028234663852886e38) return MAX_FINITE;
  f32[0] = v;
  return u32[0]!;
}

function fromBits(bits: number): number {
  u32[0] = bits;
  return f32[0]!;
}

/** Largest float32 bits b ≥ 0 with fl(x(b)·r) ≤ mid (finite x only). */
function reciprocalThreshold(r: number, mid: number): number {
  if (Math.fround(fromBits(MAX_FINITE) * r) <= mid) return MAX_FINITE;
  let lo = 0; // fl(0·r) = 0 ≤ mid
  let hi = MAX_FINITE;
  while (hi - lo > 1) {
    const m = lo + Math.floor((hi - lo) / 2);
    if (Math.fround(fromBits(m) * r) <= mid) lo = m;
    else hi = m;
  }
  return lo;
}

function build(format: Fp4Format): RtnFastTables {
  const t = fp4Tables(format);
  const thresholds = new Int32Array(FP4_CODES);
  for (let c = 0; c < FP4_CODES; c++) thresholds[c] = t.thresholdsTop[c]! | 0;
  // NO_THRESHOLD (0xffffffff) reads as -1: the lookup treats negative entries as unreachable.
  const startCode = new Uint8Array(256);
  for (let e = 0; e < 256; e++) {
    const bits = e << 23;
    let c = 0;
    for (let k = 1; k < FP4_CODES; k++) {
      const th = thresholds[k]!;
      if (th >= 0 && th <= bits) c = k;
    }
    startCode[e] = c;
  }
  const levels = Float64Array.from(format.levels);
  const mids = new Float64Array(7);
  for (let k = 0; k < 7; k++) mids[k] = (levels[k]! + levels[k + 1]!) / 2;
  const perCode = new Int32Array(FP4_CODES * 8);
  const hExp = new Int32Array(FP4_CODES).fill(NO_SCALE);
  const hSig = new Float64Array(FP4_CODES);
  const topLevel = new Uint8Array(FP4_CODES);
  const reciprocal = format.elementRule === "reciprocal";
  for (let c = 0; c < FP4_CODES; c++) {
    const sig = t.hSig[c]!;
    topLevel[c] = t.topLevel[c]!;
    if (sig === 0) continue;
    hSig[c] = sig;
    hExp[c] = t.hExp[c]!;
    const h = sig * 2 ** t.hExp[c]!;
    const top = t.topLevel[c]!;
    const base = c * 8;
    for (let k = 0; k < 7; k++) {
      let th: number;
      if (k >= top) th = MAX_FINITE; // never exceeded (levels above the top one are unusable)
      else if (reciprocal) th = reciprocalThreshold(t.rSig[c]! * 2 ** -t.hExp[c]!, mids[k]!);
      else th = bitsOfExact(mids[k]! * h);
      perCode[base + k] = th < SUBNORMAL_TOP ? SUBNORMAL_TOP : th;
    }
    let slow: number;
    if (reciprocal) slow = MAX_FINITE;
    else if (top === 7) slow = bitsOfExact(2 ** 20 * h);
    else slow = bitsOfExact(levels[top]! * h);
    perCode[base + 7] = slow < SUBNORMAL_TOP ? SUBNORMAL_TOP : slow;
  }
  return { thresholds, startCode, perCode, hExp, hSig, topLevel, levels };
}

const cache = new Map<Fp4FormatName, RtnFastTables>();

function tablesOf(format: Fp4Format): RtnFastTables {
  let tables = cache.get(format.name);
  if (tables === undefined) {
    tables = build(format);
    cache.set(format.name, tables);
  }
  return tables;
}

/**
 * The twin's level for an element past the fast bound (nearest rule): ggml's first minimum of
 * flushed float32 distances in the scaled domain, exactly as sub_block.ts computes it.
 */
function slowLevel(
  ab: number,
  ec: number,
  code: number,
  tables: RtnFastTables,
): number {
  const f = Math.fround;
  const a0 = fromBits(ab);
  let a = f(a0 * 2 ** -ec);
  if (a < FLUSH_BELOW) a = 0;
  const d = tables.hSig[code]! * 2 ** (tables.hExp[code]! - ec);
  const top = tables.topLevel[code]!;
  const levels = tables.levels;
  if (!(a > levels[top]! * d)) {
    // Not beyond the top level after all (only possible at the 2^20·H bound): count midpoints.
    let m = 0;
    while (m < top && a > ((levels[m]! + levels[m + 1]!) / 2) * d) m++;
    return m;
  }
  let best = 0;
  let bestErr = a;
  for (let m = 1; m <= top; m++) {
    let err = f(a - levels[m]! * d);
    if (err < FLUSH_BELOW && err > -FLUSH_BELOW) err = 0;
    if (err < bestErr) {
      best = m;
      bestErr = err;
    }
  }
  return best;
}

/** Blocks per call of {@link encodeBlocks}: small enough that it is called often and optimized. */
const CHUNK_BLOCKS = 256;

/**
 * Encodes whole blocks of checked input (finite; see `checkFp4Input`) with plain rtn into `out`
 * (at least `fp4Bytes(format, rows.length)` long; every byte of that range is written).
 * Call only where {@link rtnFastApplies}.
 */
export function encodeFp4RtnFast(format: Fp4Format, rows: Float32Array, out: Uint8Array): void {
  const tables = tablesOf(format);
  const xi = new Int32Array(rows.buffer, rows.byteOffset, rows.length);
  const codes = new Uint8Array(format.blockSize);
  const blocks = rows.length / format.blockSize;
  for (let b = 0; b < blocks; b += CHUNK_BLOCKS) {
    encodeBlocks(
      xi,
      out,
      codes,
      tables.thresholds,
      tables.startCode,
      tables.perCode,
      tables.hExp,
      tables,
      format.blockSize,
      format.subBlockSize,
      format.blockBytes,
      format.scaleOffset,
      format.codeOffset,
      format.pairSpan,
      b,
      Math.min(blocks, b + CHUNK_BLOCKS),
    );
  }
}

/** Blocks [b0, b1) of {@link encodeFp4RtnFast}; plain arguments only, for the optimizer. */
function encodeBlocks(
  xi: Int32Array,
  out: Uint8Array,
  codes: Uint8Array,
  thresholds: Int32Array,
  startCode: Uint8Array,
  perCode: Int32Array,
  hExp: Int32Array,
  tables: RtnFastTables,
  blockSize: number,
  subBlockSize: number,
  blockBytes: number,
  scaleOffset: number,
  codeOffset: number,
  pairSpan: number,
  b0: number,
  b1: number,
): void {
  const half = pairSpan >> 1;
  const subs = blockSize / subBlockSize;
  for (let b = b0; b < b1; b++) {
    const bo = b * blockBytes;
    const x0 = b * blockSize;
    for (let s = 0; s < subs; s++) {
      const start = x0 + s * subBlockSize;
      const end = start + subBlockSize;
      const c0 = s * subBlockSize - start;
      let amax = 0;
      for (let i = start; i < end; i++) {
        const ab = xi[i]! & 0x7fffffff;
        amax = ab > amax ? ab : amax;
      }
      if (amax <= SUBNORMAL_TOP) {
        out[bo + scaleOffset + s] = 0;
        codes.fill(0, s * subBlockSize, s * subBlockSize + subBlockSize);
        continue;
      }
      const e = amax >>> 23;
      let code = startCode[e]!;
      while (code < 255) {
        const th = thresholds[code + 1]!;
        if (th < 0 || th > amax) break;
        code++;
      }
      out[bo + scaleOffset + s] = code;
      const ec = e - 127 < 126 ? e - 127 : 126;
      const k = hExp[code]! - ec;
      if (hExp[code] === NO_SCALE || k < LOW_K || k > HIGH_K) {
        codes.fill(0, s * subBlockSize, s * subBlockSize + subBlockSize);
        continue;
      }
      const p = code << 3;
      const t0 = perCode[p]!, t1 = perCode[p + 1]!, t2 = perCode[p + 2]!, t3 = perCode[p + 3]!;
      const t4 = perCode[p + 4]!, t5 = perCode[p + 5]!, t6 = perCode[p + 6]!;
      const slow = perCode[p + 7]!;
      for (let i = start; i < end; i++) {
        const xb = xi[i]!;
        const ab = xb & 0x7fffffff;
        let m: number;
        if (ab > slow) {
          m = slowLevel(ab, ec, code, tables);
        } else {
          // (t − ab) >>> 31 is 1 exactly when ab > t (both in [0, 2^31)): no branches.
          m = ((t0 - ab) >>> 31) + ((t1 - ab) >>> 31) + ((t2 - ab) >>> 31) +
            ((t3 - ab) >>> 31) + ((t4 - ab) >>> 31) + ((t5 - ab) >>> 31) + ((t6 - ab) >>> 31);
        }
        // The sign bit as 8, kept only when m > 0 ((−m) >> 31 is −1 then, else 0).
        codes[i + c0] = m | ((xb >>> 28) & 8 & ((-m) >> 31));
      }
    }
    // Pack: in each unit of pairSpan elements, byte k holds element k (low) and k + half (high).
    let o = bo + codeOffset;
    for (let u = 0; u < blockSize; u += pairSpan) {
      for (let k = 0; k < half; k++) out[o++] = codes[u + k]! | (codes[u + k + half]! << 4);
    }
  }
}
