/**
 * One FP4 sub-block (the elements sharing a scale byte) and everything the encoder asks of it:
 * its rtn code, the weighted squared error of any candidate scale code, the element codes for a
 * scale, and the choice of a code under each search mode. This is the CPU twin's core; the WGSL
 * kernel (encode.wgsl) is the same algorithm step for step, and the tests hold the two to
 * identical bytes.
 *
 * Float32 semantics. Every value is a float32 held in a float64; each float32 operation is
 * reproduced by one `Math.fround` (a product of two float32 values is exact in float64, and a sum
 * or quotient rounded to float64 and then to float32 is the correctly rounded float32 result).
 * Nothing needs division, log2, sqrt or fused multiply-add on the GPU:
 *
 * - Scaled domain. A sub-block with amax = m·2^E is worked on as x' = x·2^-E' (E' = min(E, 126)),
 *   so x' < 4, and a candidate half scale H = sig·2^exp becomes d' = sig·2^(exp−E'). Scaling by
 *   a power of two commutes with float32 rounding, so decisions equal those on the raw values,
 *   but nothing overflows (huge weights) and no scale is subnormal (E8M0 down to 2^-127).
 * - Flushing. Results below 2^-125 in magnitude are set to 0, and subnormal inputs read as 0.
 *   GPUs may flush subnormals (with tininess before or after rounding) or keep them; flushing
 *   explicitly at twice the smallest normal gives the same values either way.
 * - Exact products. levels (≤ 4 significant bits) × d' (≤ 4 bits) is exact, so `x − level·d'`
 *   is one rounding with or without contraction into an FMA. The error sum `s + (w·e)·e` would
 *   change under contraction; the kernel passes each term through an integer XOR with a runtime
 *   zero, which no compiler can see through.
 * - Candidates whose d' is below 2^-120 or above 2^40 code every element 0 (above 2^40 that is
 *   exactly what the arithmetic gives; below 2^-120 it is our definition, unreachable by the rtn
 *   codes of NVFP4 and MXFP4).
 *
 * Element codes ("nearest", ggml's `best_index_mxfp4`): for |x| ≤ level·d of the code's top
 * usable level, the first minimum of float32 |level·d − x| is the nearest level with ties to the
 * smaller one, because between two adjacent levels (at most a factor 2 apart) both differences are
 * exact (Sterbenz), so it is decided by comparing |x| with the exact midpoints. Beyond the top
 * level the differences are computed as ggml does; when |x|/d passes ~2^22 they round to equal
 * values and code 0 wins, as in ggml. The top usable level is 7 except for E8M0 codes 253 and 254,
 * where higher levels overflow float32 (ggml's distance to them is inf). ("reciprocal",
 * ROCmFP4): a = fl(|x|·fl(1/d)) compared with the midpoints, ties down.
 *
 * Error of a candidate: Σ_j (w_j·e_j)·e_j in element order, e_j = |x'_j| − level_j·d', each
 * product and difference flushed, with per-sub-block weights w normalised by a power of two (max
 * in [1, 4)). It is the same objective on the raw values up to a power-of-two factor.
 *
 * `full` mode is the exhaustive argmin over codes [minSearchCode, maxCode], lowest code on ties,
 * computed on a pruned range (the tests compare it with the exhaustive loop):
 * - Above: let U be the first code with d' ≥ amax' ("nearest") or d' ≥ 4·amax' ("reciprocal").
 *   From U up every element is at level 0 or 1 (reciprocal: 0), each |e| = min(|x|, d'−|x|) is
 *   exact and does not fall as d' rises, so no code above U is strictly better (reciprocal: all
 *   errors are equal). Ties go to the lower code, so codes above U never win.
 * - Below: let m be the smallest |x'| with a nonzero weight and c_lo the first code whose top
 *   usable level·d' ≥ m (that value never falls as the code rises). Below c_lo every weighted
 *   element saturates at the top level and its float32 error does not fall as d' falls (codes
 *   with d' < 2^-120 score the all-zero error, which is larger still), so E(c) does not rise with
 *   c there. The search starts at c_lo − 1 and, if that code wins, walks down while the error
 *   stays equal, which finds the lowest code of the tie as the exhaustive search would.
 * When every weight or |x| is zero every error is 0 and the lowest code wins.
 *
 * Where rtn differs from ggml (all far from real weights): MXFP4 blocks with amax < 2^-125, where
 * ggml's uint8 cast is undefined (it writes 0xFF, which its own loader rejects), get exponent 0;
 * subnormal inputs read as 0, which changes ggml's codes only in MXFP4 blocks with amax < 2^-122.
 *
 * @module
 */
