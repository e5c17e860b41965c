/**
 * Seeded weight-like data for the GPU benchmarks, the same on every machine (xorshift32, no npm
 * imports, so it runs from a bare copy of the repository).
 *
 * @module
 */

/** xorshift32 in [0, 1). */
export function random(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

/** Gaussian values with 1% outliers ×8, scale 0.02: heavy-tailed like trained weights. */
export function heavyTailed(n: number, seed: number): Float32Array {
  const r = random(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const g = Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
    x[i] = g * 0.02 * (r() < 0.01 ? 8 : 1);
  }
  return x;
}
