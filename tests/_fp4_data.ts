/**
 * Seeded inputs for the FP4 encoder tests: realistic rows (Gaussian and heavy-tailed with per-row
 * scales, some tiny columns), edge sub-blocks chosen by bit pattern, and imatrices with zeros and
 * extreme entries.
 *
 * @module
 */
import { SeededRandom } from "../testing/seeded_random.ts";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float32 with these bits. */
export function fromBits(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0]!;
}

/** The bits of a float32 value. */
export function bitsOf(value: number): number {
  f32[0] = value;
  return u32[0]!;
}

/** The float32 just below a positive float32. */
export function below(value: number): number {
  return fromBits(bitsOf(value) - 1);
}

/** Rows of weights: Gaussian or Student-t (5 dof) times a per-row log-normal scale. */
export function seededRows(seed: number, rows: number, nPerRow: number): Float32Array {
  const r = new SeededRandom(seed, "fp4 rows");
  const out = new Float32Array(rows * nPerRow);
  for (let row = 0; row < rows; row++) {
    const scale = 0.02 * Math.exp(r.normal());
    const heavy = row % 2 === 1;
    for (let j = 0; j < nPerRow; j++) {
      const v = heavy ? r.studentT(5) : r.normal();
      out[row * nPerRow + j] = v * scale * (j % 13 === 0 ? 1e-3 : 1);
    }
  }
  return out;
}

/**
 * Sub-blocks of `size` elements in edge regimes: all zero, all -0, subnormals, a lone value,
 * values near 2^-126, huge values up to the float32 maximum, exact powers of two, and
 * mixtures of magnitudes 2^±40 apart.
 */
export function edgeRows(seed: number, subBlocks: number, size: number): Float32Array {
  const r = new SeededRandom(seed, "fp4 edges");
  const out = new Float32Array(subBlocks * size);
  const sign = () => (r.uniform() < 0.5 ? -1 : 1);
  for (let s = 0; s < subBlocks; s++) {
    const regime = s % 9;
    for (let j = 0; j < size; j++) {
      let v: number;
      switch (regime) {
        case 0:
          v = 0;
          break;
        case 1:
          v = -0;
          break;
        case 2:
          v = fromBits((r.uint32() & 0x807fffff) >>> 0);
          break;
        case 3:
          v = j === s % size ? sign() * 2 ** ((r.uint32() % 80) - 40) : 0;
          break;
        case 4:
          v = sign() * 2 ** -126 * (1 + r.uniform() * 15);
          break;
        case 5:
          v = sign() * 3.4e38 * r.uniform() ** 8;
          break;
        case 6:
          v = sign() * 2 ** ((r.uint32() % 16) - 8);
          break;
        case 7:
          v = r.normal() * (j % 2 === 0 ? 2 ** 40 : 2 ** -40);
          break;
        default:
          v = j === 0 ? sign() * 6 * 2 ** ((r.uint32() % 20) - 10) : r.normal();
      }
      out[s * size + j] = v;
    }
  }
  return out;
}

/** An imatrix with zeros, subnormals, huge and ordinary entries. */
export function edgeImatrix(seed: number, nPerRow: number): Float32Array {
  const r = new SeededRandom(seed, "fp4 imatrix");
  const out = new Float32Array(nPerRow);
  for (let i = 0; i < nPerRow; i++) {
    const k = r.uint32() % 6;
    out[i] = k === 0 ? 0 : k === 1 ? 1e-40 : k === 2 ? 3e38 : k === 3 ? 1e-30 : r.uniform() * 10;
  }
  return out;
}

/** A plain imatrix: mean squares of activations, log-normal. */
export function seededImatrix(seed: number, nPerRow: number): Float32Array {
  const r = new SeededRandom(seed, "fp4 imatrix plain");
  const out = new Float32Array(nPerRow);
  for (let i = 0; i < nPerRow; i++) out[i] = Math.exp(2 * r.normal());
  return out;
}

/** Concatenates float arrays. */
export function concat(...parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