import type { Fp4Format } from "./formats.ts";
import { MODE_FULL, MODE_RTN, type ResolvedFp4Search } from "./search_options.ts";
import { type Fp4Tables, lookupThreshold } from "./tables.ts";
import { type Fp4Weights, WEIGHTS_COLUMN, WEIGHTS_NONE } from "./weights.ts";

/** Results smaller than this in magnitude are flushed to 0. */
export const FLUSH_BELOW = 2 ** -125;
/** Smallest positive normal float32. */
const MIN_NORMAL = 2 ** -126;
/** Candidates with d' = sig·2^k, k outside [LOW_K, HIGH_K], code every element 0. */
export const LOW_K = -120;
export const HIGH_K = 40;

const f = Math.fround;

/** Candidate sequence markers (as in the kernel). */
const SKIP = -1;
const DONE = -2;

/** 2^k for k in [-160, 160], exact. */
const POW2 = new Float64Array(321);
for (let k = -160; k <= 160; k++) POW2[k + 160] = 2 ** k;

function pow2(k: number): number {
  return POW2[k + 160]!;
}

function flush(v: number): number {
  return v < FLUSH_BELOW && v > -FLUSH_BELOW ? 0 : v;
}

/** A sub-block being encoded; reused across sub-blocks of one call. */
export class Fp4SubBlock {
  readonly #format: Fp4Format;
  readonly #tables: Fp4Tables;
  readonly #levels: Float64Array;
  readonly #mids: Float64Array;
  readonly #reciprocal: boolean;
  readonly #scratch = new Float32Array(1);
  readonly #scratchBits = new Uint32Array(this.#scratch.buffer);
  /** Mids times the current d' (nearest rule). */
  readonly #scaledMids = new Float64Array(7);
  /** Highest usable level at the current scale. */
  #top = 7;
  /** |x'| per element (scaled, flushed). */
  readonly ax = new Float64Array(32);
  /** Normalised weight per element. */
  readonly w = new Float64Array(32);
  /** 1 where the input element is negative (sign bit set). */
  readonly neg = new Uint8Array(32);
  /** Element count. */
  readonly n: number;
  /** amax after the outer scale, before scaling; 0 for an all-zero sub-block. */
  amax = 0;
  /** Float32 bits of amax. */
  amaxBits = 0;
  /** E' = min(exponent of amax, 126). */
  ec = 0;
  /** amax·2^-E'. */
  amaxScaled = 0;
  /** Smallest |x'| with a nonzero weight, or Infinity (valid once errors were asked for). */
  minWeighted = Infinity;
  /** The error with every element at code 0 (valid once errors were asked for). */
  zeroError = 0;
  #start = 0;
  #nPerRow = 1;
  #weights: Fp4Weights = { kind: WEIGHTS_NONE };
  #prepared = false;

  constructor(format: Fp4Format, tables: Fp4Tables) {
    this.#format = format;
    this.#tables = tables;
    this.#levels = Float64Array.from(format.levels);
    this.#mids = new Float64Array(7);
    for (let k = 0; k < 7; k++) this.#mids[k] = (format.levels[k]! + format.levels[k + 1]!) / 2;
    this.#reciprocal = format.elementRule === "reciprocal";
    this.n = format.subBlockSize;
  }

