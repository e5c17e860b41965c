/**
 * Seeded pseudo-random numbers for fixtures: xoshiro128** seeded through splitmix32, with uniform,
 * normal and Student-t draws. A stream can be keyed by a string (a tensor name) so that each tensor's
 * values depend only on the seed and its name, not on the order tensors are generated in.
 *
 * @module
 */

function _splitmix32(state: number): [number, number] {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return [next, (z ^ (z >>> 16)) >>> 0];
}

/** FNV-1a hash of a string's UTF-16 code units. */
function _hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * A deterministic random stream.
 *
 * @example Same seed and key, same numbers
 * ```ts
 * import { deepStrictEqual as assertEquals } from "node:assert/strict";
 * import { SeededRandom } from "./seeded_random.ts";
 * assertEquals(new SeededRandom(7, "w").uint32(), new SeededRandom(7, "w").uint32());
 * ```
 */
export class SeededRandom {
  readonly #s = new Uint32Array(4);
  #spareNormal: number | null = null;

  /**
   * @param seed Any 32-bit integer.
   * @param key Optional name mixed into the seed, giving an independent stream per key.
   */
  constructor(seed: number, key = "") {
    let state = (seed ^ _hash(key)) | 0;
    for (let i = 0; i < 4; i++) {
      const [next, value] = _splitmix32(state);
      state = next;
      this.#s[i] = value;
    }
  }

  /** The next 32 random bits. */
  uint32(): number {
    const s = this.#s;
    let [s0, s1, s2, s3] = [s[0]!, s[1]!, s[2]!, s[3]!];
    const result = Math.imul(_rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = _rotl(s3, 11);
    s[0] = s0;
    s[1] = s1;
    s[2] = s2;
    s[3] = s3;
    return result;
  }

  /** Uniform in the open interval (0, 1). */
  uniform(): number {
    return (this.uint32() + 0.5) / 2 ** 32;
  }

  /** Standard normal, by Box–Muller. */
  normal(): number {
    if (this.#spareNormal !== null) {
      const z = this.#spareNormal;
      this.#spareNormal = null;
      return z;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const phi = 2 * Math.PI * this.uniform();
    this.#spareNormal = r * Math.sin(phi);
    return r * Math.cos(phi);
  }

  /**
   * Student-t with `dof` degrees of freedom (an integer above 2), scaled to unit variance: heavy
   * tails with the same spread as {@linkcode normal}.
   */
  studentT(dof: number): number {
    let chi2 = 0;
    for (let i = 0; i < dof; i++) chi2 += this.normal() ** 2;
    return this.normal() / Math.sqrt(chi2 / dof) / Math.sqrt(dof / (dof - 2));
  }
}

function _rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