  #exponentOf(v: number): number {
    this.#scratch[0] = v;
    return (this.#scratchBits[0]! >>> 23) - 127;
  }

  /**
   * Reads the sub-block at `start` of `x` (bits `xBits`, the same memory); its weights are read
   * when an error is first needed. Inputs must be finite and, after the outer scale, finite (the
   * caller checks).
   */
  load(
    x: Float32Array,
    xBits: Uint32Array,
    start: number,
    nPerRow: number,
    invOuter: number,
    weights: Fp4Weights,
  ): void {
    const n = this.n;
    const ax = this.ax;
    let amax = 0;
    for (let j = 0; j < n; j++) {
      const bits = xBits[start + j]!;
      this.neg[j] = bits >>> 31;
      let a = (bits & 0x7f800000) === 0 ? 0 : Math.abs(x[start + j]!);
      if (invOuter !== 1) a = flush(f(a * invOuter));
      ax[j] = a;
      if (a > amax) amax = a;
    }
    this.amax = amax;
    this.#start = start;
    this.#nPerRow = nPerRow;
    this.#weights = weights;
    this.#prepared = false;
    if (amax === 0) return;
    this.#scratch[0] = amax;
    this.amaxBits = this.#scratchBits[0]!;
    const e = (this.amaxBits >>> 23) - 127;
    this.ec = e < 126 ? e : 126;
    const p = pow2(-this.ec);
    this.amaxScaled = amax * p;
    for (let j = 0; j < n; j++) ax[j] = flush(f(ax[j]! * p));
  }

  /** Reads and normalises the weights, and derives minWeighted and zeroError. */
  #prepare(): void {
    this.#prepared = true;
    const n = this.n;
    const ax = this.ax;
    const w = this.w;
    const weights = this.#weights;
    let wmax = 0;
    if (weights.kind === WEIGHTS_NONE) {
      w.fill(1, 0, n);
    } else {
      const data = weights.data;
      const column = weights.kind === WEIGHTS_COLUMN;
      for (let j = 0; j < n; j++) {
        const v = column ? data[(this.#start + j) % this.#nPerRow]! : data[this.#start + j]!;
        const wv = v < MIN_NORMAL ? 0 : v;
        w[j] = wv;
        if (wv > wmax) wmax = wv;
      }
    }
    let pw = 1;
    if (wmax > 0) {
      const ew = this.#exponentOf(wmax);
      pw = pow2(-(ew < 126 ? ew : 126));
    }
    let minWeighted = Infinity;
    let zero = 0;
    for (let j = 0; j < n; j++) {
      const a = ax[j]!;
      let wj = w[j]!;
      if (wmax > 0) {
        wj = flush(f(wj * pw));
        w[j] = wj;
      }
      if (wj > 0 && a > 0 && a < minWeighted) minWeighted = a;
      const t1 = flush(f(wj * a));
      zero = f(zero + flush(f(t1 * a)));
    }
    this.minWeighted = minWeighted;
    this.zeroError = zero;
  }

  /** The rtn code of the loaded sub-block (top level, or level 4 when `four`). */
  rtnCode(four: boolean): number {
    if (this.amax === 0) return 0;
    const t = this.#tables;
    return lookupThreshold(four ? t.thresholdsFour : t.thresholdsTop, this.amaxBits);
  }

  /** The exponent k of d' = sig·2^k for a code, or null when its scale is zero. */
  #k(code: number): number | null {
    return this.#tables.hSig[code]! === 0 ? null : this.#tables.hExp[code]! - this.ec;
  }

  /** d' of a code, or 0 when every element takes code 0 (zero scale or k out of range). */
  scaledHalf(code: number): number {
    const k = this.#k(code);
    if (k === null || k < LOW_K || k > HIGH_K) return 0;
    return this.#tables.hSig[code]! * pow2(k);
  }

  /** fl(1/d') for the reciprocal rule: fl(1/sig)·2^-k, exact. */
  #reciprocalOf(code: number): number {
    return this.#tables.rSig[code]! * pow2(this.ec - this.#tables.hExp[code]!);
  }

  /** Prepares #level for code `code` with scale d'. */
  #setScale(code: number, d: number): void {
    this.#top = this.#tables.topLevel[code]!;
    if (this.#reciprocal) return;
    for (let k = 0; k < 7; k++) this.#scaledMids[k] = this.#mids[k]! * d;
  }

  /**
   * The level index of a scaled magnitude `a` (after #setScale), at most the code's top level:
   * beyond it ggml's float32 distance is inf.
   */
  #level(a: number, d: number, rp: number): number {
    const top = this.#top;
    if (this.#reciprocal) return Math.min(countAbove(flush(f(a * rp)), this.#mids), top);
    const levels = this.#levels;
    if (a > levels[top]! * d) {
      // ggml's first minimum, where float32 distances may round together.
      let best = 0;
      let bestErr = a;
      for (let m = 1; m <= top; m++) {
        const err = flush(f(a - levels[m]! * d));
        if (err < bestErr) {
          best = m;
          bestErr = err;
        }
      }
      return best;
    }
    return countAbove(a, this.#scaledMids);
  }

  /**
   * Weighted squared error of the loaded sub-block with scale code `code`. With a `bound`, the
   * sum may stop early at any value ≥ bound: its terms are ≥ 0, so float32 partial sums never
   * fall, and a candidate that reaches the best error so far cannot beat it under strict <.
   */
  error(code: number, bound = Infinity): number {
    if (this.amax === 0) return 0;
    if (!this.#prepared) this.#prepare();
    const d = this.scaledHalf(code);
    if (d === 0) return this.zeroError;
    const rp = this.#reciprocal ? this.#reciprocalOf(code) : 0;
    this.#setScale(code, d);
    const levels = this.#levels;
    const ax = this.ax;
    const w = this.w;
    let sum = 0;
    if (this.#reciprocal) {
      for (let j = 0; j < this.n && sum < bound; j++) {
        const a = ax[j]!;
        const e = flush(f(a - levels[this.#level(a, d, rp)]! * d));
        const t1 = flush(f(w[j]! * e));
        sum = f(sum + flush(f(t1 * e)));
      }
      return sum;
    }
    // Fast path of #level for the nearest rule: the same comparisons, unrolled.
    const sm = this.#scaledMids;
    const m0 = sm[0]!, m1 = sm[1]!, m2 = sm[2]!, m3 = sm[3]!, m4 = sm[4]!, m5 = sm[5]!;
    const m6 = sm[6]!;
    const topValue = levels[this.#top]! * d;
    for (let j = 0; j < this.n && sum < bound; j++) {
      const a = ax[j]!;
      let level: number;
      if (a > topValue) level = this.#level(a, d, rp);
      else if (a <= m0) level = 0;
      else if (a <= m1) level = 1;
      else if (a <= m2) level = 2;
      else if (a <= m3) level = 3;
      else if (a <= m4) level = 4;
      else if (a <= m5) level = 5;
      else if (a <= m6) level = 6;
      else level = 7;
      // flush() written out: this loop is the twin's hot spot.
      let e = f(a - levels[level]! * d);
      if (e < FLUSH_BELOW && e > -FLUSH_BELOW) e = 0;
      let t1 = f(w[j]! * e);
      if (t1 < FLUSH_BELOW && t1 > -FLUSH_BELOW) t1 = 0;
      const t2 = f(t1 * e);
      if (t2 >= FLUSH_BELOW) sum = f(sum + t2);
    }
    return sum;
  }

  /** Writes the 4-bit code of each element for scale code `code` into `codes`. */
  codes(code: number, codes: Uint8Array): void {
    const n = this.n;
    const d = this.amax === 0 ? 0 : this.scaledHalf(code);
    if (d === 0) {
      codes.fill(0, 0, n);
      return;
    }
    const rp = this.#reciprocal ? this.#reciprocalOf(code) : 0;
    this.#setScale(code, d);
    for (let j = 0; j < n; j++) {
      const m = this.#level(this.ax[j]!, d, rp);
      codes[j] = m !== 0 && this.neg[j] === 1 ? m | 8 : m;
    }
  }

  /**
   * First code in [first, last] whose d' reaches a bound (monotone in the code), or last + 1:
   * `upper` false: topLevel·d' ≥ minWeighted; true: d' ≥ amax' (nearest) or 4·amax' (reciprocal).
   * The top level's value never falls as the code rises (where levels are lost to overflow it
   * stays 1.5·2^127).
   */
  #firstReaching(first: number, last: number, upper: boolean): number {
    const bound = upper
      ? (this.#reciprocal ? 4 * this.amaxScaled : this.amaxScaled)
      : this.minWeighted;
    let lo = first;
    let hi = last + 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const k = this.#k(mid)!;
      const factor = upper ? 1 : this.#levels[this.#tables.topLevel[mid]!]!;
      const reached = k > HIGH_K ||
        (k >= LOW_K && factor * (this.#tables.hSig[mid]! * pow2(k)) >= bound);
      if (reached) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /**
   * The n-th candidate of a search, SKIP for a code out of range, DONE after the last.
   * rtn: base (and the Four-over-Six code); window: base, base−1, base+1, ..., base+W (and the
   * Four-over-Six code); full: lo..hi ascending.
   */
  #candidate(
    n: number,
    search: ResolvedFp4Search,
    base: number,
    four: number,
    lo: number,
    hi: number,
  ): number {
    if (search.mode === MODE_FULL) return lo + n <= hi ? lo + n : DONE;
    const w = search.mode === MODE_RTN ? 0 : search.window;
    if (n === 0) return base;
    if (n <= 2 * w) {
      const k = (n + 1) >> 1;
      const c = n % 2 === 1 ? base - k : base + k;
      return c >= this.#format.minSearchCode && c <= this.#format.maxCode ? c : SKIP;
    }
    if (n === 2 * w + 1 && search.fourOverSix) return four;
    return DONE;
  }

  /** The scale code the search picks for the loaded sub-block. */
  choose(search: ResolvedFp4Search): number {
    if (this.amax === 0) return 0;
    const { minSearchCode, maxCode } = this.#format;
    const full = search.mode === MODE_FULL;
    if (full && !this.#prepared) this.#prepare();
    if (full && this.minWeighted === Infinity) return minSearchCode;
    let base = 0;
    let four = 0;
    let lo = 0;
    let hi = 0;
    if (full) {
      const cLo = this.#firstReaching(minSearchCode, maxCode, false);
      lo = cLo > maxCode ? maxCode : cLo > minSearchCode ? cLo - 1 : minSearchCode;
      hi = Math.min(this.#firstReaching(lo, maxCode, true), maxCode);
    } else {
      base = this.rtnCode(false);
      if (!search.fourOverSix && search.mode === MODE_RTN) return base;
      four = this.rtnCode(search.fourOverSix);
    }
    let best = 0;
    let bestErr = 0;
    for (let n = 0;; n++) {
      const c = this.#candidate(n, search, base, four, lo, hi);
      if (c === DONE) break;
      if (c === SKIP) continue;
      const e = this.error(c, n === 0 ? Infinity : bestErr);
      if (n === 0 || e < bestErr) {
        best = c;
        bestErr = e;
      }
    }
    // full: below lo errors never fall as the code rises; take the lowest code of a tie.
    if (full && best === lo) {
      for (let c = lo - 1; c >= minSearchCode && this.error(c) === bestErr; c--) best = c;
    }
    return best;
  }
}

/** How many of the 7 increasing thresholds `v` exceeds. */
function countAbove(v: number, thresholds: Float64Array): number {
  let m = 0;
  while (m < 7 && v > thresholds[m]!) m++;
  return m;
}
